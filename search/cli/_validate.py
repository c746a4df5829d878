"""``autodisco validate``: the meta-validation funnel over a run's best candidates (``search.funnel``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from search.cli._common import UsageError, add_executor_options, executor_factory, open_run, print_json
from search.cli._report import HASH_SHOWN, fitness_text, table
from search.executor import Executor
from search.funnel import STAGES, CandidateOutcome, Funnel, FunnelConfig, FunnelError, FunnelResult, Sweep

PRELOAD = ("torch", "optuna", "evaluators", "search.funnel_workers")


def register(commands: argparse._SubParsersAction) -> None:
    validate = commands.add_parser(
        "validate", help="meta-validate a run's best candidates: lr-tuned on tasks 10x, then 100x, against AdamW")
    validate.add_argument("run", help="run folder, e.g. runs/lion-hunt (with --db: the job's name)")
    validate.add_argument("-k", type=int, default=5, help="candidates taken from the proxy search (default 5)")
    validate.add_argument("--trials", type=int, default=8, help="Optuna lr trials per sweep (default 8)")
    validate.add_argument("--stages", default=",".join(STAGES),
                          help=f"comma-separated task scales, in order (default {','.join(STAGES)})")
    validate.add_argument("--seed", type=int, help="seed of every sweep (default: the job's seed)")
    validate.add_argument("--workers", default="auto", help="'auto' (one per GPU, else one per core) or a number")
    validate.add_argument("--timeout", type=float, help="seconds per sweep before it is killed (default: no limit)")
    add_executor_options(validate)
    validate.add_argument("--db", metavar="URL", help="database URL instead of <run>/results.db")
    validate.add_argument("--json", action="store_true", help="print the result as JSON")
    validate.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    validate.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    config = _config(args)
    executor_factory = _executor_factory(args)
    store, job = open_run(args.run, args.db)
    with store:
        try:
            funnel = Funnel(store, job, config, executor_factory, on_sweep=None if args.quiet else _say_sweep)
            result = funnel.run()
        except KeyboardInterrupt:
            print(f"autodisco: interrupted; finished sweeps are recorded. Continue with the same options: "
                  f"autodisco validate {args.run} ...", file=sys.stderr)
            return 130
    if args.json:
        print_json(result.to_json())
    else:
        print(report(result))
    return 0


def _config(args: argparse.Namespace) -> FunnelConfig:
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    try:
        return FunnelConfig(k=args.k, trials=args.trials, stages=stages, seed=args.seed)
    except FunnelError as error:
        raise UsageError(str(error)) from None


def _executor_factory(args: argparse.Namespace) -> Callable[[], Executor]:
    return executor_factory(args, preload=PRELOAD, recycle_every=None)


def _say_sweep(sweep: Sweep) -> None:
    where = f"validate {sweep.stage}: #{sweep.candidate_id} on {sweep.task}"
    if sweep.status == "ok":
        what = f"fitness {sweep.fitness:.6g} at lr {sweep.lr:.3g}"
    else:
        what = f"failed ({sweep.error})"
    print(f"{where}: {what}{' (recorded earlier)' if sweep.resumed else ''}", file=sys.stderr, flush=True)


def report(result: FunnelResult) -> str:
    """The funnel as a table: each candidate's proxy fitness, its ratio to AdamW on each stage, and its verdict."""
    headers = ["candidate", "hash", "proxy", *(f"{s} vs AdamW" for s in result.stages), "result"]
    rows = [_row(c, result.stages) for c in result.candidates]
    baseline = ", ".join(f"{stage}: " + ", ".join(f"{s.task} {fitness_text(s.fitness)} (lr {s.lr:.3g})"
                                                    for s in sweeps) for stage, sweeps in result.baseline.items())
    passed = sum(c.verdict == "passed" for c in result.candidates)
    return "\n".join([
        f"validation of {result.job!r}: {len(result.candidates)} candidates, {result.trials} lr trials per sweep, "
        f"seed {result.seed}",
        f"AdamW (#{result.baseline_id}) tuned fitness: {baseline or '-'}",
        table(headers, rows),
        f"{passed} of {len(result.candidates)} passed every stage (ratio = tuned fitness / AdamW's, must be > 1)",
    ])


def _row(candidate: CandidateOutcome, stages: tuple[str, ...]) -> list[Any]:
    by_stage = {s.stage: s for s in candidate.stages}
    cells = []
    for stage in stages:
        outcome = by_stage.get(stage)
        cells.append("-" if outcome is None else "failed" if outcome.ratio is None else f"{outcome.ratio:.4f}")
    last = candidate.stages[-1].stage if candidate.stages else "-"
    verdict = "passed" if candidate.verdict == "passed" else f"{candidate.verdict} at {last}"
    return [f"#{candidate.candidate_id}", candidate.hash[:HASH_SHOWN], fitness_text(candidate.proxy_fitness), *cells,
            verdict]
