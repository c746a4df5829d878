"""Where the dashboard's runs come from: the run folders under a root, or one results database by URL.

Everything is opened read-only (``Store(..., read_only=True)``) for one request and closed after it: the dashboard
never writes, never holds a database open between requests, and sees what a running job records meanwhile.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from search.cli._runs import _summary_row
from search.store import RESULTS_FILE, JobRecord, Store


class DashboardError(ValueError):
    """A run the dashboard cannot show (no such folder or job, a damaged database ...): one line for the page."""


@dataclass(frozen=True)
class RunRef:
    """A job to show: ``job`` by name, in the run folder ``folder`` under the root (None with a database URL)."""

    folder: str | None
    job: str


class Source:
    """The run folders under ``root`` (each ``<root>/<folder>/results.db`` with its jobs), or the jobs of the database
    at ``db`` (a SQLAlchemy URL) when given.

    Folder names from requests are untrusted: only the name of a folder directly under ``root`` is accepted.
    """

    def __init__(self, root: str | Path = "runs", db: str | None = None) -> None:
        self.root = Path(root)
        self.db = db

    def describe(self) -> str:
        return f"database {self.db}" if self.db is not None else f"run folders under {self.root}"

    def runs(self) -> list[dict[str, Any]]:
        """Every job with its summary (``job_summary``), or with the one-line reason it cannot be read."""
        if self.db is not None:
            try:
                with Store(self.db, create=False, read_only=True) as store:
                    return [{"folder": None, **_summary_row(store, job, None)} for job in store.list_jobs()]
            except (ValueError, OSError) as error:
                raise DashboardError(_one_line(error)) from None
        if not self.root.is_dir():
            raise DashboardError(f"no folder {str(self.root)!r} to list runs from; give --root or start a search")
        rows: list[dict[str, Any]] = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and (p / RESULTS_FILE).is_file()):
            rows += self._folder_rows(folder)
        return rows

    def _folder_rows(self, folder: Path) -> list[dict[str, Any]]:
        try:
            with Store.for_run(folder, create=False, read_only=True) as store:
                return [{"folder": folder.name, **_summary_row(store, job, str(folder))} for job in store.list_jobs()]
        except (ValueError, OSError) as error:  # a corrupt, foreign or unreadable database: list it, go on
            return [{"folder": folder.name, "path": str(folder), "name": folder.name, "error": _one_line(error)}]

    @contextmanager
    def open(self, ref: RunRef) -> Iterator[tuple[Store, JobRecord]]:
        """The store (read-only, closed on leaving) and the job ``ref`` names. ``DashboardError`` if they cannot be
        read, also when reading fails inside the block (a damaged row, a lost server)."""
        try:
            with self._store(ref) as store:
                job = store.get_job(ref.job)
                if job is None:
                    where = self.db if ref.folder is None else f"run folder {ref.folder!r}"
                    raise DashboardError(f"no job {ref.job!r} in {where}")
                yield store, job
        except DashboardError:
            raise
        except (ValueError, OSError) as error:  # also a damaged row met while the caller reads
            raise DashboardError(_one_line(error)) from None

    def _store(self, ref: RunRef) -> Store:
        if self.db is not None:
            return Store(self.db, create=False, read_only=True)
        folder = ref.folder or ""
        if not _plain_name(folder) or not (self.root / folder).is_dir():
            raise DashboardError(f"no run folder {folder!r} under {str(self.root)!r}")
        if not (self.root / folder / RESULTS_FILE).is_file():
            raise DashboardError(f"run folder {folder!r} has no {RESULTS_FILE}; is it a run folder made by autodisco?")
        return Store.for_run(self.root / folder, create=False, read_only=True)


def _plain_name(name: str) -> bool:
    """A single path component: no separators, not ``.`` or ``..``, nothing hidden."""
    return bool(name) and "/" not in name and "\\" not in name and "\0" not in name and not name.startswith(".")


def _one_line(error: BaseException) -> str:
    return " ".join((str(error) or type(error).__name__).split())
