"""Issue 13 on the store: read-only opening, foreign SQL objects, odd --db paths, storage errors during a run, a bounded
WAL, the job row and its first checkpoint in one transaction, strict JSON."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from programs import library
from search.cli import main
from search.store import StorageError, Store, StoreError


def _filled(run: Path, *, fitness: float = 0.5) -> Path:
    """A run folder whose database holds one job with two evaluated candidates and a checkpoint."""
    with Store.for_run(run) as store:
        job = store.create_job(run.name, kind="optimizer", config={"tasks": ["t"]}, seed=0).id
        first = store.add_candidate(job, kind="optimizer", text=library.get("adamw").to_text(), hash="aa00")
        second = store.add_candidate(job, kind="optimizer", text=library.get("lion").to_text(), hash="bb11",
                                     parent_ids=[first])
        for candidate, value in ((first, 0.25), (second, fitness)):
            evaluation = store.add_evaluation(job, candidate, key=f"{candidate}/t", task="t", seed=0)
            store.finish_evaluation(evaluation, status="ok", fitness=value, metrics={"loss": 1.0})
        store.save_checkpoint(job, {"step": 2})
        store.set_job_status(job, "finished")
    return run / "results.db"


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- read commands open read-only ---------------------------------------------------------------------------------


def test_read_commands_leave_a_rollback_journal_database_byte_identical(tmp_path: Path, capsys) -> None:
    path = _filled(tmp_path / "runs" / "r")
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode = DELETE")  # as an archived copy or another tool leaves it
    raw.close()
    before, stamp = _listing(path.parent), path.stat().st_mtime_ns
    run, out = str(path.parent), tmp_path / "out"
    out.mkdir()
    for argv in (["runs", "list", "--root", str(tmp_path / "runs")], ["runs", "show", run], ["runs", "show", run,
                 "--json"], ["runs", "top", run], ["runs", "lineage", run, "2"],
                 ["runs", "plot", run, "-o", str(out / "c.png")], ["export", run, "2", "-o", str(out / "e.py")]):
        assert main(argv) == 0, (argv, capsys.readouterr().err)
    assert _listing(path.parent) == before and path.stat().st_mtime_ns == stamp  # no WAL switch, no side files
    with Store.for_run(path.parent, read_only=True) as store:
        job = store.get_job("r")
        assert store.top_k(job.id, 1)[0].evaluation.fitness == 0.5
        for write in (lambda: store.create_job("x", kind="optimizer", config={}, seed=0),
                      lambda: store.set_job_status(job.id, "failed"), lambda: store.save_checkpoint(job.id, {}),
                      lambda: store.add_candidate(job.id, kind="optimizer", text="p", hash="h")):
            with pytest.raises(StoreError, match="opened read-only"):
                write()
    assert _listing(path.parent) == before


def test_read_commands_work_on_read_only_media(tmp_path: Path) -> None:
    """A run folder on a read-only file system (a bind mount remounted read-only in a private mount namespace)."""
    run = tmp_path / "archive" / "r"
    _filled(run)
    reader = (f"from search.store import Store; store = Store.for_run({str(run)!r}, create=False, read_only=True); "
              "job = store.get_job('r'); print(store.top_k(job.id, 1)[0].evaluation.fitness, job.status)")
    script = (f"mount --bind {tmp_path / 'archive'} {tmp_path / 'archive'} && "
              f"mount -o remount,bind,ro {tmp_path / 'archive'} && "
              f"! touch {run / 'probe'} 2>/dev/null && {sys.executable} -c \"{reader}\"")
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("needs unshare(1) to mount a read-only file system as root")
        command = ["unshare", "-m", "sh", "-c", script]
    else:  # permissions make the folder read-only for us
        os.chmod(run / "results.db", 0o444)
        os.chmod(run, 0o555)
        command = [sys.executable, "-c", reader]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    if result.returncode != 0 and "mount" in result.stderr and "permission" in result.stderr.lower():
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.5", "finished"]


# -- objects the schema does not define ----------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "CREATE TRIGGER wipe AFTER INSERT ON evaluations BEGIN DELETE FROM evaluations; END",
    "CREATE VIEW best AS SELECT * FROM evaluations",
    "CREATE TABLE notes (x TEXT)",
])
def test_foreign_sql_objects_are_refused_before_writing(tmp_path: Path, statement: str, capsys) -> None:
    path = _filled(tmp_path / "r")
    raw = sqlite3.connect(path)
    raw.execute(statement)
    raw.commit()
    raw.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="does not define") as caught:
        Store(f"sqlite:///{path}")
    assert "\n" not in str(caught.value) and path.read_bytes() == before
    assert main(["resume", str(path.parent), "--quiet"]) == 2
    assert "does not define" in capsys.readouterr().err
    with Store(f"sqlite:///{path}", read_only=True) as reader:  # reading fires no trigger: allowed
        assert reader.counts(reader.get_job("r").id).ok == 2
    assert path.read_bytes() == before


def test_foreign_trigger_and_rule_are_refused_on_postgresql(fresh_postgres: str) -> None:
    Store(fresh_postgres).close()
    engine = sa.create_engine(fresh_postgres)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE FUNCTION wipe() RETURNS trigger AS $$ BEGIN DELETE FROM evaluations; "
                             "RETURN NULL; END $$ LANGUAGE plpgsql")
        conn.exec_driver_sql("CREATE TRIGGER wipe AFTER INSERT ON evaluations EXECUTE FUNCTION wipe()")
    with pytest.raises(StoreError, match="trigger wipe"):
        Store(fresh_postgres)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER wipe ON evaluations")
        conn.exec_driver_sql("CREATE RULE quiet AS ON INSERT TO jobs DO INSTEAD NOTHING")
    with pytest.raises(StoreError, match="rule quiet"):
        Store(fresh_postgres)
    Store(fresh_postgres, read_only=True).close()
    engine.dispose()


# -- odd --db paths ------------------------------------------------------------------------------------------------


def test_fifo_proc_and_device_paths_are_one_line(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    started = time.monotonic()
    for path, message in ((fifo, "not a regular file"), (Path("/proc/self/mem"), "system file"),
                          (Path("/dev/null"), "not a regular file")):
        with pytest.raises(StoreError, match=message):
            Store(f"sqlite:///{path}", create=False, read_only=True)
        assert main(["runs", "list", "--db", f"sqlite:///{path}"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert time.monotonic() - started < 10  # nothing blocked on the FIFO


# -- storage errors during a run -----------------------------------------------------------------------------------


def test_a_lock_held_past_the_busy_timeout_is_one_line_saying_how_to_continue(tmp_path: Path) -> None:
    path = _filled(tmp_path / "r")
    store = Store(f"sqlite:///{path}", busy_timeout_s=0.1, lock_retries=1)
    job = store.get_job("r").id
    shell = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    shell.execute("BEGIN EXCLUSIVE")  # e.g. a VACUUM or an open transaction in the sqlite3 shell
    try:
        with pytest.raises(StorageError, match="write lock.*autodisco resume") as caught:
            store.save_checkpoint(job, {"step": 3})
        assert "\n" not in str(caught.value)
    finally:
        shell.execute("ROLLBACK")
    assert store.latest_checkpoint(job).state == {"step": 2}

    patient = Store(f"sqlite:///{path}", busy_timeout_s=0.1, lock_retries=4)
    shell.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.3, lambda: shell.execute("ROLLBACK")).start()  # released while the store retries
    assert patient.save_checkpoint(job, {"step": 3}) == 2
    patient.close()
    store.close()
    shell.close()


def test_a_full_disk_during_a_run_is_one_line_keeps_everything_and_the_run_is_resumable(tmp_path: Path) -> None:
    path = _filled(tmp_path / "r")
    store = Store(f"sqlite:///{path}")
    job = store.get_job("r").id
    store.set_job_status(job, "interrupted")

    @sa.event.listens_for(store._engine, "connect")
    def _small_disk(connection, _record) -> None:  # the file may not grow past its size now
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")

    store._engine.dispose()
    with pytest.raises(StorageError, match="full.*free disk space.*autodisco resume") as caught:
        with store.job_running(job):
            for i in range(200):
                with store.transaction():
                    candidate = store.add_candidate(job, kind="optimizer", text="x" * 4000 + str(i), hash=f"h{i}")
                    store.save_checkpoint(job, {"candidate": candidate})
    assert "\n" not in str(caught.value)
    store.close()
    with Store(f"sqlite:///{path}", read_only=True) as reader:
        record = reader.get_job("r")
        assert record.status == "interrupted"  # resumable; no lease left behind
        kept = reader.list_candidates(job)
        assert len(kept) >= 2 and reader.latest_checkpoint(job).state.get("candidate", kept[-1].id) == kept[-1].id


def test_the_wal_stays_bounded_and_is_folded_in_on_close(tmp_path: Path) -> None:
    store = Store.for_run(tmp_path)
    job = store.create_job("w", kind="optimizer", config={}, seed=0).id
    wal = tmp_path / "results.db-wal"
    largest = 0
    for i in range(60):
        with store.transaction():
            store.add_candidate(job, kind="optimizer", text="y" * 50_000 + str(i), hash=f"h{i}")
            store.save_checkpoint(job, {"pad": "z" * 50_000})
        largest = max(largest, wal.stat().st_size if wal.exists() else 0)
    # ~3 MB of candidates (and a checkpoint rewritten in place each time) went through the WAL: most of it is in the
    # database file already (the last WAL checkpoint's worth, at most ~1 MB, may still be in the WAL) ...
    assert (tmp_path / "results.db").stat().st_size > 2_000_000
    assert largest < 2_500_000  # ... which never grew past about its checkpoint size
    store.close()
    assert not wal.exists() or wal.stat().st_size == 0


# -- the job row and its first checkpoint: one transaction ----------------------------------------------------------

KILLED_IN_CREATE = """
import os, signal, sys
from search.store import Store
store = Store(sys.argv[1])
with store.transaction():
    job = store.create_job("c", kind="optimizer", config={}, seed=0)
    os.kill(os.getpid(), signal.SIGKILL)  # between the job row and its first checkpoint
    store.save_checkpoint(job.id, {"step": 0})
"""


def test_a_kill_between_job_row_and_first_checkpoint_leaves_no_job(shared_url: str) -> None:
    Store(shared_url).close()
    result = subprocess.run([sys.executable, "-c", KILLED_IN_CREATE, shared_url], timeout=120,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == -signal.SIGKILL
    with Store(shared_url) as store:
        assert store.get_job("c") is None  # neither half: the run can simply be started again
        with store.transaction():
            job = store.create_job("c", kind="optimizer", config={}, seed=0)
            store.save_checkpoint(job.id, {"step": 0})
        assert store.latest_checkpoint(job.id).state == {"step": 0}


# -- strict JSON ---------------------------------------------------------------------------------------------------


def test_runs_show_json_never_prints_infinity(tmp_path: Path, capsys) -> None:
    path = _filled(tmp_path / "r", fitness=float("inf"))
    assert main(["runs", "show", str(path.parent), "--json"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    assert report["best"]["fitness"] is None and "Infinity" not in text
