"""In-flight dedup: candidates whose functional hash is being evaluated wait for that evaluation and are recorded as
its cache hits — one at a time or batched, and after a ``kill -9`` while the first is in flight, on resume."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.jobs import open_job, run_job
from search.jobs._search import SearchJob
from search.kinds import OptimizerKind
from search.store import Store, StoreError

sys.path.insert(0, str(Path(__file__).parent))
from _held_executor import LaggedExecutor, TogetherExecutor, search_config  # noqa: E402


def _check_recorded_once(store: Store, job_id: int, evaluations: int) -> tuple[int, int]:
    """Every candidate finished exactly once, no hash evaluated twice, every hit has its hash's fitness; returns
    (evaluations run, cache hits)."""
    candidates = {c.id: c for c in store.list_candidates(job_id)}
    rows = store.list_evaluations(job_id)
    assert all(r.status in ("ok", "failed", "cached") for r in rows), "an evaluation was left pending"
    assert collections.Counter(r.candidate_id for r in rows).most_common(1)[0][1] == 1
    assert set(candidates) == {r.candidate_id for r in rows}
    ran = [r for r in rows if r.status in ("ok", "failed")]
    assert len(ran) == evaluations == store.counts(job_id).evaluations
    hashes_run = collections.Counter(candidates[r.candidate_id].hash for r in ran)
    assert hashes_run.most_common(1)[0][1] == 1, "a functional hash was evaluated twice"
    fitness = {candidates[r.candidate_id].hash: r.fitness for r in ran}
    hits = [r for r in rows if r.status == "cached"]
    for hit in hits:
        assert hit.fitness == fitness[candidates[hit.candidate_id].hash] and hit.worker is None
    orders = [r.finished_order for r in rows]
    assert len(set(orders)) == len(orders)
    return len(ran), len(hits)


def _waits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hashes whose waiters were recorded (a spy on the job)."""
    seen: list[str] = []
    original = SearchJob._hit_for

    def spy(self, digest, *args):
        seen.append(digest)
        return original(self, digest, *args)

    monkeypatch.setattr(SearchJob, "_hit_for", spy)
    return seen


@pytest.mark.parametrize("batch", [1, 3])
def test_same_hash_in_flight_is_evaluated_once_and_the_other_waits(tmp_path: Path, monkeypatch, batch: int) -> None:
    waited = _waits(monkeypatch)
    executors: list[LaggedExecutor] = []

    def factory(**_):
        executors.append(LaggedExecutor(workers=4))
        return executors[-1]

    store = Store.for_run(tmp_path / "run")
    job = SearchJob.create(store, "run", OptimizerKind(fcm=False), search_config(batch=batch),
                           executor_factory=factory, show_progress=False)
    summary = run_job(job)
    assert summary.evaluations == 24
    ran, hits = _check_recorded_once(store, job.record.id, 24)
    assert waited, "no candidate ever waited: the test does not exercise in-flight dedup"
    assert hits >= len(waited)
    sent = [p for r in executors[0].submitted for p in r.payload.get("requests", [r.payload])]
    assert len(sent) == ran  # what reached the executor is exactly what was recorded as run


def test_with_the_cache_off_both_are_evaluated(tmp_path: Path, monkeypatch) -> None:
    waited = _waits(monkeypatch)
    store = Store.for_run(tmp_path / "run")
    job = SearchJob.create(store, "run", OptimizerKind(fcm=False), search_config(cache="off"),
                           executor_factory=lambda **_: LaggedExecutor(workers=4), show_progress=False)
    run_job(job)
    assert not waited
    assert all(e.status != "cached" for e in store.list_evaluations(job.record.id))


def _pending_waiter(run: Path) -> bool:
    """Whether two pending evaluations of the job share a functional hash (one flies, the other waits)."""
    try:
        with Store.for_run(run, create=False) as store:
            job = store.get_job("held")
            if job is None:
                return False
            hashes = [store.get_candidate(e.candidate_id).hash for e in store.unfinished_evaluations(job.id)]
    except StoreError:  # not created yet
        return False
    return len(hashes) > len(set(hashes))


@pytest.mark.parametrize("batch", [1, 3])
def test_kill_9_while_the_first_is_in_flight_then_resume_gives_the_waiter_its_result(tmp_path: Path,
                                                                                      batch: int) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    script = Path(__file__).parent / "_held_executor.py"
    process = subprocess.Popen([sys.executable, str(script), str(run), str(batch)], cwd=tmp_path, env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not _pending_waiter(run):
        time.sleep(0.2)
    assert process.poll() is None, f"the driver ended before it could be killed: {process.stderr.read()}"
    assert _pending_waiter(run), "no candidate was waiting when the driver was killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    store = Store.for_run(run, create=False)
    record = store.get_job("held")
    before = {e.id for e in store.unfinished_evaluations(record.id)}
    executor = LaggedExecutor(workers=4)
    resumed = open_job(store, record, executor_factory=lambda **_: executor, show_progress=False)
    summary = run_job(resumed)
    assert summary.evaluations == 24
    _check_recorded_once(store, record.id, 24)
    after = {e.id: e for e in store.list_evaluations(record.id)}
    waiters = [after[i] for i in before if after[i].status == "cached"]
    assert waiters, "the candidate that waited got no cache hit after the resume"
    store.close()


def test_results_that_arrive_together_are_recorded_in_dispatch_order(tmp_path: Path) -> None:
    # the executor completes four futures at once; iterated as a set they come out of order (their hashes): the
    # driver records and tells them in the order it sent them, so a seeded run is the same every time
    store = Store.for_run(tmp_path / "run")
    job = SearchJob.create(store, "together", OptimizerKind(), search_config(evaluations=40, population=8),
                           executor_factory=lambda **_: TogetherExecutor(workers=4), show_progress=False)
    run_job(job)
    ran = sorted((r for r in store.list_evaluations(job.record.id) if r.status in ("ok", "failed")),
                 key=lambda r: r.id)
    assert len(ran) == 40
    orders = [r.finished_order for r in ran]
    assert orders == sorted(orders), orders
