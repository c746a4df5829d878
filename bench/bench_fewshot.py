"""Few-shot NAS by gradient matching: what a split costs, and what it buys in ranking quality.

1. **Split cost.** Gradient matching on every unsplit edge (``nas.gradient_matching.plan_split``: edges × ops ×
   batches forward/backward passes) against one training epoch of the same supernet (the baseline), on MNIST-1D:
   the DARTS supernet (both cell types, 8 operations) and the one-shot NB201 supernet (6 edges, 5 operations).
   Wall and CPU seconds (the machine may be shared: CPU time is the steadier figure); the split is also expressed
   in training steps, and for DARTS extrapolated to CIFAR-10's 391 steps per epoch (DARTS: 25,000 examples,
   batch 64) by scaling the measured step time.
2. **Ranking.** Kendall τ and the top pick's rank between the inherited-weight ranking (by validation loss,
   ``InheritConfig``'s default metric) and the shipped ground truth
   (``nas/data/nb201_mnist1d.json``) for the plain one-shot supernet (uniform sampler, the baseline) and for
   few-shot (``--splits`` splits every ``--split-every`` epochs, all sub-supernets trained to the end, each table
   architecture scored by the sub-supernet whose subspace holds it), with the same epochs per lineage; a second
   baseline trains the plain supernet for as many epochs as all few-shot lineages together (equal compute).

    python bench/bench_fewshot.py                 # both parts, 3 seeds (~15 min on one idle CPU core)
    python bench/bench_fewshot.py --part split    # only the split cost
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import TensorDataset

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "nas" / "data" / "nb201_mnist1d.json"
CIFAR_STEPS = 391


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall seconds and its CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def split_cost(backend: Any, batches: int, label: str, steps: int, passes_per_step: int) -> None:
    from nas.gradient_matching import plan_split

    state = backend.root()
    backend.train_epoch(state, 1)  # warm-up: one-off costs land here
    _, epoch_wall, epoch_cpu = timed(lambda: backend.train_epoch(state, 2))
    generator = torch.Generator().manual_seed(0)
    data = backend.batches(batches, generator)
    model = backend.model(state)
    plan, split_wall, split_cpu = timed(lambda: plan_split(model, backend.space, data, generator))
    edges = len(plan.partitions)
    ops = len(next(iter(backend.space.edges(model).values())))
    passes = edges * ops * len(data)
    print(f"\n{label}: {steps} steps/epoch ({passes_per_step} forward/backward passes each); split = {edges} edges "
          f"x {ops} ops x {len(data)} batches = {passes} passes")  # fmt: skip
    print(f"{'':24}{'wall s':>9}{'CPU s':>9}{'x epoch (wall)':>16}{'x epoch (CPU)':>15}")
    print(f"{'one epoch (baseline)':24}{epoch_wall:>9.2f}{epoch_cpu:>9.2f}{1:>16.2f}{1:>15.2f}")
    print(f"{'split (all edges)':24}{split_wall:>9.2f}{split_cpu:>9.2f}{split_wall / epoch_wall:>16.2f}"
          f"{split_cpu / epoch_cpu:>15.2f}")  # fmt: skip
    step_cpu = epoch_cpu / steps
    print(f"split = {split_cpu / step_cpu:.1f} training steps (CPU)", end="")
    if label.startswith("DARTS"):
        print(f"; at CIFAR-10 scale ({CIFAR_STEPS} steps/epoch) = {split_cpu / (step_cpu * CIFAR_STEPS):.2f} epoch")
    else:
        print()
    print(f"chosen edge {plan.edge}: groups {plan.partitions[plan.edge].groups}, decisiveness "
          f"{plan.partitions[plan.edge].decisiveness:.4f}")  # fmt: skip


def part_split(limit: int, batches: int) -> None:
    from nas import datasets
    from nas.darts import DartsConfig
    from nas.fewshot_backends import DartsBackend, OneShotBackend
    from nas.nb201_network import NB201NetConfig
    from nas.oneshot_train import OneShotConfig, supernet_data
    from nas.supernet import SupernetConfig

    mnist = datasets.mnist1d()
    train = TensorDataset(*(t[:limit] for t in mnist.train.tensors))
    w_data, a_data = datasets.split(train, 0.5, seed=0)
    darts = DartsConfig(net=SupernetConfig(layers=5, C=8), epochs=10, batch_size=64)
    steps = -(-len(w_data) // darts.batch_size)
    split_cost(DartsBackend(darts, w_data, a_data), batches, "DARTS supernet (5 cells, C=8, MNIST-1D)", steps, 2)
    data = supernet_data("mnist1d")
    oneshot = OneShotConfig(net=NB201NetConfig(C=8), epochs=10, batch_size=64)
    steps = -(-len(data.train[1]) // oneshot.batch_size)
    split_cost(OneShotBackend(oneshot, data), batches, "one-shot NB201 supernet (C=8, MNIST-1D)", steps, 1)


def part_ranking(seeds: int, epochs: int, splits: int, split_every: int) -> None:
    from nas.fewshot import FewShotConfig, search
    from nas.fewshot_backends import OneShotBackend
    from nas.groundtruth import load_table
    from nas.nb201_network import NB201NetConfig
    from nas.oneshot_train import OneShotConfig, supernet_data

    table = load_table(TABLE).accuracy
    data = supernet_data("mnist1d")
    lineage_epochs = sum(split_every * 2**k for k in range(splits)) + 2**splits * (epochs - split_every * splits)
    runs = {
        f"one-shot uniform, {epochs} epochs (baseline)": (epochs, FewShotConfig(splits=0)),
        f"few-shot, {2**splits} sub-supernets, {epochs} epochs/lineage": (
            epochs, FewShotConfig(splits=splits, split_every=split_every, halving=False)),
        f"one-shot uniform, {lineage_epochs} epochs (equal compute)": (lineage_epochs, FewShotConfig(splits=0)),
    }  # fmt: skip
    figures: dict[str, list[float]] = {name: [] for name in runs}
    picks: dict[str, list[int]] = {name: [] for name in runs}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for seed in range(seeds):
        for name, (e, fewshot) in runs.items():
            config = OneShotConfig(net=NB201NetConfig(C=8), sampler="uniform", epochs=e, seed=seed)
            backend = OneShotBackend(config, data, table=table)
            result, wall, cpu = timed(lambda: search(backend, FewShotConfig(**{**vars(fewshot), "seed": seed})))
            figures[name].append(result.metrics["kendall_tau"])
            picks[name].append(result.metrics["top_pick_rank"])
            seconds[name].append(cpu)
            print(f"seed {seed}: {name}: tau {result.metrics['kendall_tau']:.4f}, top pick ranks "
                  f"{result.metrics['top_pick_rank']} of {result.metrics['n']} ({cpu:.0f} CPU s)", flush=True)
    baseline = statistics.mean(next(iter(figures.values())))
    print(f"\nKendall tau vs ground truth ({len(table)} NB201 architectures, MNIST-1D, C=8), {seeds} seed(s)")
    print(f"{'':52}{'tau (mean)':>11}{'std':>7}{'per seed':>26}{'minus baseline':>15}{'top pick ranks':>16}"
          f"{'CPU s':>8}")
    for name, taus in figures.items():
        per_seed = " ".join(f"{t:.3f}" for t in taus)
        std = statistics.stdev(taus) if len(taus) > 1 else 0.0
        ranks = " ".join(str(k) for k in picks[name])
        print(f"{name:52}{statistics.mean(taus):>11.4f}{std:>7.3f}{per_seed:>26}"
              f"{statistics.mean(taus) - baseline:>+15.4f}{ranks:>16}"
              f"{statistics.mean(seconds[name]):>8.0f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("split", "ranking", "both"), default="both")
    parser.add_argument("--limit", type=int, default=2000, help="MNIST-1D training examples for the DARTS part")
    parser.add_argument("--batches", type=int, default=3, help="distance batches (default 3, as the CLI)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--splits", type=int, default=2, help="NAS-Bench-201 in the paper: 2 (4 sub-supernets)")
    parser.add_argument("--split-every", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part in ("split", "both"):
        part_split(args.limit, args.batches)
    if args.part in ("ranking", "both"):
        part_ranking(args.seeds, args.epochs, args.splits, args.split_every)


if __name__ == "__main__":
    main()
