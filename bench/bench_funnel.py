"""The meta-validation funnel: what it costs over plain lr sweeps, what a resume costs, what workers buy, and its table.

A run folder is made with the library optimizers as candidates (proxy fitness = their fitness on ``--task`` at the
task's default lr, normalised by AdamW's), then, side by side:
  * baseline: the very sweeps the funnel ran, as direct ``evaluators.tune_lr`` calls in this process with Optuna's
    in-memory storage and nothing recorded;
  * funnel, inline: ``Funnel`` with ``InlineExecutor`` (same process; studies in the run's SQLite, sweeps recorded);
  * funnel, resumed: the same command again, everything recorded (reads only);
  * funnel, N workers: a fresh copy of the run with ``LocalExecutor(workers=N)``, worker start-up included.
Then the funnel's table (the output of ``autodisco validate``).

Run: ``python bench/bench_funnel.py [--task quadratic] [--stages 10x,100x] [--trials 4] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import optuna

from evaluators import evaluate_program, normalized_fitness, tune_lr
from programs import library
from search.cli._validate import report
from search.executor import InlineExecutor, LocalExecutor, LocalExecutorConfig
from search.funnel import Funnel, FunnelConfig, FunnelResult
from search.jobs._search import SearchConfig
from search.kinds import OptimizerKind
from search.store import Store

CANDIDATES = ("adamw", "adam", "lion", "momentum", "nesterov", "rmsprop", "signsgd", "sgd", "adagrad")


def make_run(folder: Path, task: str) -> None:
    kind = OptimizerKind()
    baseline = {task: float(evaluate_program(library.get("adamw"), task, seed=0)["fitness"])}
    with Store.for_run(folder) as store:
        config = SearchConfig(tasks=(task,), warm_start=(library.get("adamw").to_text(),))
        job = store.create_job(folder.name, kind="optimizer", config=config.to_json(), seed=0)
        for birth, name in enumerate(CANDIDATES):
            program = library.get(name)
            try:
                score: float | None = float(evaluate_program(program, task, seed=0)["fitness"])
            except Exception:  # noqa: BLE001 - a diverging optimizer simply ranks last
                score = None
            candidate = store.add_candidate(job.id, kind="optimizer", text=program.to_text(),
                                            hash=kind.functional_hash(program), birth=birth, mutation=name)
            evaluation = store.add_evaluation(job.id, candidate, key=f"c{candidate}", task=task, seed=0)
            store.finish_evaluation(evaluation, status="ok", fitness=normalized_fitness({task: score}, baseline))


def run_funnel(folder: Path, config: FunnelConfig, factory) -> tuple[FunnelResult, float]:
    with Store.for_run(folder, create=False) as store:
        started = time.perf_counter()
        result = Funnel(store, store.get_job(folder.name), config, factory).run()
        return result, time.perf_counter() - started


def candidate_names(folder: Path) -> dict[int, str]:
    with Store.for_run(folder, create=False) as store:
        return {c.id: c.mutation or "?" for c in store.list_candidates(store.get_job(folder.name).id)}


def direct_sweeps(folder: Path, result: FunnelResult, trials: int) -> float:
    """The funnel's sweeps again as plain in-process ``tune_lr`` calls (in-memory Optuna storage)."""
    with Store.for_run(folder, create=False) as store:
        texts = {c.id: c.text for c in store.list_candidates(store.get_job(folder.name).id)}
    sweeps = [s for c in result.candidates for stage in c.stages for s in stage.sweeps]
    sweeps += [s for stage in result.baseline.values() for s in stage if s.candidate_id not in
               {c.candidate_id for c in result.candidates}]
    started = time.perf_counter()
    for sweep in sweeps:
        try:
            tune_lr(texts[sweep.candidate_id], sweep.task, trials, result.seed)
        except Exception:  # noqa: BLE001 - failing sweeps cost their time too
            pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="quadratic")
    parser.add_argument("--stages", default="10x,100x")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("-k", type=int, default=len(CANDIDATES))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config = FunnelConfig(k=args.k, trials=args.trials, stages=tuple(args.stages.split(",")))
    root = Path(tempfile.mkdtemp(prefix="bench_funnel_"))
    try:
        folder, copy = root / "inline" / "bench", root / "pool" / "bench"  # a run's job is named after its folder
        make_run(folder, args.task)
        shutil.copytree(folder, copy)
        result, inline_s = run_funnel(folder, config, InlineExecutor)
        names = candidate_names(folder)
        _, resumed_s = run_funnel(folder, config, InlineExecutor)
        direct_s = direct_sweeps(folder, result, args.trials)
        pool = LocalExecutorConfig(workers=args.workers, preload=("torch", "optuna", "evaluators"))
        _, pool_s = run_funnel(copy, config, lambda: LocalExecutor(pool))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = sum(len(s.sweeps) for c in result.candidates for s in c.stages)
    print(f"funnel on {args.task} stages {args.stages}, {args.trials} trials per sweep, {len(result.candidates)} "
          f"candidates ({n} candidate sweeps + AdamW's)")
    print(f"{'':<44} {'seconds':>9} {'baseline':>9} {'ratio':>7}")
    for name, seconds in [("funnel, inline (RDB studies + records)", inline_s),
                          ("funnel, resumed (all recorded)", resumed_s)]:
        print(f"{name:<44} {seconds:>9.2f} {direct_s:>9.2f} {seconds / direct_s:>7.3f}")
    print(f"{f'funnel, {args.workers} workers (vs inline)':<44} {pool_s:>9.2f} {inline_s:>9.2f} {pool_s / inline_s:>7.3f}")
    print()
    print(report(result))
    print("candidates: " + ", ".join(f"#{c.candidate_id} {names[c.candidate_id]}" for c in result.candidates))


if __name__ == "__main__":
    main()
