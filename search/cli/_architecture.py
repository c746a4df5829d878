"""``autodisco search architecture``: evolutionary NAS through the same search job as optimizer search.

Genotypes are the candidates (``search.kinds.ArchitectureKind``); the job, its FEC cache, checkpoints, ``resume``
and the ``runs`` commands are the engine's. Registered by ``search.cli._search`` next to ``search optimizer``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cli._common import UsageError
from search.cli._config import add_config_option
from search.cli._search import _add_execution_options, require_run, start_search

if TYPE_CHECKING:  # the kinds import numpy: only when a command runs
    from search.kinds import ArchitectureKind

# search.kinds' SPACES, TASKS, SCRATCH, SUPERNET_PREFIX and ScratchBudget's defaults, written out so that building the
# parser imports no numpy (``autodisco --help`` answers at once); tests/test_layout.py checks they stay equal.
SPACES = ("darts", "nb201")
TASKS = ("mnist1d", "digits")
SCRATCH = "scratch"
SUPERNET_PREFIX = "supernet:"
SCRATCH_DEFAULTS = {"epochs": 3, "train_examples": 2000, "valid_examples": 1000, "channels": 8, "layers": None}
PUBLISHED = ("DARTS_V1", "DARTS_V2")  # nas.genotypes names accepted by --warm-start (DARTS space)
RANDOM = "random"
_WARM_START_STREAM = 2  # random warm starts draw from np.random.default_rng([seed, 2])


def register(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser("architecture", help="discover cell architectures by regularized evolution")
    add_config_option(parser)
    parser.add_argument("--run", help="run folder, e.g. runs/nb201-evo (its name names the job); required, here or in "
                                      "--config")
    parser.add_argument("--space", choices=SPACES, default="nb201", help="search space (default nb201)")
    parser.add_argument("--task", choices=TASKS, default="mnist1d", help="dataset the candidates train on")
    parser.add_argument("--strategy", choices=("evolution", "random"), default="evolution")
    parser.add_argument("--population", type=int, default=20, help="population size P (default 20)")
    parser.add_argument("--tournament", type=int, default=5, help="tournament size T (default 5)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--evaluations", type=int, help="trainings to run, cache hits not counted (default 100)")
    budget.add_argument("--hours", type=float, help="wall-clock budget in hours")
    parser.add_argument("--warm-start", default=RANDOM, metavar="GENOTYPE|NAME|FILE|random",
                        help="genotype text, DARTS_V1/DARTS_V2, a file holding a genotype, or 'random': P random "
                             "genotypes (Real et al.'s initial population; the default)")
    parser.add_argument("--fitness", default=SCRATCH, metavar="scratch|supernet:RUN",
                        help="validation accuracy after a short training from scratch (default), or with weights "
                             "inherited from the one-shot supernet of run folder RUN (nb201 only)")
    parser.add_argument("--supernet-metric", choices=("loss", "accuracy"), default="loss",
                        help="with --fitness supernet:RUN, score inherited weights by minus the validation loss "
                             "(default: it ranks architectures better) or by the accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", choices=("plain", "aggregating", "forgetful", "off"), default="plain",
                        help="FEC policy (default plain)")
    parser.add_argument("--no-fcm", action="store_true", help="do not re-mutate children equivalent to their parent")
    parser.add_argument("--plateau-restart", type=int, metavar="K",
                        help="restart from the best after K results without a new best")
    for name, help_text in (("epochs", "training epochs per candidate"),
                            ("train_examples", "training examples per candidate"),
                            ("valid_examples", "validation examples that score it"),
                            ("channels", "initial channels C of the network"),
                            ("layers", "cells (DARTS; default 3) or cells per stage (NAS-Bench-201; default 1)")):
        default = SCRATCH_DEFAULTS[name]
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default,
                            help=help_text if default is None else f"{help_text} (default {default})")
    parser.add_argument("--lr", type=float, help="learning rate, cosine-annealed (default: the training loop's)")
    _add_execution_options(parser)
    parser.set_defaults(handler=_search_architecture)


def _search_architecture(args: argparse.Namespace) -> int:
    from search.jobs._search import SearchConfig

    require_run(args)
    kind = _kind(args)
    evaluations = args.evaluations if args.evaluations is not None or args.hours is not None else 100
    warm_start = () if args.strategy == "random" else _warm_start(args, kind)
    config = SearchConfig(tasks=(args.task,), strategy=args.strategy, population=args.population,
                          tournament=args.tournament, evaluations=evaluations, hours=args.hours, seed=args.seed,
                          warm_start=warm_start, fcm=kind.fcm, cache=args.cache,
                          plateau_restart=args.plateau_restart, kind_options=kind.options())
    return start_search(args, config, kind)


def _kind(args: argparse.Namespace) -> ArchitectureKind:
    from search.kinds import ArchitectureKind, ScratchBudget

    fitness = args.fitness
    if fitness.startswith(SUPERNET_PREFIX):
        fitness = SUPERNET_PREFIX + _supernet_run(Path(fitness[len(SUPERNET_PREFIX):]), args.task)
    budget = ScratchBudget(epochs=args.epochs, train_examples=args.train_examples, valid_examples=args.valid_examples,
                           channels=args.channels, layers=args.layers, lr=args.lr)
    return ArchitectureKind(space=args.space, fitness=fitness, budget=budget, fcm=not args.no_fcm,
                            supernet_metric=args.supernet_metric)


def _supernet_run(folder: Path, task: str) -> str:
    """The absolute path of a run folder holding a one-shot supernet trained on ``task`` (else ``UsageError``)."""
    from nas.oneshot_train import SUPERNET_FILE, load_supernet

    path = folder / SUPERNET_FILE
    if not path.is_file():
        raise UsageError(f"--fitness supernet:{folder}: no {SUPERNET_FILE} there; train one with "
                         f"'autodisco nas oneshot --run {folder}' first")
    dataset = load_supernet(path).dataset
    if dataset != task:
        raise UsageError(f"--fitness supernet:{folder}: that supernet was trained on {dataset}; use --task {dataset}")
    return str(folder.resolve())  # workers may run in another folder


def _warm_start(args: argparse.Namespace, kind: ArchitectureKind) -> tuple[str, ...]:
    """The warm-start genotype texts: ``random`` gives P random genotypes drawn from the job's seed."""
    value = args.warm_start
    if value == RANDOM:
        if args.population < 1:
            raise UsageError(f"--population must be at least 1, got {args.population}")
        import numpy as np

        rng = np.random.default_rng([args.seed, _WARM_START_STREAM])
        return tuple(kind.to_text(kind.random_candidate(rng)) for _ in range(args.population))
    return (kind.to_text(_genotype(value, kind)),)


def _genotype(value: str, kind: ArchitectureKind) -> Any:
    from nas import genotypes

    if value in PUBLISHED:
        if kind.space != "darts":
            raise UsageError(f"--warm-start {value} is a DARTS-space cell; use it with --space darts")
        return getattr(genotypes, value)
    path = Path(value)
    text = path.read_text(encoding="utf-8", errors="replace") if _is_file(path) else value
    try:
        return kind.parse(text.strip())
    except ValueError as error:
        raise UsageError(f"--warm-start: not a {kind.space} genotype, a file holding one, {', '.join(PUBLISHED)} "
                         f"or 'random' ({error})") from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # genotype text too long for a file name
        return False
