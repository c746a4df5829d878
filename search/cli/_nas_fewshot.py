"""``autodisco nas fewshot``: few-shot NAS by gradient matching (GM-NAS) over the DARTS or the one-shot NB201
supernet, a job (``search.jobs``) that ``autodisco resume`` continues."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from search.cli._common import UsageError, add_threads_option, check_threads, device_option, new_run
from search.cli._jobs import context_options, run_to_end

DATASETS = ("mnist1d", "digits")


def register(nas_commands: argparse._SubParsersAction) -> None:
    fewshot = nas_commands.add_parser(
        "fewshot", help="few-shot NAS: split a supernet by gradient matching, pick the best sub-supernet"
    )
    fewshot.add_argument("--base", choices=("darts", "oneshot"), required=True,
                         help="supernet to split: DARTS (α, continuous) or the one-shot NB201 supernet (single path)")
    fewshot.add_argument("--dataset", required=True, metavar="|".join(DATASETS))
    fewshot.add_argument("--epochs", type=int, required=True, help="training epochs of every lineage")
    fewshot.add_argument("--run", required=True, help="run folder, e.g. runs/gm-darts (its name names the job)")
    fewshot.add_argument("--splits", type=int, default=3, metavar="K", help="splits: 2^K sub-supernets (paper: 3)")
    fewshot.add_argument("--split-every", type=int, default=2, metavar="N",
                         help="split after epochs N, 2N, ..., KN (paper: 2)")
    fewshot.add_argument("--distance-batches", type=int, default=3, metavar="B",
                         help="batches averaged per gradient-matching distance (default 3)")
    fewshot.add_argument("--min-group", type=int, default=1, metavar="G",
                         help="smallest operation group of a split (GM-NAS's DARTS code: 2; default 1)")
    fewshot.add_argument("--no-halving", action="store_true",
                         help="train every sub-supernet to the end and pick the best (no successive halving)")
    fewshot.add_argument("--channels", type=int, help="initial channels C (default: 16 darts, 8 oneshot)")
    fewshot.add_argument("--batch-size", type=int, default=64)
    fewshot.add_argument("--seed", type=int, default=0)
    fewshot.add_argument("--limit", type=int, metavar="N", help="use only the first N training examples")
    fewshot.add_argument("--device", help="cpu or cuda[:i] (default: cuda if available)")
    add_threads_option(fewshot)
    fewshot.add_argument("--quiet", action="store_true", help="no progress output")
    darts = fewshot.add_argument_group("darts base")
    darts.add_argument("--space", choices=("darts", "sharpdarts"), default="darts", help="operation set")
    darts.add_argument("--order", type=int, choices=(1, 2), default=1, help="1st or 2nd order α gradient")
    darts.add_argument("--layers", type=int, default=8, help="cells (DARTS: 8)")
    darts.add_argument("--steps", type=int, default=4, help="intermediate nodes per cell (DARTS: 4)")
    oneshot = fewshot.add_argument_group("oneshot base")
    oneshot.add_argument("--sampler", choices=("uniform", "fair", "pada"), default="uniform", help="path/data sampler")
    oneshot.add_argument("--table", help="ground-truth table for Kendall τ (default: the one shipped for the dataset)")
    oneshot.add_argument("--no-table", action="store_true", help="report no τ")
    oneshot.add_argument("--score-archs", type=int, default=16, help="architectures averaged per sub-supernet score")
    oneshot.add_argument("--final-archs", type=int, default=64, help="winner's architectures the result is picked from")
    fewshot.set_defaults(handler=_fewshot)


def _fewshot(args: argparse.Namespace) -> int:
    import torch

    from search.jobs import create_job
    from search.jobs._fewshot import FewShotJob, make_backend
    from search.store import Store

    check_threads(args.threads)
    config = _job_config(args)
    run = new_run(args.run)
    torch.set_num_threads(args.threads)
    backend = make_backend(config)  # loads the data (and the table): bad input fails before the job exists
    options = context_options(args, run)
    with Store.for_run(run) as store:
        job = create_job(store, run.name, FewShotJob, config,
                         factory=lambda c, context: FewShotJob(c, context, backend), **options)
        options["say"](job.describe() + f"; results in {run}")
        return run_to_end(job, args.run)


def _job_config(args: argparse.Namespace) -> Any:
    from nas.fewshot import FewShotConfig
    from search.jobs._fewshot import FewShotJobConfig
    from nas.oneshot import InheritConfig

    if args.dataset not in DATASETS:
        raise UsageError(f"--dataset must be one of {', '.join(DATASETS)}, got {args.dataset!r}")
    for name in ("epochs", "batch_size", "score_archs", "final_archs", "layers", "steps"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    fewshot = FewShotConfig(args.splits, args.split_every, args.distance_batches, args.min_group,
                            not args.no_halving, args.seed)  # fmt: skip
    base = {"darts": _darts_config(args)} if args.base == "darts" else {"oneshot": _oneshot_config(args)}
    return FewShotJobConfig(args.base, args.dataset, fewshot, **base, table=_table(args),
                            inherit=InheritConfig(seed=args.seed), score_archs=args.score_archs,
                            final_archs=args.final_archs, limit=args.limit, device=device_option(args.device))  # fmt: skip


def _darts_config(args: argparse.Namespace) -> Any:
    from nas.architect import ArchitectConfig
    from nas.darts import DartsConfig, sharpdarts_config
    from nas.spaces import DARTS_PRIMITIVES, SHARPDARTS_PRIMITIVES
    from nas.supernet import SupernetConfig

    sharp = args.space == "sharpdarts"
    net = SupernetConfig(layers=args.layers, C=args.channels or 16, steps=args.steps, multiplier=args.steps,
                         primitives=SHARPDARTS_PRIMITIVES if sharp else DARTS_PRIMITIVES,
                         weighting="max-w" if sharp else "softmax", alpha_seed=args.seed)  # fmt: skip
    settings: dict[str, Any] = dict(net=net, arch=ArchitectConfig(order=args.order), epochs=args.epochs,
                                    batch_size=args.batch_size, seed=args.seed)  # fmt: skip
    if sharp:
        return sharpdarts_config(**settings, warmup_epochs=min(5, args.epochs - 1))
    return DartsConfig(**settings)


def _oneshot_config(args: argparse.Namespace) -> Any:
    from nas.nb201_network import NB201NetConfig
    from nas.oneshot_train import OneShotConfig

    return OneShotConfig(net=NB201NetConfig(C=args.channels or 8), sampler=args.sampler, epochs=args.epochs,
                         batch_size=args.batch_size, seed=args.seed)  # fmt: skip


def _table(args: argparse.Namespace) -> str | None:
    from nas.groundtruth import default_table_path

    if args.base != "oneshot" or args.no_table:
        return None
    if args.table is not None:
        if not Path(args.table).is_file():
            raise UsageError(f"--table {args.table!r} is not a file; give a ground-truth table or --no-table")
        return args.table
    shipped = default_table_path(args.dataset)
    return None if shipped is None else str(shipped)
