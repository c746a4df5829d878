"""``autodisco search optimizer`` and ``autodisco resume``: start and continue search jobs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cli._common import UsageError, add_db_wait_option, add_executor_options, open_run
from search.cli._config import RECORD_KEY, add_config_option
from search.cli._jobs import context_options, refuse_finished, run_to_end, say

if TYPE_CHECKING:  # the store, jobs and kinds import SQLAlchemy, numpy and the strategies: only when a command runs
    from search.jobs._search import SearchConfig
    from search.kinds import CandidateKind
    from search.store import Store


def register(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser("search", help="start a search job")
    kinds = search.add_subparsers(dest="kind", required=True, metavar="KIND")
    optimizer = kinds.add_parser("optimizer", help="discover optimizers by evolutionary program search")
    add_config_option(optimizer)
    optimizer.add_argument("--run", help="run folder, e.g. runs/lion-hunt (its name names the job); required, here "
                                         "or in --config")
    optimizer.add_argument("--task", action="append", dest="tasks", metavar="TASK",
                           help="proxy task (repeat for several; default mnist1d-mlp), or your own as MODULE:ATTRIBUTE "
                                "(e.g. my_tasks:regression, from the current directory) or an installed plug-in")
    optimizer.add_argument("--strategy", choices=("evolution", "random", "nsga2"), default="evolution",
                           help="regularized evolution (default), random search, or NSGA-II over (fitness, optimizer "
                                "state buffers): the Pareto front of quality and memory")
    optimizer.add_argument("--population", type=int, default=100, help="population size P (Lion: 1000)")
    optimizer.add_argument("--tournament", type=int, default=2, help="tournament size T (Lion: 2)")
    optimizer.add_argument("--islands", type=int, default=1, metavar="I",
                           help="evolution: split the population into I islands that evolve apart (default 1)")
    optimizer.add_argument("--migration-interval", type=int, metavar="K",
                           help="with --islands: every K results each island's best joins the next island")
    budget = optimizer.add_mutually_exclusive_group()
    budget.add_argument("--evaluations", type=int, help="evaluations to run, cache hits not counted (default 200)")
    budget.add_argument("--hours", type=float, help="wall-clock budget in hours")
    optimizer.add_argument("--warm-start", action="append", dest="warm_starts", metavar="NAME|FILE",
                           help="a library optimizer (adamw, lion, sgd, ...) or a program file; repeat for several "
                                "(default adamw)")
    optimizer.add_argument("--seed", type=int, default=0)
    optimizer.add_argument("--cache", choices=("plain", "aggregating", "forgetful", "off"), default="plain",
                           help="FEC policy (default plain: deterministic tasks make it lossless)")
    optimizer.add_argument("--no-fcm", action="store_true", help="do not re-mutate children equivalent to their parent")
    optimizer.add_argument("--plateau-restart", type=int, metavar="K",
                           help="restart from the best after K results without a new best")
    optimizer.add_argument("--lr", type=float, help="base learning rate of the tasks (default: each task's own)")
    optimizer.add_argument("--lr-grid", metavar="M,M,...",
                           help="score each task at its best lr of base lr x these multipliers, e.g. 0.25,1,4 (costs "
                                "one training per multiplier; default: the base lr alone)")
    optimizer.add_argument("--allow-lr-free", action="store_true",
                           help="do not reject programs whose update does not scale with lr (programs.lr_scaling)")
    optimizer.add_argument("--aggregate", choices=("geomean", "mean"), default="geomean",
                           help="how per-task ratios to AdamW combine: geomean (default: clipped to [1/4, 2], a "
                                "failed task counts 1/4) or mean (the plain mean of earlier runs)")
    optimizer.add_argument("--hurdle", type=float, metavar="R",
                           help="cascade the tasks (cheapest first): train the next --task only while the aggregate "
                                "ratio to AdamW over the tasks so far is at least R, e.g. 0.9 (default: every task)")
    optimizer.add_argument("--batch", default="1", metavar="K|auto",
                           help="evaluations a worker trains at once (population-batched evaluation); 'auto': as many "
                                "as fit in memory, at most the population per worker (default 1)")
    _add_execution_options(optimizer)
    optimizer.set_defaults(handler=_search_optimizer)
    from search.cli import _architecture  # it reuses this module's options and _run

    _architecture.register(kinds)

    resume = commands.add_parser("resume", help="continue a stopped or killed job where it left off")
    resume.add_argument("run", help="the run folder, e.g. runs/lion-hunt")
    resume.add_argument("--evaluations", type=int, metavar="N",
                        help="a search's new budget: continue (even a finished search) until N evaluations")
    _add_execution_options(resume)
    resume.set_defaults(handler=_resume)


def _add_execution_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default="auto", help="'auto' (one per GPU, else one per core) or a number")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per evaluation before it is killed")
    parser.add_argument("--threads", default="auto",
                        help="torch threads per worker: 'auto' (cores // workers) or a number")
    add_executor_options(parser)
    parser.add_argument("--db", help="database URL instead of <run>/results.db (e.g. postgresql://...)")
    add_db_wait_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _search_optimizer(args: argparse.Namespace) -> int:
    from programs import ProgramError

    require_run(args)
    tasks = tuple(args.tasks or ["mnist1d-mlp"])
    _check_tasks(tasks, args)
    evaluations = args.evaluations if args.evaluations is not None or args.hours is not None else 200
    warm_starts = []
    for name in args.warm_starts or ["adamw"]:
        try:
            warm_starts.append(_warm_start_text(name))
        except ProgramError as error:
            raise UsageError(f"--warm-start {name}: {error}") from None
    from search.jobs._search import SearchConfig

    kind = _optimizer_kind(args, warm_starts)
    config = SearchConfig(tasks=tasks, strategy=args.strategy, population=args.population, tournament=args.tournament,
                          islands=args.islands, migration_interval=args.migration_interval,
                          evaluations=evaluations, hours=args.hours, seed=args.seed, warm_start=tuple(warm_starts),
                          fcm=not args.no_fcm, cache=args.cache, plateau_restart=args.plateau_restart, lr=args.lr,
                          batch=_batch(args.batch), kind_options=kind.options())
    return start_search(args, config, kind)


def _optimizer_kind(args: argparse.Namespace, warm_starts: list[str]) -> CandidateKind[Any]:
    """The kind from ``--no-fcm``, ``--lr-grid``, ``--allow-lr-free``, ``--aggregate``, ``--hurdle``; a warm start
    whose update does not scale with lr is refused unless lr-free programs are allowed (its children would not
    either)."""
    from evaluators.fitness import check_lr_grid
    from programs import lr_scaling, parse
    from search.kinds import OptimizerKind

    try:
        grid = (1.0,) if args.lr_grid is None else check_lr_grid([float(x) for x in args.lr_grid.split(",")])
    except ValueError as error:
        raise UsageError(f"--lr-grid {args.lr_grid}: {error} (give positive multipliers, e.g. 0.25,1,4)") from None
    if args.hurdle is not None and len(args.tasks or ()) < 2:
        raise UsageError(f"--hurdle {args.hurdle:g} cascades several tasks; give two or more --task (cheapest first)")
    try:
        kind = OptimizerKind(fcm=not args.no_fcm, lr_free=args.allow_lr_free, lr_grid=grid, hurdle=args.hurdle,
                             aggregate=args.aggregate)
    except ValueError as error:
        raise UsageError(f"--hurdle {args.hurdle}: {error}") from None
    for name, warm_start in zip(args.warm_starts or ["adamw"], warm_starts):
        verdict = lr_scaling(parse(warm_start))
        if not (verdict.ok or args.allow_lr_free):
            raise UsageError(f"--warm-start {name}: {verdict.reason}; pass --allow-lr-free to search from it")
    return kind


def require_run(args: argparse.Namespace) -> None:
    if not args.run:
        raise UsageError("give the run folder: --run runs/NAME (or run = \"runs/NAME\" in --config)")


def _check_tasks(tasks: tuple[str, ...], args: argparse.Namespace) -> None:
    """Every task known; a plug-in resolved and built once here (data, model, one minibatch: ``PluginError`` in one
    line before anything is recorded). With ``--batch``, say which plug-in models train one program at a time."""
    from evaluators import TaskError
    from evaluators.plugins import batch_problem, check

    for task in tasks:
        try:
            spec = check(task, args.seed)
        except TaskError as error:
            raise UsageError(str(error)) from None
        problem = batch_problem(spec) if args.batch != "1" else None
        if problem is not None and not args.quiet:
            say(f"note: --batch trains task {task} one program at a time: {problem}")


def _batch(value: str) -> int | str:
    from search.jobs._batching import check_batch

    try:
        return check_batch(value if value == "auto" else int(value))
    except ValueError:
        raise UsageError(f"--batch must be a positive integer or 'auto', got {value!r}") from None


def start_search(args: argparse.Namespace, config: SearchConfig, kind: CandidateKind[Any]) -> int:
    """Create the search job of ``--run`` (or in ``--db``) and run it to its end."""
    from search.jobs._search import SearchJob

    require_run(args)
    run = Path(args.run)
    options = context_options(args, run)
    with _open_store(run, args.db) as store:
        with store.transaction():  # the job and the --config file it came from, recorded together
            job = SearchJob.create(store, run.name, kind, config, **options)
            if getattr(args, RECORD_KEY, None) is not None:
                record = job.context.record
                store.set_job_config(record.id, {**record.config, RECORD_KEY: getattr(args, RECORD_KEY)})
        options["say"](job.describe())
        return run_to_end(job, args.run)


def _resume(args: argparse.Namespace) -> int:
    from search.jobs import open_job

    store, record = open_run(args.run, args.db)
    with store:
        _check_plugins(record)  # before anything changes: a plug-in that no longer imports leaves the run as it is
        if args.evaluations is not None:
            record = _extend(store, record, args.evaluations)
        else:
            record = _unfinished(store, record)
        refuse_finished(record, args.run)
        run = Path(args.run) if args.db is None else None
        job = open_job(store, record, **context_options(args, run))
        if not args.quiet:
            say("resuming " + job.describe())
        return run_to_end(job, args.run)


def _check_plugins(record: Any) -> None:
    """An optimizer search's plug-in tasks (``MODULE:ATTRIBUTE``) resolve and build as they did (``UsageError``
    otherwise). Other jobs name their tasks in their own ways (``darts:digits``)."""
    config = record.config if isinstance(record.config, dict) else {}
    if record.kind != "optimizer" or config.get("method", "search") != "search":
        return
    tasks = config.get("tasks")
    names = [t for t in tasks or () if isinstance(t, str) and ":" in t]
    if not names:
        return
    from evaluators import TaskError
    from evaluators.plugins import check

    for name in names:
        try:
            check(name)
        except TaskError as error:
            raise UsageError(f"{error} (resuming {record.name!r}, nothing changed)") from None


def _extend(store: Store, record: Any, evaluations: int) -> Any:
    """``resume --evaluations N``: the search job with its budget set to N evaluations (marked interrupted, so that
    it runs again); ``UsageError`` unless it is a search with an evaluation budget below N and no driver is running."""
    config = record.config if isinstance(record.config, dict) else {}
    if config.get("method", "search") != "search":
        raise UsageError(f"--evaluations extends a search's budget; {record.name!r} is a {config.get('method')} job")
    if config.get("evaluations") is None:
        raise UsageError(f"{record.name!r} has a time budget (--hours), not an evaluation budget")
    if record.status == "running":
        raise UsageError(f"{record.name!r} is running; stop it first, then extend its budget")
    done = store.counts(record.id, task="+".join(config.get("tasks") or [])).evaluations
    if evaluations <= done:
        raise UsageError(f"--evaluations {evaluations}: {record.name!r} has run {done} evaluations already; give more")
    store.set_job_config(record.id, {**config, "evaluations": evaluations})
    if record.status == "finished":
        store.set_job_status(record.id, "interrupted")
    return store.get_job(record.name)


def _unfinished(store: Store, record: Any) -> Any:
    """The job of the run to continue: its own job, or once that finished, its unfinished validation."""
    from search.jobs._validate import validation_name

    if record.status == "finished":
        validation = store.get_job(validation_name(record.name))
        if validation is not None and validation.status != "finished":
            return validation
    return record


def _warm_start_text(value: str) -> str:
    from programs import library, parse

    if value in library.names():
        return library.get(value).to_text()
    path = Path(value)
    if not path.is_file():
        raise UsageError(f"--warm-start {value!r} is neither a library optimizer ({', '.join(library.names())}) "
                         "nor a program file")
    return parse(path.read_text(encoding="utf-8", errors="replace")).to_text()


def _open_store(run: Path, db: str | None) -> Store:
    from search.store import Store

    if db is not None:
        return Store(db)
    if run.exists() and not run.is_dir():
        raise UsageError(f"--run {str(run)!r} is a file; give a folder")
    return Store.for_run(run)
