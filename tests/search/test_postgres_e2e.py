"""End to end on PostgreSQL, through a proxy in front of the test server that the test can cut (every connection
dropped, new ones refused, for a while — a server restart or a network failure as the driver sees it):

* a dropped connection inside a transaction rolls it back and is one ``ConnectionLostError``; the job's lease, which
  could not be released then, is taken back by the same store;
* a search waits out a 2 s cut and goes on from its last checkpoint in the same process; then `kill -9` of the driver
  and its workers; `runs show` says interrupted; two `autodisco resume` started at once: exactly one runs, and the
  budget ends exact, nothing lost or recorded twice."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from search.cli import main
from search.store import ConnectionLostError, Store, StoreError

sys.path.insert(0, str(Path(__file__).parent))
from _tcp_proxy import CuttableProxy  # noqa: E402

BUDGET = 60  # a quadratic evaluation takes tens of ms: the driver must still be running when the test kills it


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
    time.sleep(proxy.down_for() + 0.1)
    assert store.reachable()
    assert store.list_candidates(job) == []  # the first insert went with the transaction

    with Store(proxy.url(fresh_postgres), create=False, read_only=True) as reader:  # a reader is told to try again
        proxy.cut(0.6)
        with pytest.raises(ConnectionLostError, match="try again$"):
            reader.list_candidates(job)
    time.sleep(proxy.down_for() + 0.1)

    # The job's driver loses the database: its lease cannot be released then (the server refuses), and it is still
    # alive (this process, a 60 s TTL): another driver is refused, but this store takes its own lease back.
    with pytest.raises(ConnectionLostError):
        with store.job_running(job):
            proxy.cut(0.6)
            store.save_checkpoint(job, {"n": 1})
    time.sleep(proxy.down_for() + 0.1)
    with Store(fresh_postgres, create=False) as other:
        with pytest.raises(StoreError, match="another driver"):
            other.acquire_lease(job)
    with store.job_running(job):
        store.save_checkpoint(job, {"n": 2})
    assert store.latest_checkpoint(job).state == {"n": 2}
    store.close()


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "search.cli._main", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _recorded(url: str) -> int:
    try:
        with Store(url, create=False, read_only=True) as store:
            job = store.get_job("pg")
            return store.counts(job.id).evaluations if job else 0
    except StoreError:  # not created yet
        return 0


def _wait_for(url: str, process: subprocess.Popen, recorded: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and _recorded(url) < recorded:
        time.sleep(0.05)
    assert process.poll() is None, "the search ended before the test could act on it"


def test_search_waits_out_an_outage_then_kill_9_and_two_resumes_on_postgresql(
        fresh_postgres: str, proxy: CuttableProxy, tmp_path: Path, capsys) -> None:
    url, direct = proxy.url(fresh_postgres), fresh_postgres  # the driver goes through the proxy, the test past it
    log = tmp_path / "search.err"
    search = _command("search", "optimizer", "--run", "runs/pg", "--db", url, "--task", "quadratic",
                      "--evaluations", str(BUDGET), "--population", "6", "--workers", "1", "--db-wait", "30")
    with open(log, "w") as err:
        process = subprocess.Popen(search, cwd=tmp_path, env=_env(), start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        _wait_for(direct, process, 10)
        proxy.cut(2.0)  # longer than any evaluation takes: the driver meets it in a unit
        cut_at = _recorded(direct)
        _wait_for(direct, process, cut_at + 10)  # it went on after the cut
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers, all at once
        process.wait()
    said = log.read_text()
    assert said.count("lost the connection to the database") == 1, said
    assert said.count("continuing from the last checkpoint") == 1, said

    assert main(["runs", "show", "runs/pg", "--db", direct, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "interrupted"  # the lease died with the driver
    with Store(direct, create=False, read_only=True) as store:
        job = store.get_job("pg")
        before = {e.key: (e.status, e.fitness) for e in store.list_evaluations(job.id) if e.finished_order}
    assert 0 < len(before) < BUDGET

    resume = _command("resume", "runs/pg", "--db", url, "--workers", "1", "--quiet")
    resumes = [subprocess.Popen(resume, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in resumes]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert len(refused.strip().splitlines()) == 1, refused
    assert "another driver" in refused or "already finished" in refused, refused  # the latter: it came that late

    with Store(direct, create=False, read_only=True) as store:
        job = store.get_job("pg")
        counts = store.counts(job.id)
        evaluations = store.list_evaluations(job.id)
    assert job.status == "finished"
    assert counts.evaluations == BUDGET and counts.pending == 0
    assert max(collections.Counter(e.candidate_id for e in evaluations).values()) == 1
    after = {e.key: (e.status, e.fitness) for e in evaluations}
    assert all(after[key] == value for key, value in before.items())
    orders = [e.finished_order for e in evaluations]
    assert len(set(orders)) == len(orders)
