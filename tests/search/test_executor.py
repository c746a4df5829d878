"""Executors: a conformance suite over every backend, then the local pool's process management."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Iterator

import pytest

from search.executor import (
    EvalRequest, Executor, ExecutorError, InlineExecutor, LocalExecutor, LocalExecutorConfig, visible_gpus,
)

HELPERS = "_executor_workers"  # tests/search/_executor_workers.py; workers get the driver's sys.path
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


def request(key: str, fn: str, **payload: object) -> EvalRequest:
    return EvalRequest(key=key, fn=f"{HELPERS}:{fn}", payload=dict(payload))


def local(**config: object) -> LocalExecutor:
    executor = LocalExecutor(LocalExecutorConfig(**{"workers": 1, **config}))  # type: ignore[arg-type]
    executor.wait_ready(30)
    return executor


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def ray_executor(**config: object) -> Executor:
    """A ``RayExecutor`` on the shared test cluster (``_ray_cluster``; skipped without Ray, except in CI)."""
    from _ray_cluster import cluster

    cluster()
    from search.executor import RayExecutor, RayExecutorConfig

    executor = RayExecutor(RayExecutorConfig(**config))  # type: ignore[arg-type]
    executor.wait_ready(120)
    return executor


@pytest.fixture(params=["inline", "local", "ray"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    opened: Executor
    if request.param == "ray":
        opened = ray_executor(workers=2)
    else:
        opened = InlineExecutor() if request.param == "inline" else local(workers=2)
    with opened:
        yield opened


# -- conformance: every backend ---------------------------------------------------------------------------------


def test_ok_results_in_submission_order(executor: Executor) -> None:
    outcomes = list(executor.map(request(f"k{i}", "ok", x=i) for i in range(6)))
    assert [o.key for o in outcomes] == [f"k{i}" for i in range(6)]
    assert all(o.ok and o.attempts == 1 and o.error is None and o.wall_time >= 0 for o in outcomes)
    assert [o.result["fitness"] for o in outcomes] == [0, 2, 4, 6, 8, 10]  # type: ignore[index]
    assert outcomes[3].result["echo"] == {"x": 3}  # type: ignore[index]


def test_exception_is_a_failed_outcome_with_one_line(executor: Executor) -> None:
    outcome = executor.submit(request("e", "raise_error", x=7)).result()
    assert (outcome.status, outcome.result, outcome.error) == ("failed", None, "RuntimeError: bad candidate 7")
    missing = executor.submit(EvalRequest("m", "no_such_module_xyz:f", {})).result()
    assert missing.status == "failed" and missing.error.startswith("ModuleNotFoundError")  # type: ignore[union-attr]
    wrong = executor.submit(request("w", "not_a_dict")).result()
    assert wrong.status == "failed" and "not a dict" in wrong.error  # type: ignore[operator]


def test_task_failure_convention_passes_through(executor: Executor) -> None:
    outcome = executor.submit(request("f", "task_failed")).result()
    assert outcome.ok and outcome.result == {"status": "failed", "reason": "nan loss"}


def test_results_come_back_as_json_gives_them(executor: Executor) -> None:
    outcome = executor.submit(request("j", "ok", x=1, pair=[1, 2], nested={"3": None})).result()
    assert outcome.result == {"fitness": 2, "echo": {"x": 1, "pair": [1, 2], "nested": {"3": None}}, "pair": [1, 2]}


def test_malformed_requests_are_refused(executor: Executor) -> None:
    with pytest.raises(ValueError, match="module:function"):
        EvalRequest("k", "not a function name", {})
    with pytest.raises(ValueError, match="JSON-safe"):
        executor.submit(request("k", "ok", x={1, 2}))
    executor.shutdown()
    with pytest.raises(ExecutorError, match="shut down"):
        executor.submit(request("k", "ok"))


# -- the local pool -----------------------------------------------------------------------------------------------


def test_timeout_kills_the_worker_and_the_pool_goes_on() -> None:
    with local(timeout_s=0.4) as executor:
        first = executor.submit(request("p", "pid")).result().result["pid"]  # type: ignore[index]
        slow = executor.submit(request("slow", "sleep", seconds=30)).result()
        assert (slow.status, slow.error) == ("failed", "timeout after 0.4s") and slow.wall_time < 2
        assert not alive(first)
        after = executor.submit(request("after", "ok", x=1)).result()
        assert after.ok and after.worker != slow.worker


def test_crash_is_retried_on_a_fresh_worker(tmp_path: Path) -> None:
    with local(max_retries=1) as executor:
        outcome = executor.submit(request("c", "crash_once", marker=str(tmp_path / "marker"))).result()
    assert outcome.ok and outcome.attempts == 2 and (tmp_path / "marker").exists()


def test_crash_every_time_fails_after_max_retries() -> None:
    with local(max_retries=2) as executor:
        outcome = executor.submit(request("c", "crash")).result()
        assert (outcome.status, outcome.attempts) == ("failed", 3)
        assert outcome.error == "worker crashed (exit code 3) 3 times"
        assert executor.submit(request("ok", "ok", x=2)).result().result["fitness"] == 4  # type: ignore[index]


def test_workers_are_recycled_every_k_evaluations() -> None:
    with local(recycle_every=2) as executor:
        pids = [executor.submit(request(f"p{i}", "pid")).result().result["pid"] for i in range(5)]  # type: ignore[index]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


def test_two_workers_run_two_evaluations_at_once() -> None:
    with local(workers=2) as executor:
        start = time.perf_counter()
        outcomes = list(executor.map([request("a", "sleep", seconds=0.5), request("b", "sleep", seconds=0.5)]))
        elapsed = time.perf_counter() - start
    assert all(o.ok for o in outcomes) and outcomes[0].worker != outcomes[1].worker
    assert elapsed < 0.85, f"two 0.5 s evaluations on two workers took {elapsed:.2f} s"


def test_slow_evaluation_does_not_stall_the_others() -> None:
    with local(workers=2) as executor:
        slow = executor.submit(request("slow", "sleep", seconds=1.0))
        start = time.perf_counter()
        quick = [executor.submit(request(f"q{i}", "ok", x=i)) for i in range(20)]
        assert all(f.result().ok for f in quick) and not slow.done()
        assert time.perf_counter() - start < 0.8
        assert slow.result().ok


def test_worker_environment_devices_and_threads() -> None:
    with local(workers=3, devices=("0", "1"), torch_threads=2) as executor:
        assert executor.num_workers == 3 and executor.worker_devices == ("0", "1", "0")
        env = [o.result for o in executor.map(request(f"e{i}", "pid", seconds=0.3) for i in range(3))]
    assert len({e["pid"] for e in env}) == 3  # type: ignore[index]  # one per worker: each was idle
    assert sorted(e["cuda_visible_devices"] for e in env) == ["0", "0", "1"]  # type: ignore[index]
    assert {e["omp"] for e in env} == {"2"}  # type: ignore[index]
    with local(devices=()) as cpu:
        assert cpu.submit(request("p", "pid")).result().result["cuda_visible_devices"] == ""  # type: ignore[index]


def test_visible_gpus_from_the_environment_or_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == ("0", "1")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-4f2e, 3"}) == ("GPU-4f2e", "3")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == ()
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,3"}) == ("2",)
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-aa)'\necho '  MIG 1g.10gb Device 0: (UUID: MIG-b)'\n"
                    "echo 'GPU 1: NVIDIA H100 (UUID: GPU-cc)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus({}) == ("0", "1")
    fake.write_text("#!/bin/sh\nexit 9\n")  # a driver problem: no GPU rather than an error
    assert visible_gpus({}) == ()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert visible_gpus({}) == ()


def test_shutdown_without_wait_cancels_and_leaves_no_children() -> None:
    executor = local(workers=2)
    running = [executor.submit(request(f"r{i}", "sleep", seconds=30)) for i in range(2)]
    queued = executor.submit(request("q", "ok"))
    time.sleep(0.2)
    pids = [slot.worker.pid for slot in executor._dispatcher._slots]  # type: ignore[union-attr]
    start = time.perf_counter()
    executor.shutdown(wait=False)
    assert time.perf_counter() - start < 2
    assert all(f.cancelled() for f in [*running, queued])
    with pytest.raises(CancelledError):
        queued.result()
    assert not any(alive(p) for p in pids)


def test_shutdown_with_wait_finishes_everything_then_stops_workers() -> None:
    executor = local(workers=2)
    futures = [executor.submit(request(f"s{i}", "sleep", seconds=0.1)) for i in range(4)]
    pids = [slot.worker.pid for slot in executor._dispatcher._slots]  # type: ignore[union-attr]
    executor.shutdown(wait=True)
    assert all(f.done() and f.result().ok for f in futures)
    assert not any(alive(p) for p in pids)


def test_keys_in_flight_are_unique() -> None:
    with local() as executor:
        first = executor.submit(request("same", "sleep", seconds=0.2))
        with pytest.raises(ValueError, match="already in flight"):
            executor.submit(request("same", "ok"))
        assert first.result().ok
        assert executor.submit(request("same", "ok")).result().ok  # free again once finished


def test_workers_that_cannot_start_break_the_executor() -> None:
    executor = LocalExecutor(LocalExecutorConfig(workers=1, preload=("no_such_module_xyz",)))
    future = executor.submit(request("k", "ok"))
    with pytest.raises(ExecutorError, match="workers fail to start"):
        executor.wait_ready(30)
    with pytest.raises(ExecutorError, match="fail to start"):
        future.result(timeout=30)
    with pytest.raises(ExecutorError):
        executor.submit(request("k2", "ok"))
    executor.shutdown()


def test_config_is_validated() -> None:
    for bad in ({"workers": 0}, {"workers": "many"}, {"timeout_s": 0}, {"max_retries": -1}, {"recycle_every": 0},
                {"torch_threads": 0}):
        with pytest.raises(ValueError):
            LocalExecutorConfig(**bad)  # type: ignore[arg-type]
    assert LocalExecutorConfig(devices=[0, 1]).devices == ("0", "1")  # type: ignore[arg-type]


DRIVER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from search.executor import EvalRequest, LocalExecutor, LocalExecutorConfig
executor = LocalExecutor(LocalExecutorConfig(workers=2))
executor.wait_ready(30)
for i in range(2):
    executor.submit(EvalRequest(f"s{i}", "_executor_workers:sleep", {"seconds": 60}))
time.sleep(0.3)
print(json.dumps([slot.worker.pid for slot in executor._dispatcher._slots]), flush=True)
time.sleep(60)
"""


def test_workers_exit_when_the_driver_is_killed() -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(Path(__file__).parent)], stdout=subprocess.PIPE,
                              text=True)
    assert driver.stdout is not None
    pids = json.loads(driver.stdout.readline())
    assert all(alive(p) for p in pids)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


@pytest.mark.gpu
def test_one_worker_per_visible_gpu() -> None:
    gpus = visible_gpus()
    if not gpus:
        pytest.skip("no GPU visible")
    with LocalExecutor(LocalExecutorConfig(torch_threads=1)) as executor:
        assert executor.num_workers == len(gpus) and executor.worker_devices == gpus
        seen = [o.result for o in executor.map(request(f"g{i}", "cuda_info") for i in range(len(gpus)))]
    assert all(s["count"] == 1 and s["threads"] == 1 and s["name"] for s in seen)  # type: ignore[index]
    assert {s["visible"] for s in seen} <= set(gpus)  # type: ignore[index]
    torch = sys.modules.get("torch")
    assert torch is None or not torch.cuda.is_initialized(), "the driver must not initialise CUDA"
