"""The results store: a conformance suite over every backend, then SQLite-file specifics (foreign files, WAL, kill -9)."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from search.store import SCHEMA_VERSION, Store, StoreError

def _job(store: Store, name: str = "j") -> int:
    return store.create_job(name, kind="optimizer", config={"population": 8}, seed=7).id


def _evaluated(store: Store, job: int, text: str, digest: str, fitness: float | None, *, status: str = "ok",
               task: str = "t") -> tuple[int, int]:
    cand = store.add_candidate(job, kind="optimizer", text=text, hash=digest)
    ev = store.add_evaluation(job, cand, key=f"{cand}/{task}/0", task=task, seed=0)
    store.finish_evaluation(ev, status=status, fitness=fitness, metrics={"fitness": fitness}, attempts=1)
    return cand, ev


# -- conformance: every backend ---------------------------------------------------------------------------------


def test_jobs_create_get_status(store: Store) -> None:
    job = store.create_job("lion", kind="optimizer", config={"tasks": ["a"], "lr": 1e-3}, seed=2**40)
    assert store.get_job("lion") == job
    # stored as "running", but no driver holds its lease (job_running): it reads as interrupted (resumable)
    assert (job.status, job.seed, job.config) == ("interrupted", 2**40, {"tasks": ["a"], "lr": 1e-3})
    assert store.get_job("missing") is None
    with pytest.raises(StoreError, match="already exists"):
        store.create_job("lion", kind="optimizer", config={}, seed=0)
    store.set_job_status(job.id, "interrupted")
    assert store.get_job("lion").status == "interrupted"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="job status"):
        store.set_job_status(job.id, "paused")
    with pytest.raises(ValueError, match="job kind"):
        store.create_job("x", kind="poem", config={}, seed=0)
    assert [j.name for j in store.list_jobs()] == ["lion"]


def test_candidates_birth_order_and_replay(store: Store) -> None:
    job = _job(store)
    first = store.add_candidate(job, kind="optimizer", text="a", hash="h1")
    second = store.add_candidate(job, kind="optimizer", text="b", hash="h2", parent_ids=[first], mutation="insert")
    assert [c.birth for c in store.list_candidates(job)] == [0, 1]
    assert store.add_candidate(job, kind="optimizer", text="b", hash="h2", birth=1) == second
    with pytest.raises(StoreError, match="birth 1"):
        store.add_candidate(job, kind="optimizer", text="other", hash="h3", birth=1)
    record = store.get_candidate(second)
    assert (record.text, record.hash, record.parent_ids, record.mutation) == ("b", "h2", (first,), "insert")
    with pytest.raises(StoreError, match="no candidate"):
        store.get_candidate(999)


def test_evaluation_lifecycle_is_recorded_once(store: Store) -> None:
    job = _job(store)
    cand = store.add_candidate(job, kind="optimizer", text="a", hash="h")
    ev = store.add_evaluation(job, cand, key="a/t/0", task="t", seed=0)
    assert store.add_evaluation(job, cand, key="a/t/0", task="t", seed=0) == ev
    assert [e.id for e in store.unfinished_evaluations(job)] == [ev]
    store.mark_running(ev, worker="w0")
    assert store.unfinished_evaluations(job)[0].status == "running"
    assert store.finish_evaluation(ev, status="ok", fitness=0.5, metrics={"loss": math.nan}, worker="w0",
                                   wall_time=1.5, attempts=2)
    assert not store.finish_evaluation(ev, status="failed", error="late duplicate")
    record = store.get_evaluation(job, "a/t/0")
    assert record is not None and store.unfinished_evaluations(job) == []
    assert (record.status, record.fitness, record.worker, record.wall_time, record.attempts) == ("ok", 0.5, "w0", 1.5, 2)
    assert math.isnan(record.metrics["loss"]) and record.finished_order == 1 and record.finished is not None
    assert store.get_evaluation(job, "nope") is None
    with pytest.raises(StoreError, match="no evaluation"):
        store.finish_evaluation(12345, status="ok")
    with pytest.raises(ValueError, match="finished status"):
        store.finish_evaluation(ev, status="pending")


def test_counts_top_k_and_curve(store: Store) -> None:
    job = _job(store)
    _evaluated(store, job, "a", "h1", 0.2)
    _evaluated(store, job, "b", "h2", None, status="failed")
    _evaluated(store, job, "c", "h1", 0.2, status="cached")  # same function as "a"
    _evaluated(store, job, "d", "h3", 0.9)
    _evaluated(store, job, "e", "h4", 0.5, task="other")
    pending = store.add_candidate(job, kind="optimizer", text="f", hash="h5")
    store.add_evaluation(job, pending, key="f", task="t", seed=0)
    counts = store.counts(job)
    assert (counts.candidates, counts.evaluations, counts.ok, counts.failed, counts.cache_hits, counts.pending) == (
        6, 4, 3, 1, 1, 1)
    assert [r.candidate.text for r in store.top_k(job, 3)] == ["d", "e", "a"]
    assert [r.candidate.text for r in store.top_k(job, 3, unique_hash=False)] == ["d", "e", "a"]
    assert [r.candidate.text for r in store.top_k(job, 5, unique_hash=False, task="t")] == ["d", "a", "c"]
    curve = store.best_so_far(job, task="t")
    assert [(p.order, p.status, p.fitness, p.best) for p in curve] == [
        (1, "ok", 0.2, 0.2), (2, "failed", None, 0.2), (3, "cached", 0.2, 0.2), (4, "ok", 0.9, 0.9)]


def test_lineage_follows_every_parent(store: Store) -> None:
    job = _job(store)
    root = store.add_candidate(job, kind="optimizer", text="r", hash="a")
    left = store.add_candidate(job, kind="optimizer", text="l", hash="b", parent_ids=[root], mutation="insert")
    right = store.add_candidate(job, kind="optimizer", text="x", hash="c", parent_ids=[root], mutation="modify")
    child = store.add_candidate(job, kind="optimizer", text="c", hash="d", parent_ids=[left, right],
                                mutation="crossover")
    steps = store.lineage(child)
    assert [(s.text, s.mutation) for s in steps] == [("c", "crossover"), ("l", "insert"), ("x", "modify"), ("r", None)]


def test_checkpoints_keep_newest_and_round_trip(store: Store) -> None:
    job = _job(store)
    assert store.latest_checkpoint(job) is None
    state = {"rng": {"state": 2**100 + 1, "inc": 3}, "worst": -math.inf, "population": [[1, 0.5]]}
    for step in range(5):
        assert store.save_checkpoint(job, {**state, "step": step}) == step + 1
    latest = store.latest_checkpoint(job)
    assert latest is not None and latest.seq == 5 and latest.state == {**state, "step": 4}
    with store._connection() as conn:  # only the newest `keep_checkpoints` (3) remain
        assert conn.execute(sa.text("SELECT count(*) FROM checkpoints")).scalar() == 3


def test_cache_entries_upsert(store: Store) -> None:
    job = _job(store)
    store.save_cache_entries(job, {"h1": {"fitness": 0.1}, "h2": {"fitness": 0.2}})
    store.save_cache_entries(job, {"h2": {"fitness": 0.3}})
    assert store.load_cache_entries(job) == {"h1": {"fitness": 0.1}, "h2": {"fitness": 0.3}}
    assert store.load_cache_entries(_job(store, "other")) == {}


def test_transaction_is_atomic(store: Store) -> None:
    job = _job(store)
    cand = store.add_candidate(job, kind="optimizer", text="a", hash="h")
    ev = store.add_evaluation(job, cand, key="k", task="t", seed=0)
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction():
            store.finish_evaluation(ev, status="ok", fitness=1.0)
            store.save_checkpoint(job, {"step": 1})
            store.save_cache_entries(job, {"h": {"fitness": 1.0}})
            raise RuntimeError("boom")
    assert [e.status for e in store.list_evaluations(job)] == ["pending"]
    assert store.latest_checkpoint(job) is None and store.load_cache_entries(job) == {}
    with store.transaction():
        store.finish_evaluation(ev, status="ok", fitness=1.0)
        store.save_checkpoint(job, {"step": 1})
    assert store.list_evaluations(job, status="ok")[0].id == ev and store.latest_checkpoint(job) is not None


def test_transaction_is_thread_safe(store: Store) -> None:
    job = _job(store)

    def work(worker: int) -> None:
        for i in range(10):
            with store.transaction():
                cand = store.add_candidate(job, kind="optimizer", text=f"{worker}-{i}", hash=f"{worker}-{i}")
                ev = store.add_evaluation(job, cand, key=f"{worker}-{i}", task="t", seed=0)
                store.finish_evaluation(ev, status="ok", fitness=float(i))
                store.save_checkpoint(job, {"worker": worker, "i": i})

    threads = [threading.Thread(target=work, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    orders = sorted(e.finished_order for e in store.list_evaluations(job))
    assert orders == list(range(1, 31)) and sorted(c.birth for c in store.list_candidates(job)) == list(range(30))


def test_cli_lookups_by_hash_prefix_and_candidate(store: Store) -> None:
    job = _job(store)
    first, _ = _evaluated(store, job, "a", "ab12", 0.1)
    _evaluated(store, job, "b", "ab12", 0.2, status="cached")
    other, _ = _evaluated(store, job, "c", "ab99", 0.3)
    _evaluated(store, job, "d", "cd00", 0.4)
    assert [c.id for c in store.first_by_hash(job, "ab")] == [first, other]
    assert [c.text for c in store.first_by_hash(job, "ab", limit=1)] == ["a"]
    assert store.first_by_hash(job, "a%") == []  # literal prefix, no wildcards
    assert [e.fitness for e in store.evaluations_of([first, other])] == [0.1, 0.3]


# -- SQLite files: foreign / corrupt / newer databases are refused and left untouched -----------------------------


def _snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def _refused(path: Path, match: str) -> None:
    before = _snapshot(path)
    with pytest.raises(StoreError, match=match) as caught:
        Store(f"sqlite:///{path}")
    assert "\n" not in str(caught.value)
    assert _snapshot(path) == before


def test_corrupt_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    path.write_bytes(b"this is a text file, not a database\n" * 100)
    _refused(path, "not a SQLite database")


def test_damaged_sqlite_pages_are_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t (x)")
    raw.commit()
    raw.close()
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # keep the header, wreck the schema page
    path.write_bytes(bytes(data))
    _refused(path, "cannot be opened")


def test_foreign_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    raw.execute("INSERT INTO customers VALUES (1, 'ada')")
    raw.commit()
    raw.close()
    _refused(path, "not an autodisco results database")


def test_foreign_meta_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    raw.execute("INSERT INTO meta VALUES ('created_by', 'someone else')")
    raw.commit()
    raw.close()
    _refused(path, "created_by")


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    Store.for_run(tmp_path).close()
    path = tmp_path / "results.db"
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    raw.commit()
    raw.close()
    _refused(path, "newer autodisco")


def test_optuna_tables_may_share_the_file(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
    raw.commit()
    raw.close()
    with Store(f"sqlite:///{path}") as store:
        assert store.list_jobs() == []


def test_missing_database_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such database"):
        Store.for_run(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(StoreError, match="no such folder"):
        Store(f"sqlite:///{tmp_path / 'absent' / 'results.db'}")


def test_bad_urls_and_unreachable_servers_are_store_errors() -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        Store("results.db")
    pytest.importorskip("psycopg2")
    with pytest.raises(StoreError, match="cannot be opened.*check the URL and the server"):
        Store("postgresql+psycopg2://nobody@127.0.0.1:1/none")


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    with Store.for_run(tmp_path) as store:
        job = _job(store)
        _evaluated(store, job, "a", "h", 0.25)
        store.save_checkpoint(job, {"step": 1})
    with Store.for_run(tmp_path, create=False) as again:
        assert again.get_job("j") is not None and again.top_k(job, 1)[0].evaluation.fitness == 0.25
        assert again.latest_checkpoint(job).state == {"step": 1}  # type: ignore[union-attr]


# -- SQLite files: WAL lets readers read while the driver writes; a kill -9 leaves a consistent database ------------


def test_wal_reader_never_sees_locked_database(tmp_path: Path) -> None:
    writer = Store.for_run(tmp_path)
    reader = Store.for_run(tmp_path, create=False)
    with writer._connection() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    job = _job(writer)
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                counts = reader.counts(job)
                assert counts.ok == counts.candidates or counts.ok == counts.candidates - 1
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            errors.append(error)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(60):
            with writer.transaction():
                _evaluated(writer, job, f"p{i}", f"h{i}", float(i))
                time.sleep(0.002)  # hold the write transaction open while the reader reads
    finally:
        done.set()
        thread.join()
    assert errors == [] and reader.counts(job).ok == 60
    writer.close()
    reader.close()


WRITER = """
import sys
from search.store import Store
store = Store.for_run(sys.argv[1])
job = store.create_job("j", kind="optimizer", config={}, seed=0).id
print("ready", flush=True)
for i in range(100000):
    with store.transaction():
        cand = store.add_candidate(job, kind="optimizer", text=f"p{i}", hash=f"h{i}")
        ev = store.add_evaluation(job, cand, key=str(i), task="t", seed=0)
        store.finish_evaluation(ev, status="ok", fitness=float(i))
        store.save_checkpoint(job, {"finished": i + 1, "pad": "x" * 2000})
"""


def test_kill_9_mid_write_leaves_consistent_database(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    time.sleep(0.4)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with Store.for_run(tmp_path, create=False) as store:
        job = store.get_job("j")
        assert job is not None
        finished = store.counts(job.id).ok
        checkpoint = store.latest_checkpoint(job.id)
        assert finished > 0 and checkpoint is not None and checkpoint.state["finished"] == finished
        assert store.counts(job.id).candidates == finished and store.unfinished_evaluations(job.id) == []
