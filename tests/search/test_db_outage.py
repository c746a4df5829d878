"""``run_until_done`` (the job runner's answer to a lost database connection), at its own layer: it waits for the
database and continues with the job reopened from its last checkpoint; it gives up after ``db_wait_s`` or after
reconnects that find no progress; the CLI names the run in the line that says how to continue. (The real outage, on
PostgreSQL through a proxy that drops connections: ``test_postgres_e2e.py``.)"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from search.cli import main
from search.jobs import JobContext, _runner
from search.jobs._runner import run_until_done
from search.store import ConnectionLostError, StorageError


class _Store:
    def __init__(self, reachable: bool, seqs: list[int]) -> None:
        self._reachable, self._seqs = reachable, seqs
        self.asked = 0

    def reachable(self) -> bool:
        return self._reachable

    def get_job(self, name: str) -> Any:
        return SimpleNamespace(id=1, name=name)

    def latest_checkpoint(self, job_id: int) -> Any:
        self.asked += 1
        return SimpleNamespace(seq=self._seqs[min(self.asked, len(self._seqs)) - 1])


def _job(store: _Store, said: list[str], wait_s: float, name: str = "first") -> Any:
    context = JobContext(store, SimpleNamespace(id=1, name="pg"), options={"db_wait_s": wait_s},  # type: ignore
                         say=said.append)
    return SimpleNamespace(context=context, name=name)


def _lost() -> ConnectionLostError:
    return ConnectionLostError("db: lost the connection to the database (server closed the connection); ...",
                               "server closed the connection")


@pytest.fixture
def runs(monkeypatch) -> list[Any]:
    """Each ``Runner.run`` call's job; a run raises ``_lost()`` unless its job is named "done"."""
    ran: list[Any] = []

    def run(self: _runner.Runner) -> str:
        ran.append(self.job)
        if self.job.name != "done":
            raise _lost()
        return "result"

    monkeypatch.setattr(_runner.Runner, "__init__", lambda self, job: setattr(self, "job", job))
    monkeypatch.setattr(_runner.Runner, "run", run)
    return ran


def _reopening(monkeypatch, names: list[str], said: list[str]) -> list[dict[str, Any]]:
    """``open_job`` returns jobs named ``names`` in turn; what it was given besides the store and the record."""
    given: list[dict[str, Any]] = []

    def reopen(store: Any, record: Any, **context: Any) -> Any:
        given.append(context)
        return _job(store, said, context["options"]["db_wait_s"], names[len(given) - 1])

    monkeypatch.setattr(_runner, "open_job", reopen)
    return given


def test_a_lost_connection_is_waited_out_and_the_job_goes_on_reopened(runs, monkeypatch) -> None:
    said: list[str] = []
    given = _reopening(monkeypatch, ["done"], said)
    job, result = run_until_done(_job(_Store(True, [7]), said, 5.0))
    assert result == "result" and job.name == "done" and [j.name for j in runs] == ["first", "done"]
    assert given[0]["options"] == {"db_wait_s": 5.0} and given[0]["say"] == said.append  # the same context
    assert said[0] == "lost the connection to the database (server closed the connection); waiting up to 5 s for it"
    assert said[1].startswith("database back after") and said[1].endswith("continuing from the last checkpoint")


def test_a_database_away_longer_than_db_wait_stops_the_job(runs, monkeypatch) -> None:
    said: list[str] = []
    _reopening(monkeypatch, ["done"], said)
    started = time.monotonic()
    with pytest.raises(ConnectionLostError):
        run_until_done(_job(_Store(False, [7]), said, 0.4))
    assert 0.4 <= time.monotonic() - started < 3.0
    assert len(said) == 1 and len(runs) == 1
    with pytest.raises(ConnectionLostError):  # 0: at once, without a word
        run_until_done(_job(_Store(True, [7]), said, 0.0))
    assert len(said) == 1 and len(runs) == 2


def test_reconnects_that_find_the_same_checkpoint_give_up_and_progress_resets_the_count(runs, monkeypatch) -> None:
    _reopening(monkeypatch, ["again"] * 20, [])
    with pytest.raises(ConnectionLostError):
        run_until_done(_job(_Store(True, [7]), [], 5.0))
    assert len(runs) == 1 + 1 + _runner._RECONNECTS_WITHOUT_PROGRESS  # the first reopen sets the mark
    runs.clear()
    _reopening(monkeypatch, ["again"] * 7 + ["done"], [])
    job, _ = run_until_done(_job(_Store(True, [1, 2, 3, 4, 5, 6, 7]), [], 5.0))  # each reconnect a unit further
    assert job.name == "done" and len(runs) == 9


def test_the_cli_names_the_run_in_the_line_that_says_how_to_continue(monkeypatch) -> None:
    import search.jobs
    from search.cli._jobs import run_to_end

    def stopped(job: Any) -> Any:
        raise StorageError("postgresql://db: lost the connection to the database (x); the last write was rolled "
                           "back — continue with: autodisco resume RUN --db postgresql://db")

    monkeypatch.setattr(search.jobs, "run_until_done", stopped)
    with pytest.raises(StorageError, match="continue with: autodisco resume runs/pg --db postgresql://db$"):
        run_to_end(SimpleNamespace(), "runs/pg")


def test_a_negative_db_wait_is_refused_in_one_line_before_anything_is_recorded(tmp_path: Path, monkeypatch,
                                                                                capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", "optimizer", "--run", "runs/x", "--task", "quadratic", "--db-wait", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--db-wait must be >= 0 seconds" in err[0]
    assert not (tmp_path / "runs" / "x" / "results.db").exists()
