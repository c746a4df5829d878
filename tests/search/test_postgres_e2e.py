"""End to end on PostgreSQL: a search with --db, kill -9 of the driver and its workers, `runs show` says interrupted,
then two `autodisco resume` started at once: exactly one runs, and nothing is lost or recorded twice."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from search.cli import main
from search.store import Store

BUDGET = 60  # a quadratic evaluation takes tens of ms: the driver must still be running when the test kills it


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "search.cli._main", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _recorded(url: str) -> int:
    try:
        with Store(url, create=False, read_only=True) as store:
            job = store.get_job("pg")
            return store.counts(job.id).evaluations if job else 0
    except ValueError:  # not created yet
        return 0


def test_search_kill_9_and_two_resumes_on_postgresql(fresh_postgres: str, tmp_path: Path, capsys) -> None:
    url = fresh_postgres
    search = _command("search", "optimizer", "--run", "runs/pg", "--db", url, "--task", "quadratic",
                      "--evaluations", str(BUDGET), "--population", "6", "--workers", "1", "--quiet")
    process = subprocess.Popen(search, cwd=tmp_path, env=_env(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and _recorded(url) < 3:
        time.sleep(0.05)
    assert process.poll() is None, f"the search ended before it could be killed: {process.stderr.read()}"
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers, all at once
    process.wait()

    assert main(["runs", "show", "runs/pg", "--db", url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "interrupted"  # the lease died with the driver
    with Store(url, create=False, read_only=True) as store:
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

    with Store(url, create=False, read_only=True) as store:
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
