"""The driver's own CPU cost per recorded result, before (a baseline commit) vs after (this tree), side by side.

    python bench/bench_driver.py [--population 1000] [--marks 1000 10000 100000] [--baseline-rev d8e02ea]
                                 [--baseline-marks 1000] [--workers 8] [--db sqlite|URL]

A search job (regularized evolution of optimizer programs, plain FEC cache, FCM on) runs with an executor that
answers every evaluation at once (fitness drawn from the program text), so what is measured is the driver alone:
strategy ask/tell, functional hashes, the store's transactions and the checkpoints. For each mark N it prints the
driver's CPU time (``time.process_time``) per recorded result over the results N - N/10 .. N, for the baseline source
tree (``git archive`` of ``--baseline-rev``, run in its own process) and for this tree, and the ratio. The baseline is
slow (tens of ms per result at P = 1000), so it runs only up to ``--baseline-marks``; marks it does not reach are
shown as "-".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(args: argparse.Namespace) -> None:
    """Runs in a subprocess whose ``sys.path`` starts with the source tree under test; prints JSON."""
    from concurrent.futures import Future

    import xxhash

    from programs import library
    from search.executor import EvalOutcome, EvalRequest, Executor
    from search.jobs import run_job
    from search.jobs._search import SearchConfig, SearchJob
    from search.kinds import OptimizerKind
    from search.store import Store

    marks = sorted(args.marks)
    boundaries = sorted({b for n in marks for b in (n - max(n // 10, 1), n)})
    seen: dict[int, float] = {}

    class InstantExecutor(Executor):
        """Answers at once; fitness in [0, 2) from the program text, so evolution has something to select."""

        def __init__(self) -> None:
            self.submitted = 0

        @property
        def num_workers(self) -> int:
            return args.workers

        def submit(self, request: EvalRequest) -> Future[EvalOutcome]:
            if not request.key.startswith("baseline"):
                self.submitted += 1
                if self.submitted - args.workers in boundaries:  # results recorded ~ submitted - in flight
                    seen[self.submitted - args.workers] = time.process_time()
            text = str(request.payload.get("program", ""))
            fitness = (xxhash.xxh64_intdigest(text.encode()) % 10_000) / 5_000
            future: Future[EvalOutcome] = Future()
            future.set_result(EvalOutcome(request.key, "ok", {"status": "ok", "fitness": fitness, "metrics": {},
                                                               "scores": {}}, None, "instant", 0.0, 1))
            return future

        def shutdown(self, wait: bool = True) -> None:
            pass

    total = marks[-1] + args.workers
    config = SearchConfig(tasks=("quadratic",), population=args.population, tournament=2, evaluations=total,
                          seed=0, warm_start=(library.get("adamw").to_text(),))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db) if args.db != "sqlite" else Store.for_run(Path(tmp) / "run")
        job = SearchJob.create(store, f"bench-{os.getpid()}", OptimizerKind(), config,
                               executor_factory=lambda **_: InstantExecutor(), show_progress=False)
        start = time.process_time()
        run_job(job)
        elapsed = time.process_time() - start
        store.close()
    per_result = {}
    for n in marks:
        low = n - max(n // 10, 1)
        if low in seen and n in seen:
            per_result[n] = (seen[n] - seen[low]) / (n - low)
    import search

    print(json.dumps({"source": str(Path(search.__file__).parent.parent), "per_result_s": per_result,
                      "total_cpu_s": elapsed}))


def measure(source: Path, marks: list[int], args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", "--population", str(args.population), "--workers",
               str(args.workers), "--db", args.db, "--marks", *map(str, marks)]
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=source)
    if done.returncode != 0:
        raise SystemExit(f"bench child failed in {source}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["source"]).resolve() == source.resolve(), f"measured {result['source']}, not {source}"
    return {int(k): v for k, v in result["per_result_s"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--marks", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--baseline-rev", default="d8e02ea", help="the commit measured as the baseline")
    parser.add_argument("--baseline-marks", type=int, nargs="*", default=[1000],
                        help="marks the baseline runs to (it is slow); none: skip the baseline")
    parser.add_argument("--workers", type=int, default=8, help="evaluations in flight (the executor's width)")
    parser.add_argument("--db", default="sqlite", help="'sqlite' (a temporary run folder) or a database URL")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"population {args.population}, {args.workers} in flight, db {args.db}; cores {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}")
    baseline: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_marks:
            tree = Path(tmp) / "baseline"
            tree.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline_rev], capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
            baseline = measure(tree, sorted(args.baseline_marks), args)
        after = measure(ROOT, sorted(args.marks), args)
    print(f"{'evaluations':>12} {'baseline ms/result':>19} {'this tree ms/result':>20} {'speed-up':>9}")
    for n in sorted(set(args.marks) | set(baseline)):
        before, now = baseline.get(n), after.get(n)
        ratio = f"{before / now:8.1f}x" if before and now else "        -"
        show = (lambda v: f"{v * 1e3:19.3f}" if v is not None else f"{'-':>19}")
        print(f"{n:>12} {show(before)} {show(now):>20} {ratio}")


if __name__ == "__main__":
    main()
