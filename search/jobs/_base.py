"""``Job``: the contract every long-lived piece of work follows, and ``JobContext``: what the runner hands it."""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from search.store import JobRecord, Store

if TYPE_CHECKING:
    from search.executor import Executor
    from search.jobs._runner import Runner


PROGRESS_KEY = "progress"  # in every checkpoint: the job's progress for listings (``runs list``, the dashboard)


def checkpoint_state(job: Job) -> dict[str, Any]:
    """What the runner saves as the job's checkpoint: ``job.state_dict()`` plus its progress (``PROGRESS_KEY``:
    units done, total, unit), readable without the job's module."""
    done, total, _ = job.progress()
    return {**job.state_dict(), PROGRESS_KEY: {"done": done, "total": total, "unit": job.unit}}


class JobError(ValueError):
    """A job cannot be created, resumed or run as asked (bad configuration, a run that does not match, a baseline that
    fails). The CLI prints it as one line with exit status 2."""


@dataclass
class JobContext:
    """What a job may use besides its config: the store and its own job row, the run folder for files (None when the
    run lives in a database given by URL), the executor factory (for jobs that dispatch work to workers: called with
    the modules its workers preload, ``preload=(...)``, and optionally ``recycle_every``), whether to show progress,
    and ``say`` for one-line status messages (stderr; silent with ``--quiet``)."""

    store: Store
    record: JobRecord
    run_dir: Path | None = None
    executor_factory: Callable[..., Executor] | None = None  # (preload=..., recycle_every=...) -> a new Executor
    show_progress: bool = True
    say: Callable[[str], None] = lambda line: None
    options: Mapping[str, Any] | None = None  # per-invocation settings that are not part of the job (e.g. threads)


class Job(abc.ABC):
    """A long-lived job: a search, a validation funnel, a DARTS search, supernet training, genotype training, a
    ground-truth table. The ``Runner`` drives it; the job never touches its status, signals or progress output.

    Contract:
      * ``method`` names the job type in the registry (``search.jobs.JOBS``); it is stored as ``config["method"]``,
        so ``autodisco resume RUN`` finds the type of any run. ``kind`` is the store's job kind.
      * The job is configured by one frozen dataclass, written with ``config_to_dict`` and read back (untrusted: from
        a database) with ``config_from_dict``, which raises ``JobError`` or ``ValueError`` for anything malformed.
      * ``run(runner)`` does the work one unit at a time (a result, an epoch, a sweep, an architecture). Every unit's
        rows are written inside ``with runner.unit():``; the runner saves ``state_dict()`` as the job's checkpoint in
        the same transaction, so a kill at any moment loses nothing recorded and never records anything twice.
        Tensors that do not belong in the database go to files with ``runner.save_file`` *before* the unit that
        refers to them (atomic: a complete old file or a complete new one).
      * ``state_dict()`` is JSON; ``load_state_dict(state)`` restores it on resume (``state`` is the latest
        checkpoint's, or None when there is none yet). Together with the job's files and rows they let ``run``
        continue where the job stopped: the finished job equals one never stopped (bit-exact where the job is
        deterministic).
      * ``gc_thresholds`` (optional): the cyclic collector's thresholds while the job runs (``gc.set_threshold``;
        the caller's are restored after). For a driver that keeps many objects alive and allocates fast, where
        CPython's default full collections cost a share of every unit (a search); None keeps the process's own.
      * ``progress()`` gives the units done, the total if known, and the fields shown on the status line;
        ``describe()`` the line printed when the job starts or resumes, ``report(result)`` the lines printed at the
        end.
    """

    method: ClassVar[str]
    config_type: ClassVar[type]  # the config dataclass; ``from_dict``/``to_dict`` where it has them
    kind: ClassVar[str] = "architecture"
    unit: ClassVar[str] = "epoch"  # what progress counts
    own_progress_lines: ClassVar[bool] = False  # True: the job says a line per unit itself (no periodic status line)
    gc_thresholds: ClassVar[tuple[int, int, int] | None] = None

    def __init__(self, config: Any, context: JobContext) -> None:
        self.config = config
        self.context = context

    # -- configuration ----------------------------------------------------------------------------------------------

    @classmethod
    def config_from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The job's config from its stored form (untrusted; default: ``config_type.from_dict``)."""
        return cls.config_type.from_dict(data)  # type: ignore[attr-defined]

    @classmethod
    def config_to_dict(cls, config: Any) -> dict[str, Any]:
        """The stored form of ``config``: its own ``to_dict()`` if it has one, else its fields with ``method`` (and
        ``tasks`` where the config has a task)."""
        if hasattr(config, "to_dict"):
            return dict(config.to_dict())
        values = asdict(config) if is_dataclass(config) else dict(config)
        task = getattr(config, "task", None)
        extra = {"tasks": [task]} if isinstance(task, str) else {}
        return {"method": cls.method, **extra, **values}

    @classmethod
    def seed_of(cls, config: Any) -> int:
        """The seed stored in the job's row."""
        return int(getattr(config, "seed", 0))

    def prepare(self) -> None:
        """Check and load what the job needs (data, tables) before anything is recorded (default: nothing)."""

    # -- work and state ---------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def run(self, runner: Runner) -> Any:
        """Do the remaining work, unit by unit, through ``runner``; return the job's result."""

    def state_dict(self) -> dict[str, Any]:
        """The job's state after the last unit (JSON)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore the state saved by ``state_dict`` (None: the job has not started)."""

    # -- reporting --------------------------------------------------------------------------------------------------

    def progress(self) -> tuple[int, int | None, dict[str, Any]]:
        """Units done, the total (None if unknown), and the status line's fields."""
        return 0, None, {}

    @classmethod
    def progress_of(cls, config: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        """Units done and the total (None where unknown) read from a stored config and checkpoint alone, without
        building the job (``runs list/show``); both untrusted. Default: unknown."""
        return None, None

    def describe(self) -> str:
        return f"{self.method} job {self.context.record.name!r}"

    def report(self, result: Any) -> list[str]:
        """Lines for stdout once the job finished (default: none)."""
        return []

    def exit_status(self, result: Any) -> int:
        """The command's exit status once the job finished: 0, or 1 when the work itself failed (e.g. training that
        diverged)."""
        return 0

    def db_option(self) -> str:
        """`` --db URL`` when the job's rows are not in its run folder's own results.db, so that a command printed
        for the user (resume, export) finds them; "" otherwise. A password is not repeated."""
        from search.store import RESULTS_FILE
        from search.store._open import describe

        url, run_dir = self.store.url, self.context.run_dir
        if run_dir is not None and Path(describe(url)).resolve() == (Path(run_dir) / RESULTS_FILE).resolve():
            return ""
        return f" --db {url.render_as_string(hide_password=True)}"

    @property
    def store(self) -> Store:
        return self.context.store

    @property
    def record(self) -> JobRecord:
        return self.context.record
