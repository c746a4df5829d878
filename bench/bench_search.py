"""Search-level figures, side by side in one run: FEC on vs off, rediscovery from SGD, dispatch overhead.

    python bench/bench_search.py [--task mnist1d-mlp] [--evaluations 150] [--workers 2] [--warm-start sgd]

Runs the same search (same seed, same budget, warm-started from a weak optimizer) twice — with the plain FEC cache and
with the cache off — and prints for each: evaluations and wall time until the best fitness reaches AdamW's (1.0, the
"rediscovery" point), the best fitness reached, the cache hit rate, failures, and worker utilisation (time spent inside
evaluations / (wall time × workers)); then the ratios cache-on / cache-off.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from programs import library
from search.executor import LocalExecutor, LocalExecutorConfig
from search.jobs import run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import OptimizerKind
from search.store import Store


def run_once(root: Path, name: str, args: argparse.Namespace, cache: str) -> dict[str, float | None]:
    config = SearchConfig(tasks=(args.task,), population=args.population, evaluations=args.evaluations, seed=args.seed,
                       warm_start=(library.get(args.warm_start).to_text(),), cache=cache)
    executor = LocalExecutorConfig(workers=args.workers, timeout_s=300, preload=("torch", "search.kinds.workers", "evaluators"))
    store = Store.for_run(root / name)
    job = SearchJob.create(store, name, OptimizerKind(), config, executor_factory=lambda **_: LocalExecutor(executor), show_progress=False)
    started = time.perf_counter()
    summary = run_job(job)
    wall = time.perf_counter() - started
    evaluations = store.list_evaluations(job.record.id)
    finished = sorted((e for e in evaluations if e.finished_order), key=lambda e: e.finished_order)
    runs, reached_runs, reached_time = 0, None, None
    for e in finished:
        runs += e.status in ("ok", "failed")
        if reached_runs is None and e.fitness is not None and e.fitness >= 1.0:
            reached_runs, reached_time = runs, (e.finished - job.record.created).total_seconds()
    busy = sum(e.wall_time or 0.0 for e in evaluations if e.status in ("ok", "failed"))
    return {
        "wall_s": wall, "evaluations": summary.evaluations, "candidates": summary.candidates,
        "hit_rate": summary.cache_hits / max(summary.candidates, 1), "failed": summary.failed,
        "best": summary.best_fitness, "evals_to_adamw": reached_runs, "seconds_to_adamw": reached_time,
        "utilisation": busy / (wall * args.workers), "per_eval_s": busy / max(summary.evaluations, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d-mlp")
    parser.add_argument("--evaluations", type=int, default=150)
    parser.add_argument("--population", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warm-start", default="sgd")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {cache: run_once(Path(tmp), cache, args, cache) for cache in ("plain", "off")}
    keys = ["wall_s", "evaluations", "candidates", "hit_rate", "failed", "best", "evals_to_adamw",
            "seconds_to_adamw", "utilisation", "per_eval_s"]
    print(f"task {args.task}, warm start {args.warm_start}, {args.evaluations} evaluations, seed {args.seed}, "
          f"{args.workers} workers")
    print(f"{'':18}{'FEC plain':>14}{'FEC off':>14}{'ratio':>10}")
    for key in keys:
        on, off = results["plain"][key], results["off"][key]
        ratio = f"{on / off:.2f}" if isinstance(on, (int, float)) and isinstance(off, (int, float)) and off else "-"
        print(f"{key:18}{_fmt(on):>14}{_fmt(off):>14}{ratio:>10}")


def _fmt(value: float | None) -> str:
    if value is None:
        return "not reached"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
