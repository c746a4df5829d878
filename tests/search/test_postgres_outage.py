"""The database connection lost for a moment, on PostgreSQL through a proxy the test cuts (every connection dropped,
new ones refused, for a while): the unit in progress is rolled back and is one ``ConnectionLostError``; a search
waits for the database and goes on from its last checkpoint in the same process; a database away longer than
``--db-wait`` stops the command in one line, and ``resume`` finishes the budget exactly."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from search.cli import main
from search.store import ConnectionLostError, Store, StoreError

sys.path.insert(0, str(Path(__file__).parent))
from _tcp_proxy import CuttableProxy  # noqa: E402


@pytest.fixture
def proxy(fresh_postgres: str) -> Iterator[CuttableProxy]:
    url = sa.make_url(fresh_postgres)
    cuttable = CuttableProxy((url.host or "127.0.0.1", url.port or 5432))
    yield cuttable
    cuttable.close()


def _candidate(birth: int) -> dict[str, object]:
    return {"kind": "optimizer", "text": f"t{birth}", "hash": f"h{birth}", "parent_ids": [], "mutation": None,
            "birth": birth}


def test_a_dropped_connection_rolls_the_transaction_back_and_the_lease_is_taken_back(
        fresh_postgres: str, proxy: CuttableProxy) -> None:
    store = Store(proxy.url(fresh_postgres), lease_ttl_s=60.0)
    job = store.create_job("j", kind="optimizer", config={}, seed=0).id
    with pytest.raises(ConnectionLostError) as caught:
        with store.transaction():
            store.add_candidates(job, [_candidate(0)])
            proxy.cut(0.6)
            store.add_candidates(job, [_candidate(1)])
    message = str(caught.value)
    assert "lost the connection to the database" in message and "\n" not in message
    assert caught.value.reason and caught.value.reason in message
    assert not store.reachable()  # refused while the cut lasts
    time.sleep(0.7)
    assert store.reachable()
    assert store.list_candidates(job) == []  # the first insert went with the transaction

    with Store(proxy.url(fresh_postgres), create=False, read_only=True) as reader:  # a reader is told to try again
        proxy.cut(0.6)
        with pytest.raises(ConnectionLostError, match="try again$"):
            reader.list_candidates(job)
    time.sleep(0.7)

    # The job's driver loses the database: its lease cannot be released then (the server refuses), and it is still
    # alive (this process, a 60 s TTL): another driver is refused, but this store takes its own lease back.
    with pytest.raises(ConnectionLostError):
        with store.job_running(job):
            proxy.cut(0.6)
            store.save_checkpoint(job, {"n": 1})
    time.sleep(0.7)
    with Store(fresh_postgres, create=False) as other:
        with pytest.raises(Exception, match="another driver"):
            other.acquire_lease(job)
    with store.job_running(job):
        store.save_checkpoint(job, {"n": 2})
    assert store.latest_checkpoint(job).state == {"n": 2}
    store.close()


def _recorded(url: str) -> int:
    try:
        with Store(url, create=False, read_only=True) as store:
            job = store.get_job("pg")
            return store.counts(job.id).evaluations if job else 0
    except StoreError:  # no tables yet
        return 0


def _check_finished_exactly(url: str, budget: int) -> None:
    with Store(url, create=False, read_only=True) as store:
        job = store.get_job("pg")
        counts = store.counts(job.id)
        evaluations = store.list_evaluations(job.id)
    assert job.status == "finished"
    assert counts.evaluations == budget and counts.pending == 0
    assert max(collections.Counter(e.candidate_id for e in evaluations).values()) == 1
    orders = [e.finished_order for e in evaluations]
    assert len(set(orders)) == len(orders)


def _cut_at(url: str, proxy: CuttableProxy, marks: tuple[int, ...], seconds: float, done: threading.Event) -> None:
    """Cut the proxy for ``seconds`` once ``mark`` results are recorded, for each mark (read past the proxy)."""
    for mark in marks:
        while not done.is_set() and _recorded(url) < mark:
            time.sleep(0.05)
        if done.is_set():
            return
        proxy.cut(seconds)


def test_a_search_waits_out_an_outage_stops_in_one_line_after_a_longer_one_and_resume_finishes(
        fresh_postgres: str, proxy: CuttableProxy, tmp_path: Path, monkeypatch, capsys) -> None:
    """A cut of 1 s is waited out; one of 5 s outlasts ``--db-wait 2``: exit 2, one line saying how to go on."""
    budget = 50
    url = proxy.url(fresh_postgres)
    search = [sys.executable, "-m", "search.cli._main", "search", "optimizer", "--run", "runs/pg", "--db", url,
              "--task", "quadratic", "--evaluations", str(budget), "--population", "6", "--workers", "1",
              "--db-wait", "2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(search, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    done = threading.Event()
    short = threading.Thread(target=_cut_at, args=(fresh_postgres, proxy, (10,), 1.0, done), daemon=True)
    short.start()
    try:
        short.join(timeout=240)
        _cut_at(fresh_postgres, proxy, (25,), 5.0, done)
        code = process.wait(timeout=240)
    finally:
        done.set()
        process.kill()
    err = process.stderr.read()  # type: ignore[union-attr]
    assert code == 2, err
    assert proxy.cuts == 2
    assert err.count("waiting up to 2 s for it") == 2, err
    assert err.count("continuing from the last checkpoint") == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("autodisco: error:") and "lost the connection to the database" in last, err
    assert "continue with: autodisco resume runs/pg --db postgresql" in last
    assert 25 <= _recorded(fresh_postgres) < budget

    time.sleep(proxy.down_for())
    monkeypatch.chdir(tmp_path)
    assert main(["resume", "runs/pg", "--db", url, "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    _check_finished_exactly(fresh_postgres, budget)


def test_a_negative_db_wait_is_refused_in_one_line_before_anything_is_recorded(tmp_path: Path, monkeypatch,
                                                                                capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", "optimizer", "--run", "runs/x", "--task", "quadratic", "--db-wait", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--db-wait must be >= 0 seconds" in err[0]
    assert not (tmp_path / "runs" / "x" / "results.db").exists()
