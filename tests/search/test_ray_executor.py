"""The Ray executor on a multi-node cluster on this machine: worker management, a search across nodes, a node lost
mid-run, and the driver killed with kill -9 then resumed on the same cluster. (The executor conformance suite runs on
Ray too, in test_executor.py.)"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from programs import library
from search.executor import EvalRequest
from search.jobs import run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import OptimizerKind
from search.store import Store, StoreError

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

import _ray_cluster  # noqa: E402

HELPERS = "_executor_workers"


@pytest.fixture(scope="module")
def cluster() -> Any:
    return _ray_cluster.cluster()


def ray_executor(**config: Any) -> Any:
    from search.executor import RayExecutor, RayExecutorConfig

    executor = RayExecutor(RayExecutorConfig(**config))
    executor.wait_ready(120)
    return executor


def request(key: str, fn: str, **payload: object) -> EvalRequest:
    return EvalRequest(key=key, fn=f"{HELPERS}:{fn}", payload=dict(payload))


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds:g}s: {what}"
        time.sleep(0.1)


def test_timeout_crash_retry_and_recycling_on_actors(cluster: Any, tmp_path: Path) -> None:
    with ray_executor(workers=1, timeout_s=1.5, max_retries=1, recycle_every=2) as executor:
        pids = [executor.submit(request(f"p{i}", "pid")).result().result["pid"] for i in range(3)]
        assert pids[0] == pids[1] != pids[2], "the actor is replaced after recycle_every evaluations"
        crashed = executor.submit(request("c", "crash_once", marker=str(tmp_path / "marker"))).result()
        assert crashed.ok and crashed.attempts == 2, "an actor that died is replaced and the evaluation retried"
        always = executor.submit(request("a", "crash")).result()
        assert (always.status, always.attempts) == ("failed", 2) and always.error.startswith("worker crashed (")
        slow = executor.submit(request("s", "sleep", seconds=30)).result()
        assert (slow.status, slow.error) == ("failed", "timeout after 1.5s") and slow.wall_time < 5
        after = executor.submit(request("after", "ok", x=2)).result()
        assert after.result["fitness"] == 4 and after.worker != slow.worker


def test_shutdown_without_wait_cancels_and_leaves_no_actor(cluster: Any) -> None:
    import ray

    total = ray.cluster_resources()["CPU"]
    executor = ray_executor()
    assert executor.num_workers == int(total) and len(set(executor.worker_nodes)) == int(total)  # one per node
    running = [executor.submit(request(f"r{i}", "sleep", seconds=30)) for i in range(executor.num_workers + 1)]
    time.sleep(0.3)
    start = time.perf_counter()
    executor.shutdown(wait=False)
    assert time.perf_counter() - start < 5 and all(f.cancelled() for f in running)
    assert _ray_cluster.cpus_free_within(total, 10), "an actor outlived the executor's shutdown"


class _SlowKind(OptimizerKind):
    worker_fn = "_executor_workers:slow_optimizer"


def test_search_across_nodes_survives_a_node_leaving(cluster: Any, tmp_path: Path) -> None:
    """A node joins (its CPU is used), then leaves mid-run under an evaluation: nothing lost, budget exact."""
    extra = _ray_cluster.add_node()
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        made.append(ray_executor(preload=options.get("preload", ())))
        return made[-1]

    config = SearchConfig(tasks=("quadratic",), population=4, evaluations=18, seed=1,
                          warm_start=(library.get("adamw").to_text(),))
    store = Store.for_run(tmp_path / "nodes")
    job = SearchJob.create(store, "nodes", _SlowKind(), config, executor_factory=factory, show_progress=False)
    removed: list[str] = []

    def remove_when_busy() -> None:
        wait_for(lambda: made and made[0].num_workers == 3 and store.counts(job.record.id).evaluations >= 3, 120,
                 "three actors and three results")
        executor = made[0]
        node_id = extra.node_id
        wait_for(lambda: any(s.node == node_id and s.task is not None for s in executor._slots), 30,
                 "the new node's actor busy")
        removed.append(len(set(executor.worker_nodes)))
        cluster.remove_node(extra, allow_graceful=False)

    remover = threading.Thread(target=remove_when_busy, daemon=True)
    remover.start()
    summary = run_job(job)
    remover.join(5)
    assert removed == [3], "the node was never removed, or the actors were not one per node"
    evaluations = store.list_evaluations(job.record.id)
    assert summary.evaluations == 18 and store.counts(job.record.id).pending == 0
    assert max(collections.Counter(e.candidate_id for e in evaluations).values()) == 1
    assert any(e.attempts >= 2 for e in evaluations), "the lost node's evaluation was re-dispatched"
    lost = [e.error for e in evaluations if e.error and e.error.startswith(("worker crashed", "timeout"))]
    assert not lost, lost
    wait_for(lambda: made[0].num_workers == 2, 1, "the pool shrank with the cluster")


def test_kill_9_of_the_driver_then_resume_on_the_same_cluster(cluster: Any, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "rk9"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    ray_options = ["--executor", "ray", "--ray-address", cluster.address, "--quiet"]
    command = [sys.executable, "-m", "search.cli._main", "search", "optimizer", "--run", str(run), "--task",
               "quadratic", "--evaluations", "14", "--population", "4", *ray_options]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    recorded = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None and recorded < 3:
        time.sleep(0.3)
        try:
            with Store.for_run(run, create=False) as store:
                job = store.get_job("rk9")
                recorded = store.counts(job.id).evaluations if job else 0
        except StoreError:
            pass  # not created yet, or still empty
    assert process.poll() is None, f"the search ended before it could be killed: {process.stderr.read()}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with Store.for_run(run, create=False) as store:
        job = store.get_job("rk9")
        before = {e.key: (e.status, e.fitness) for e in store.list_evaluations(job.id) if e.finished_order}
    assert before and job.status == "interrupted"  # its lease died with the driver

    resumed = subprocess.run([sys.executable, "-m", "search.cli._main", "resume", str(run), *ray_options],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with Store.for_run(run, create=False) as store:
        job = store.get_job("rk9")
        counts, evaluations = store.counts(job.id), store.list_evaluations(job.id)
    assert job.status == "finished" and counts.evaluations == 14 and counts.pending == 0
    assert max(collections.Counter(e.candidate_id for e in evaluations).values()) == 1
    after = {e.key: (e.status, e.fitness) for e in evaluations}
    assert all(after[key] == value for key, value in before.items())
