"""``autodisco nas darts`` and ``autodisco nas train``: a DARTS / sharpDARTS search, and training a genotype (text, a
published name, or a search run's result) from scratch — both jobs (``search.jobs``), continued by ``autodisco
resume``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from search.cli._common import (
    RESULTS_FILE, UsageError, add_threads_option, check_threads, device_option, new_run, open_run,
)
from search.cli._jobs import context_options, run_to_end

SPACES = ("darts", "sharpdarts")
SHARPDARTS_WARMUP = 5  # sharpDARTS's warm-up epochs, capped at epochs - 1 for short searches
HASH_SHOWN = 10


def register(nas_commands: argparse._SubParsersAction) -> None:
    darts = nas_commands.add_parser("darts", help="DARTS / sharpDARTS search; records α, metrics and the genotype "
                                                  "per epoch; resumable")  # fmt: skip
    _data_arguments(darts, run_required=True)
    darts.add_argument("--epochs", type=int, default=50, help="search epochs (DARTS: 50)")
    darts.add_argument("--order", type=int, choices=(1, 2), default=1, help="1st or 2nd order α gradient")
    darts.add_argument("--space", choices=SPACES, default="darts", help="operation set (default darts)")
    darts.add_argument("--weighting", choices=("softmax", "max-w"), help="default: softmax (darts), max-w (sharpdarts)")
    darts.add_argument("--schedule", choices=("cosine", "cosine-power"),
                       help="weights' lr schedule; default: cosine (darts), cosine-power (sharpdarts)")
    darts.add_argument("--layers", type=int, default=8, help="cells of the supernet (DARTS: 8)")
    darts.add_argument("--channels", type=int, default=16, help="initial channels C (DARTS: 16)")
    darts.add_argument("--batch-size", type=int, default=64, help="batch size (DARTS: 64)")
    darts.set_defaults(handler=_darts)

    train = nas_commands.add_parser("train", help="train a genotype from scratch and record it")
    train.add_argument("genotype", metavar="GENOTYPE|runs/NAME",
                       help="DARTS genotype text, a published name (DARTS_V2, ...), a file holding the text, or the "
                            "run folder of 'nas darts' (its final genotype)")  # fmt: skip
    _data_arguments(train, run_required=False)
    train.add_argument("--epochs", type=int, required=True, help="training epochs (DARTS: 600)")
    train.add_argument("--layers", type=int, default=20, help="cells (DARTS: 20)")
    train.add_argument("--channels", type=int, default=36, help="initial channels C (DARTS: 36)")
    train.add_argument("--batch-size", type=int, default=96, help="batch size (DARTS: 96)")
    train.add_argument("--lr", type=float, default=0.025, help="initial learning rate (DARTS: 0.025)")
    train.add_argument("--schedule", choices=("cosine", "cosine-power"), default="cosine")
    train.add_argument("--crop-flip", action="store_true",
                       help="DARTS's CIFAR augmentation: random crop (padding 4) and horizontal flip")
    train.add_argument("--cutout", type=int, default=0, metavar="N", help="cutout length (DARTS: 16; 0 = off)")
    train.add_argument("--drop-path", type=float, default=0.0, metavar="P", help="drop-path probability (DARTS: 0.2)")
    train.add_argument("--auxiliary", type=float, nargs="?", const=0.4, default=0.0, metavar="W",
                       help="auxiliary head with loss weight W (0.4 when given without a value)")
    train.set_defaults(handler=_train)


def _data_arguments(parser: argparse.ArgumentParser, run_required: bool) -> None:
    parser.add_argument("--dataset", required=True, metavar="mnist1d|digits|cifar10:PATH",
                        help="MNIST-1D, sklearn digits, or CIFAR-10 in torchvision's folder layout under PATH")
    parser.add_argument("--limit", type=int, metavar="N", help="use only the first N training examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", help="cpu or cuda[:i] (default: cuda if available)")
    add_threads_option(parser)
    parser.add_argument("--run", required=run_required,
                        help="run folder, e.g. runs/darts-mnist1d (its name names the job)"
                             + ("" if run_required else "; default runs/train-<hash>-<dataset>"))
    parser.add_argument("--quiet", action="store_true", help="no progress output")


# -- nas darts ----------------------------------------------------------------------------------------------------


def _darts(args: argparse.Namespace) -> int:
    from search.jobs import create_job
    from search.jobs._darts import DartsJob, DartsJobConfig, load_data
    from search.store import Store

    check_threads(args.threads)
    config = DartsJobConfig(args.dataset, _darts_config(args), limit=args.limit, device=device_option(args.device))
    run = new_run(args.run)
    data = load_data(config)
    options = context_options(args, run)
    with Store.for_run(run) as store:
        job = create_job(store, run.name, DartsJob, config,
                         factory=lambda c, context: DartsJob(c, context, data), **options)
        options["say"](job.describe() + f"; results in {run}")
        return run_to_end(job, args.run)


def _darts_config(args: argparse.Namespace) -> Any:
    from nas.architect import ArchitectConfig
    from nas.darts import DartsConfig
    from nas.spaces import DARTS_PRIMITIVES, SHARPDARTS_PRIMITIVES
    from nas.supernet import SupernetConfig

    sharp = args.space == "sharpdarts"
    weighting = args.weighting or ("max-w" if sharp else "softmax")
    schedule = args.schedule or ("cosine-power" if sharp else "cosine")
    net = SupernetConfig(layers=args.layers, C=args.channels, primitives=SHARPDARTS_PRIMITIVES if sharp else
                         DARTS_PRIMITIVES, weighting=weighting, alpha_seed=args.seed)  # fmt: skip
    warmup = min(SHARPDARTS_WARMUP, max(args.epochs - 1, 0)) if sharp and schedule == "cosine-power" else 0
    return DartsConfig(net=net, arch=ArchitectConfig(order=args.order), epochs=args.epochs,
                       batch_size=args.batch_size, lr_schedule=schedule.replace("-", "_"), warmup_epochs=warmup,
                       seed=args.seed)  # fmt: skip


# -- nas train ----------------------------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    from nas.datasets import get_dataset as load_dataset
    from search.jobs import create_job
    from search.jobs._train import TrainJob, TrainJobConfig
    from search.store import Store

    check_threads(args.threads)
    genotype, source = _genotype(args.genotype)
    device = device_option(args.device)
    data = load_dataset(args.dataset, args.limit)
    config = TrainJobConfig(genotype.to_text(), args.dataset, _train_config(args, data.num_classes), source, device,
                            args.limit)  # fmt: skip
    run = new_run(args.run or f"runs/train-{_hash(genotype)[:HASH_SHOWN]}-{args.dataset.split(':')[0]}")
    options = context_options(args, run)
    with Store.for_run(run) as store:
        job = create_job(store, run.name, TrainJob, config,
                         factory=lambda c, context: TrainJob(c, context, data), **options)
        options["say"](job.describe() + f"; results in {run}")
        return run_to_end(job, str(run))


def _train_config(args: argparse.Namespace, num_classes: int) -> Any:
    from nas.network import NetworkConfig
    from nas.train import TrainConfig

    net = NetworkConfig(C=args.channels, layers=args.layers, num_classes=num_classes, seed=args.seed)
    return TrainConfig(net=net, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       lr_schedule=args.schedule.replace("-", "_"), crop_flip=args.crop_flip, cutout=args.cutout,
                       drop_path=args.drop_path, auxiliary_weight=args.auxiliary, seed=args.seed)  # fmt: skip


def _genotype(value: str) -> tuple[Any, str]:
    """The genotype named by ``value`` and where it came from (raises ``GenotypeError`` / ``UsageError``)."""
    from nas import genotypes
    from nas.genotypes import Genotype

    named = {name: g for name, g in vars(genotypes).items() if isinstance(g, Genotype) and name.isupper()}
    if value in named:
        return named[value], value
    if value.lstrip().startswith("Genotype"):
        return Genotype.from_text(value), "text"
    path = Path(value)
    if path.is_dir():
        return _run_genotype(value), value
    if path.is_file():
        return Genotype.from_text(path.read_text(encoding="utf-8", errors="replace")), value
    raise UsageError(f"{value!r} is not genotype text, a known genotype ({', '.join(named)}), a file or a run folder")


def _run_genotype(run: str) -> Any:
    from search.jobs import job_type_of
    from search.jobs._darts import DartsJob, recorded_epochs

    if not (Path(run) / RESULTS_FILE).is_file():
        raise UsageError(f"{run!r} is a folder without {RESULTS_FILE}; give the run folder of 'autodisco nas darts'")
    store, job = open_run(run)
    with store:
        if job_type_of(job) is not DartsJob:
            raise UsageError(f"{run!r} is not a 'nas darts' run (its job is a {job.config.get('method', job.kind)} "
                             "job)")  # fmt: skip
        epochs = recorded_epochs(store, job)
    if not epochs:
        raise UsageError(f"{run!r} has no finished search epoch yet")
    total = job.config["search"]["epochs"]
    if len(epochs) < total:
        print(f"autodisco: note: {run} stopped after epoch {len(epochs)} of {total}; training that epoch's genotype",
              file=sys.stderr)
    return epochs[-1].genotype


# -- shared -------------------------------------------------------------------------------------------------------


def _hash(genotype: Any) -> str:
    import hashing

    return hashing.functional_hash(genotype)
