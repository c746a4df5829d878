"""``autodisco validate``: the meta-validation funnel over a run's best candidates, as a job (``search.jobs._validate``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cli._common import UsageError, add_executor_options, open_run, print_json
from search.cli._jobs import context_options, run_to_end
from search.cli._report import HASH_SHOWN, fitness_text, table

if TYPE_CHECKING:  # the funnel and the jobs import SQLAlchemy and the executors: only when a command runs
    from search.funnel import CandidateOutcome, FunnelConfig, FunnelResult

STAGES = ("10x", "100x")  # search.funnel.STAGES, written out for the parser (tests/test_layout.py checks it)


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
    from search.jobs import create_job, open_job
    from search.jobs._registry import exists_message
    from search.jobs._validate import ValidateConfig, ValidateJob, validation_name

    funnel = _config(args)
    store, record = open_run(args.run, args.db)
    with store:
        config = ValidateConfig(record.name, funnel.k, funnel.trials, funnel.stages, funnel.seed)
        options = context_options(args, Path(args.run) if args.db is None else None)
        existing = store.get_job(validation_name(record.name))
        if existing is None:
            job = create_job(store, validation_name(record.name), ValidateJob, config, **options)
        else:
            job = open_job(store, existing, **options)
            if job.config != config:
                raise UsageError(f"{args.run} was validated with other settings ({_settings(job.config)}); sweeps "
                                 "are recorded once per candidate, stage and task: validate with those settings")
            if existing.status != "finished":
                raise UsageError(exists_message(existing, args.run))
            result = job.read_back()  # finished: show it again
            print_json(result.to_json()) if args.json else print(report(result))
            return 0
        options["say"](job.describe())
        return run_to_end(job, args.run, report=(lambda result: print_json(result.to_json())) if args.json else None)


def _settings(config: Any) -> str:
    seed = "" if config.seed is None else f" --seed {config.seed}"
    return f"-k {config.k} --trials {config.trials} --stages {','.join(config.stages)}{seed}"


def _config(args: argparse.Namespace) -> FunnelConfig:
    from search.funnel import FunnelConfig, FunnelError

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    try:
        return FunnelConfig(k=args.k, trials=args.trials, stages=stages, seed=args.seed)
    except FunnelError as error:
        raise UsageError(str(error)) from None


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
