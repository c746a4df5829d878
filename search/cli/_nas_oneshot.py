"""``autodisco nas oneshot | score | groundtruth``: the one-shot NB201 supernet (uniform or PA&DA sampling), scoring
architectures with its inherited weights, and building a ground-truth table with the engine's workers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from search.cli._common import (
    UsageError, add_executor_options, add_threads_option, check_threads, new_run, print_json,
)
from search.cli._jobs import context_options, run_to_end


def register(commands: argparse._SubParsersAction) -> None:
    _register_oneshot(commands)
    _register_score(commands)
    _register_groundtruth(commands)


# The choices of nas.oneshot_train.DATASETS and nas.pada.SAMPLERS, written out so that building the parser imports no
# torch (``autodisco --help`` answers at once); tests/test_layout.py checks they stay equal.
DATASETS = ("mnist1d", "digits")
SAMPLERS = ("uniform", "fair", "pada")


def _register_oneshot(commands: argparse._SubParsersAction) -> None:
    oneshot = commands.add_parser("oneshot", help="train a one-shot NB201 supernet (uniform or PA&DA sampling) and "
                                                  "rank the ground-truth table's architectures with it (Kendall tau)")
    oneshot.add_argument("--run", required=True, help="run folder, e.g. runs/pada-s0 (its name names the job; "
                                                      "'autodisco resume RUN' continues it)")
    oneshot.add_argument("--sampler", choices=SAMPLERS, default="fair", help="path/data sampling (default fair)")
    oneshot.add_argument("--dataset", default="mnist1d", help=f"one of {', '.join(DATASETS)} (default mnist1d)")
    oneshot.add_argument("--epochs", type=int, default=10, help="supernet training epochs (default 10)")
    oneshot.add_argument("--seed", type=int, default=0, help="initial weights and every sampler draw (default 0)")
    oneshot.add_argument("--table", help="ground-truth table JSON (default: the shipped table of the dataset; "
                                         "'none': train without ranking)")
    oneshot.add_argument("--C", type=int, help="channels of the first stage (default: the table's, else 8)")
    oneshot.add_argument("--batch-size", type=int, default=64, help="training batch size (default 64)")
    oneshot.add_argument("--lr", type=float, default=0.05, help="SGD learning rate, cosine-annealed (default 0.05)")
    oneshot.add_argument("--limit", type=int, help="use only the first N training/validation examples (quick trials)")
    oneshot.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_threads_option(oneshot)
    oneshot.add_argument("--json", action="store_true", help="print the result as JSON")
    oneshot.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    oneshot.set_defaults(handler=_oneshot)


def _register_score(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser("score", help="score NB201 architectures with a trained supernet's inherited weights")
    score.add_argument("run", help="run folder of 'autodisco nas oneshot' (holding supernet.pt)")
    score.add_argument("archs", metavar="ARCHS.txt", help="NB201 cell strings, one per line ('#' comments allowed)")
    score.add_argument("-o", "--output", required=True, help="JSON file to write: {arch string: accuracy}")
    score.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_threads_option(score)
    score.set_defaults(handler=_score)


def _register_groundtruth(commands: argparse._SubParsersAction) -> None:
    gt = commands.add_parser("groundtruth", help="train sampled NB201 architectures from scratch on the workers and "
                                                 "write their test accuracies as a ground-truth table")
    gt.add_argument("--dataset", default="mnist1d", help="mnist1d or digits (default mnist1d)")
    gt.add_argument("--archs", type=int, required=True, help="how many architectures of the 15,625 to train")
    gt.add_argument("--seed", type=int, default=0, help="which architectures are sampled; training seed (default 0)")
    gt.add_argument("--epochs", type=int, default=4, help="training epochs per architecture (default 4)")
    gt.add_argument("--C", type=int, default=8, help="channels of the first stage (default 8)")
    gt.add_argument("-o", "--output", required=True, help="table JSON to write (rewritten after every result)")
    gt.add_argument("--run", help="run folder recording the job (default runs/groundtruth-<dataset>-<archs>-s<seed>); "
                                  "'autodisco resume RUN' continues it")
    gt.add_argument("--limit", type=int, help="train and test on only the first N examples of each split (quick trials)")
    gt.add_argument("--workers", default="auto", help="'auto' (one per GPU, else one per core) or a number")
    gt.add_argument("--timeout", type=float, help="seconds per architecture before it is killed (default none)")
    add_executor_options(gt)
    gt.add_argument("--quiet", action="store_true", help="no progress bar")
    gt.set_defaults(handler=_groundtruth)


def _set_threads(threads: int) -> None:
    import torch

    check_threads(threads)
    torch.set_num_threads(threads)


# -- oneshot ----------------------------------------------------------------------------------------------------------

def _oneshot(args: argparse.Namespace) -> int:
    from search.jobs import create_job
    from search.jobs._oneshot import OneShotJob, open_table
    from search.store import Store

    config = _oneshot_config(args)
    _set_threads(args.threads)
    open_table(config)  # a bad or foreign table fails before anything is written
    run = new_run(args.run)
    options = context_options(args, run)
    with Store.for_run(run) as store:
        job = create_job(store, run.name, OneShotJob, config, **options)
        options["say"](job.describe() + f"; results in {run}")
        return run_to_end(job, args.run, report=_json_summary(run, config) if args.json else None)


def _json_summary(run: Path, config: Any) -> Any:
    def report(result: Any) -> None:
        history = result.history
        print_json({"run": str(run), "sampler": config.train.sampler, "epochs": config.train.epochs,
                    "seed": config.train.seed, "table": config.table,
                    "seconds_per_epoch": sum(r.seconds for r in history) / max(len(history), 1),
                    "ranking": result.ranking.to_dict() if result.ranking else None})

    return report


def _oneshot_config(args: argparse.Namespace) -> Any:
    from nas.groundtruth import default_table_path, load_table
    from nas.nb201_network import NB201NetConfig
    from search.jobs._oneshot import OneShotJobConfig
    from nas.oneshot_train import OneShotConfig

    if args.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if args.limit is not None and args.limit < 2:
        raise UsageError(f"--limit must be at least 2, got {args.limit}")
    table = _table_path(args.table, args.dataset, default_table_path)
    budget = load_table(table).metadata.get("budget", {}) if table else {}
    net = NB201NetConfig(C=args.C or budget.get("C", 8), cells_per_stage=budget.get("cells_per_stage", 1),
                         reduction=budget.get("reduction", "pool"))
    train = OneShotConfig(net=net, sampler=args.sampler, epochs=args.epochs, batch_size=args.batch_size,
                          lr=args.lr, seed=args.seed)
    return OneShotJobConfig(args.dataset, train, table, limit=args.limit, device=args.device)


def _table_path(option: str | None, dataset: str, default: Any) -> str | None:
    if option == "none":
        return None
    if option is not None:
        if not Path(option).is_file():
            raise UsageError(f"no ground-truth table {option!r}; make one with 'autodisco nas groundtruth' or pass "
                             "--table none")
        return str(Path(option).resolve())
    shipped = default(dataset)
    return str(shipped) if shipped is not None else None


# -- score ------------------------------------------------------------------------------------------------------------

def _score(args: argparse.Namespace) -> int:
    from nas.oneshot_train import SUPERNET_FILE, load_supernet, score, supernet_data

    _set_threads(args.threads)
    path = Path(args.run) / SUPERNET_FILE
    if not Path(args.run).is_dir():
        raise UsageError(f"no run folder {args.run!r}; train a supernet with 'autodisco nas oneshot --run {args.run}'")
    if not path.is_file():
        raise UsageError(f"{args.run!r} has no {SUPERNET_FILE}; train one with "
                         f"'autodisco nas oneshot --run {args.run}'")
    genotypes = _read_archs(Path(args.archs))
    saved = load_supernet(path, args.device)
    for line, genotype in genotypes:
        if not saved.supernet.allows(genotype):
            raise UsageError(f"{args.archs}:{line}: {genotype.to_text()} uses an operation the supernet's edges do not "
                             f"allow ({saved.supernet.allowed_ops()})")
    data = supernet_data(saved.dataset, saved.limit)
    accuracies = score(saved.supernet, [g for _, g in genotypes], data, device=args.device)
    scores = {g.to_text(): a for (_, g), a in zip(genotypes, accuracies)}
    _write_json(Path(args.output), scores)
    print(f"scored {len(scores)} architecture{'s' if len(scores) != 1 else ''} with the supernet of {args.run} "
          f"(epoch {saved.epoch}); "
          f"wrote {args.output}")
    return 0


def _read_archs(path: Path) -> list[tuple[int, Any]]:
    """``(line number, genotype)`` of every non-blank, non-comment line; ``UsageError`` naming a bad line."""
    from nas.errors import GenotypeError
    from nas.nb201 import NB201Genotype

    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise UsageError(f"no architecture list {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read it ({error})") from None
    genotypes = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            genotypes.append((number, NB201Genotype.from_text(text)))
        except GenotypeError as error:
            raise UsageError(f"{path}:{number}: not an NB201 cell: {error}") from None
    if not genotypes:
        raise UsageError(f"{path}: no architectures (one NB201 cell string per line)")
    return genotypes


def _write_json(path: Path, value: Any) -> None:
    from evaluators.files import write_json

    write_json(path, value)


# -- groundtruth ------------------------------------------------------------------------------------------------------

def _groundtruth(args: argparse.Namespace) -> int:
    from nas.groundtruth import TrainBudget
    from search.jobs import create_job
    from search.jobs._groundtruth import GroundTruthConfig, GroundTruthJob, output_path
    from search.store import Store

    if args.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    if args.archs < 1 or args.epochs < 1 or args.C < 1:
        raise UsageError("--archs, --epochs and --C must be at least 1")
    output = Path(args.output)
    if output.exists():
        raise UsageError(f"{args.output} exists; choose another -o (an interrupted table continues with "
                         "'autodisco resume RUN')")
    if args.limit is not None and args.limit < 2:
        raise UsageError(f"--limit must be at least 2, got {args.limit}")
    config = GroundTruthConfig(args.dataset, args.archs, output_path(args.output), args.seed,
                               TrainBudget(C=args.C, epochs=args.epochs, seed=args.seed), args.limit)
    run = new_run(args.run or f"runs/groundtruth-{args.dataset}-{args.archs}-s{args.seed}")
    options = context_options(args, run)
    with Store.for_run(run) as store:
        job = create_job(store, run.name, GroundTruthJob, config, **options)
        options["say"](job.describe() + f"; results in {run}")
        return run_to_end(job, str(run))
