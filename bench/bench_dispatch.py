"""Dispatch overhead of ``LocalExecutor`` against calling the function inline, side by side.

Measured, with a warm pool (workers started and ready before timing):
  * latency: submit → result of one no-op evaluation at a time, vs an inline call (the baseline);
  * throughput: many no-op evaluations in flight at once;
  * a 50 ms evaluation (``time.sleep``): per-evaluation overhead as a fraction of the evaluation time, worker
    utilisation (ideal time / measured time) with N workers, and the speed-up over running them inline.

With ``--ray`` it also starts a Ray cluster of two nodes on this machine (``ray.cluster_utils.Cluster``, one CPU
each), runs the same measurements on ``RayExecutor`` (one actor per node) and prints them against the local pool with
two workers: Ray's dispatch overhead per evaluation and worker utilisation with 2 Ray nodes.

Run: ``python bench/bench_dispatch.py [--workers 1 2 4] [--sleep-evals 40] [--ray]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that workers can import this module's functions

from search.executor import (  # noqa: E402
    EvalRequest, Executor, InlineExecutor, LocalExecutor, LocalExecutorConfig, RayExecutor, RayExecutorConfig,
)

SLEEP_S = 0.05


def noop(payload: dict) -> dict:
    return {"fitness": 0.0}


def sleep(payload: dict) -> dict:
    time.sleep(payload["seconds"])
    return {"fitness": 0.0}


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    baseline: float

    def show(self) -> str:
        return f"{self.name:<48} {self.seconds * 1e3:>10.3f} ms {self.baseline * 1e3:>10.3f} ms {self.seconds / self.baseline:>9.1f}x"


def requests(fn: str, n: int, prefix: str, **payload: object) -> list[EvalRequest]:
    return [EvalRequest(f"{prefix}{i}", f"bench_dispatch:{fn}", dict(payload)) for i in range(n)]


def latency(executor: Executor, n: int) -> float:
    start = time.perf_counter()
    for request in requests("noop", n, "lat"):
        executor.submit(request).result()
    return (time.perf_counter() - start) / n


def batch(executor: Executor, fn: str, n: int, prefix: str, **payload: object) -> float:
    start = time.perf_counter()
    outcomes = list(executor.map(requests(fn, n, prefix, **payload)))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    return time.perf_counter() - start


def inline_call(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        noop({"x": 0})
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--noop-evals", type=int, default=500)
    parser.add_argument("--sleep-evals", type=int, default=40, help="50 ms evaluations per worker")
    parser.add_argument("--ray", action="store_true", help="also measure RayExecutor on a 2-node local Ray cluster")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}  (machine load 1 min: {os.getloadavg()[0]:.1f})")
    call = inline_call(args.noop_evals)
    with InlineExecutor() as inline:
        inline_noop = latency(inline, args.noop_evals)
        inline_sleep = batch(inline, "sleep", args.sleep_evals, "is", seconds=SLEEP_S) / args.sleep_evals
    print(f"{'measure':<48} {'measured':>13} {'baseline':>13} {'ratio':>10}")
    print(Row("InlineExecutor no-op vs plain call", inline_noop, call).show())
    local_two = None
    for workers in args.workers:
        config = LocalExecutorConfig(workers=workers, devices=(), torch_threads=1)
        with LocalExecutor(config) as pool:
            pool.wait_ready(60)
            figures = measure(pool, workers, inline_sleep, args)
        local_two = figures if workers == 2 else local_two
        show(f"{workers} workers", figures, {"one": call, "many": call, "sleep": inline_sleep}, inline_sleep, workers)
    if args.ray:
        if local_two is None:
            with LocalExecutor(LocalExecutorConfig(workers=2, devices=(), torch_threads=1)) as pool:
                pool.wait_ready(60)
                local_two = measure(pool, 2, inline_sleep, args)
        figures = measure_ray(inline_sleep, args)
        print("Ray (2 nodes, one actor each) against the local pool with 2 workers:")
        show("ray 2 nodes", figures, local_two, inline_sleep, 2)


def measure(executor: Executor, workers: int, inline_sleep: float, args: argparse.Namespace) -> dict[str, float]:
    batch(executor, "noop", 4 * workers, "warm")  # each worker imports this module once
    n_sleep = args.sleep_evals * workers
    return {"one": latency(executor, args.noop_evals), "many": batch(executor, "noop", args.noop_evals, "thr") /
            args.noop_evals, "sleep": batch(executor, "sleep", n_sleep, "sl", seconds=SLEEP_S) / n_sleep}


def show(name: str, figures: dict[str, float], baseline: dict[str, float], inline_sleep: float, workers: int) -> None:
    print(Row(f"[{name}] no-op submit->result", figures["one"], baseline["one"]).show())
    print(Row(f"[{name}] no-op, all in flight, per eval", figures["many"], baseline["many"]).show())
    print(Row(f"[{name}] 50 ms eval, wall per eval", figures["sleep"], baseline["sleep"]).show())
    ideal = inline_sleep / workers  # a 50 ms sleep really takes inline_sleep
    per_eval = (figures["sleep"] - ideal) * workers
    print(f"    overhead per 50 ms evaluation: {per_eval * 1e3:.2f} ms = {per_eval / inline_sleep:.1%} of it;"
          f" utilisation {ideal / figures['sleep']:.1%}; speed-up vs inline {inline_sleep / figures['sleep']:.2f}x"
          f" (ideal {workers}x)")


def measure_ray(inline_sleep: float, args: argparse.Namespace) -> dict[str, float]:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, configure_logging=False, log_to_driver=False)
        with RayExecutor(RayExecutorConfig(torch_threads=1)) as executor:
            executor.wait_ready(300)
            assert executor.num_workers == 2 and len(set(executor.worker_nodes)) == 2, "one actor per node"
            return measure(executor, 2, inline_sleep, args)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
