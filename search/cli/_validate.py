"""``autodisco validate``: the meta-validation funnel over a run's best candidates, as a job (``search.jobs._validate``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cli._common import UsageError, add_db_wait_option, add_executor_options, open_run, print_json
from search.cli._jobs import context_options, run_to_end
from search.cli._report import HASH_SHOWN, fitness_text, table

if TYPE_CHECKING:  # the funnel and the jobs import SQLAlchemy and the executors: only when a command runs
    from search.funnel import CandidateOutcome, FunnelConfig, FunnelResult

STAGES = ("10x", "100x")  # search.funnel.STAGES, written out for the parser (tests/test_layout.py checks it)
UNSEEN = "unseen"  # search.funnel.UNSEEN
DEFAULT_STAGES = (*STAGES, UNSEEN)  # search.funnel.DEFAULT_STAGES


def register(commands: argparse._SubParsersAction) -> None:
    validate = commands.add_parser(
        "validate", help="meta-validate a run's best candidates: lr-tuned on tasks 10x, then 100x, then on tasks the "
                         "search never saw, against AdamW")
    validate.add_argument("run", help="run folder, e.g. runs/lion-hunt (with --db: the job's name)")
    validate.add_argument("-k", type=int, default=5, help="candidates taken from the proxy search (default 5)")
    validate.add_argument("--trials", type=int, default=8, help="Optuna lr trials per sweep (default 8)")
    validate.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                          help=f"comma-separated stages, in order: task scales, then {UNSEEN} (tasks the search never "
                               f"used) last (default {','.join(DEFAULT_STAGES)})")
    validate.add_argument("--unseen", metavar="T,T,...",
                          help="tasks of the unseen stage (default: every built-in task the search did not use)")
    validate.add_argument("--seeds", type=int, default=3, help="seeds per unseen task (default 3)")
    validate.add_argument("--seed", type=int, help="seed of every sweep (default: the job's seed)")
    validate.add_argument("--workers", default="auto", help="'auto' (one per GPU, else one per core) or a number")
    validate.add_argument("--timeout", type=float, help="seconds per sweep before it is killed (default: no limit)")
    add_executor_options(validate)
    validate.add_argument("--db", metavar="URL", help="database URL instead of <run>/results.db")
    add_db_wait_option(validate)
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
        unseen = funnel.unseen
        if UNSEEN in funnel.stages:  # stored resolved: the job validates on exactly these, even if tasks are added
            from search.funnel import unseen_tasks

            tasks = record.config.get("tasks") if isinstance(record.config, dict) else None
            unseen = unseen_tasks(tasks or (), funnel.unseen)
        config = ValidateConfig(record.name, funnel.k, funnel.trials, funnel.stages, funnel.seed, unseen,
                                funnel.seeds)
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
    unseen = ""
    if UNSEEN in config.stages:
        unseen = f" --unseen {','.join(config.unseen or ()) or '(none)'} --seeds {config.seeds}"
    return f"-k {config.k} --trials {config.trials} --stages {','.join(config.stages)}{unseen}{seed}"


def _config(args: argparse.Namespace) -> FunnelConfig:
    from search.funnel import FunnelConfig, FunnelError

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unseen = None if args.unseen is None else tuple(t.strip() for t in args.unseen.split(",") if t.strip())
    if unseen is not None and UNSEEN not in stages:
        raise UsageError(f"--unseen needs the {UNSEEN} stage in --stages")
    try:
        return FunnelConfig(k=args.k, trials=args.trials, stages=stages, seed=args.seed, unseen=unseen,
                            seeds=args.seeds)
    except FunnelError as error:
        raise UsageError(str(error)) from None


def report(result: FunnelResult) -> str:
    """The funnel as a table: each candidate's proxy fitness; on each stage its ratio to AdamW on every task of the
    stage and their aggregate (on the unseen stage: each task's mean over the seeds with its 95 % interval, and the
    wins); its verdict."""
    columns = _columns(result)
    headers = ["candidate", "hash", "proxy", *(title for title, _, _ in columns), "result"]
    rows = [_row(c, columns) for c in result.candidates]
    baseline = ", ".join(f"{stage}: " + ", ".join(_baseline_text(s, stage) for s in sweeps)
                         for stage, sweeps in result.baseline.items())
    passed = sum(c.verdict == "passed" for c in result.candidates)
    lines = [
        f"validation of {result.job!r}: {len(result.candidates)} candidates, {result.trials} lr trials per sweep, "
        f"seed {result.seed}",
        f"AdamW (#{result.baseline_id}) tuned fitness: {baseline or '-'}",
        table(headers, rows),
        f"{passed} of {len(result.candidates)} passed every stage (ratio = tuned fitness / AdamW's; on a scale "
        "stage the aggregate of its tasks' ratios must be > 1)",
    ]
    if UNSEEN in result.stages:
        n = len(result.unseen)
        lines.append(f"unseen tasks (never used by the search): {', '.join(result.unseen)}; {result.seeds} seeds each, "
                     f"ratio = mean over seeds of the ratio to AdamW at the same seed, [95 % interval: "
                     f"{result.interval}]; a win = mean ratio > 1; passing needs wins on at least half of them")
        for candidate in result.candidates:
            stage = next((s for s in candidate.stages if s.stage == UNSEEN), None)
            if stage is not None:
                lines.append(f"#{candidate.candidate_id} wins {stage.wins} of {n} unseen tasks")
    return "\n".join(lines)


def _columns(result: FunnelResult) -> list[tuple[str, str, str | None]]:
    """(header, stage, task or None for the stage's aggregate) of every stage column."""
    from search.funnel import scaled_tasks

    columns: list[tuple[str, str, str | None]] = []
    for stage in result.stages:
        tasks = list(result.unseen) if stage == UNSEEN else list(scaled_tasks(result.tasks, stage))
        columns += [(task if stage != UNSEEN else f"{task} (unseen)", stage, task) for task in tasks]
        columns.append((f"{stage} wins" if stage == UNSEEN else f"{stage} vs AdamW", stage, None))
    return columns


def _baseline_text(sweep: Any, stage: str) -> str:
    lr = "-" if sweep.lr is None else f"{sweep.lr:.3g}"
    seed = f" seed {sweep.seed}" if stage == UNSEEN else ""
    return f"{sweep.task}{seed} {fitness_text(sweep.fitness)} (lr {lr})"


def _ratio_text(ratio: float | None, low: float | None = None, high: float | None = None) -> str:
    if ratio is None:
        return "failed"
    return f"{ratio:.4f}" if low is None or high is None else f"{ratio:.3f} [{low:.3f}, {high:.3f}]"


def _row(candidate: CandidateOutcome, columns: list[tuple[str, str, str | None]]) -> list[Any]:
    by_stage = {s.stage: s for s in candidate.stages}
    cells = []
    for _, stage, task in columns:
        outcome = by_stage.get(stage)
        if outcome is None:
            cells.append("-")
        elif task is None:
            aggregate = "failed" if outcome.ratio is None else f"{outcome.ratio:.4f}"
            cells.append(f"{outcome.wins} of {len(outcome.tasks)}" if stage == UNSEEN else aggregate)
        else:
            found = next((t for t in outcome.tasks if t.task == task), None)
            cells.append("-" if found is None else _ratio_text(found.ratio, found.low, found.high))
    last = candidate.stages[-1].stage if candidate.stages else "-"
    verdict = "passed" if candidate.verdict == "passed" else f"{candidate.verdict} at {last}"
    return [f"#{candidate.candidate_id}", candidate.hash[:HASH_SHOWN], fitness_text(candidate.proxy_fitness), *cells,
            verdict]
