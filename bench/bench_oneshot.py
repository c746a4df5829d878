"""One-shot ranking quality on the shipped table: uniform (the baseline) vs FairNAS vs PA&DA vs few-shot, over seeds.

For each seed every run trains its supernet (``nas.oneshot_train``: MNIST-1D, the shape of the shipped ground-truth
table's networks, the same epochs and seed — so all start from the same weights) and scores every architecture of
the shipped table (``nas/data/nb201_mnist1d.json``) with inherited weights (BatchNorm recalibrated per
architecture). Few-shot is GM-NAS on the same supernet (``nas.fewshot``: ``--splits`` splits every
``--split-every`` epochs, every sub-supernet trained to the end, each table architecture scored by the sub-supernet
whose subspace holds it). Printed per seed, then mean ± sample standard deviation (min–max) over the seeds:

- Kendall τ and the top pick's rank in the table (of 250; top 10 % = rank ≤ 25) ranking by inherited validation
  **loss** (the default, ``InheritConfig.metric``) and, for the one-shot runs, by inherited **accuracy** (the old
  protocol) from the same supernet;
- CPU seconds of training and of scoring;
- each run's τ minus uniform's, and whether that beats the seed spread (the larger of the two runs' standard
  deviations of τ over seeds).

    python bench/bench_oneshot.py --jobs 4               # 10 epochs, seeds 0 1 2, every run, CPU, 4 processes
    python bench/bench_oneshot.py --epochs 30 --seeds 0 --runs uniform pada
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

RUNS = ("uniform", "fair", "pada", "fewshot")


def run_one(run: str, epochs: int, seed: int, splits: int, split_every: int) -> dict[str, Any]:
    """Train one supernet (or a few-shot family of them) and rank the shipped table with it."""
    from nas import NB201Genotype
    from nas.fewshot import FewShotConfig, search
    from nas.fewshot_backends import OneShotBackend
    from nas.groundtruth import default_table_path, load_table
    from nas.nb201_network import NB201NetConfig
    from nas.oneshot_train import OneShotConfig, evaluate, supernet_data, train_supernet
    from nas.ranking import rank_correlation

    table = load_table(default_table_path("mnist1d"))
    budget = table.metadata["budget"]
    data = supernet_data("mnist1d")
    net = NB201NetConfig(C=budget["C"], cells_per_stage=budget["cells_per_stage"], reduction=budget["reduction"])
    sampler = "uniform" if run == "fewshot" else run
    config = OneShotConfig(net=net, sampler=sampler, epochs=epochs, seed=seed)
    cpu = time.process_time()
    if run == "fewshot":
        fewshot = FewShotConfig(splits=splits, split_every=split_every, halving=False, seed=seed)
        result = search(OneShotBackend(config, data, table=table.accuracy), fewshot)
        cpu = time.process_time() - cpu
        loss = rank_correlation(result.metrics["table_scores"], table.accuracy)
        return {"loss": loss, "accuracy": None, "train_cpu": cpu, "score_cpu": float("nan")}
    supernet, _ = train_supernet(config, data.train, in_channels=data.in_channels, dim=data.dim)
    train_cpu = time.process_time() - cpu
    genotypes = [NB201Genotype.from_text(arch) for arch in table.accuracy]
    cpu = time.process_time()
    scores = evaluate(supernet, genotypes, data)
    score_cpu = time.process_time() - cpu
    by = {metric: rank_correlation({g.to_text(): s.value(metric) for g, s in zip(genotypes, scores)}, table.accuracy)
          for metric in ("loss", "accuracy")}  # fmt: skip
    return {**by, "train_cpu": train_cpu, "score_cpu": score_cpu}


def main(argv: list[str] | None = None) -> None:
    import torch

    from nas.ranking import Spread, summarize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="supernet epochs (few-shot: per lineage); default 10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument("--splits", type=int, default=2, help="few-shot splits (2: 4 sub-supernets)")
    parser.add_argument("--split-every", type=int, default=1, help="few-shot: epochs between splits (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tasks = [(run, seed) for seed in args.seeds for run in args.runs]
    tasks.sort(key=lambda task: task[0] != "fewshot")  # the longest first
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = [pool.submit(run_one, run, args.epochs, seed, args.splits, args.split_every) for run, seed in tasks]
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for (run, seed), future in zip(tasks, futures):
            r = results[(run, seed)] = future.result()
            acc = f"; by accuracy: {r['accuracy'].line()}" if r["accuracy"] is not None else ""
            print(f"seed {seed} {run:>8}: by loss: {r['loss'].line()}{acc} ({r['train_cpu']:.0f} + "
                  f"{r['score_cpu']:.0f} CPU s)", flush=True)
    n = results[(args.runs[0], args.seeds[0])]["loss"].n
    print(f"\none-shot NB201 supernets on MNIST-1D, {args.epochs} epochs, {n} table architectures (top 10 % = rank "
          f"<= {max(1, n // 10)}), seeds {args.seeds}, CPU; mean ± std (min–max) over seeds")
    print(f"{'run':<10}{'metric':<10}{'Kendall tau':>28}{'top pick rank':>26}{'tau - uniform':>15}"
          f"{'train CPU s':>13}{'score CPU s':>13}")
    spreads = {}
    for run in args.runs:
        for metric in ("loss", "accuracy"):
            rankings = [results[(run, s)][metric] for s in args.seeds]
            if any(r is None for r in rankings):
                continue
            spread = spreads[(run, metric)] = summarize(rankings)
            t, k = spread.kendall_tau, spread.top_pick_rank
            assert k is not None
            gap = ""
            if run != "uniform" and ("uniform", metric) in spreads:
                base = spreads[("uniform", metric)].kendall_tau
                gap = f"{t.mean - base.mean:+.3f}{'*' if t.mean - base.mean > max(t.std, base.std) else ' '}"
            cpu = [Spread.of([results[(run, s)][f] for s in args.seeds]).mean for f in ("train_cpu", "score_cpu")]
            print(f"{run:<10}{metric:<10}{f'{t.mean:.3f} ± {t.std:.3f} ({t.low:.3f}–{t.high:.3f})':>28}"
                  f"{f'{k.mean:.1f} ± {k.std:.1f} ({k.low:.0f}–{k.high:.0f})':>26}{gap:>15}"
                  f"{cpu[0]:>13.1f}{cpu[1]:>13.1f}")
    print("* = beats uniform by more than the seed spread (the larger std of tau over seeds)")
    print("\n" + "\n".join(f"{run} by {metric}: {spread.line()}" for (run, metric), spread in spreads.items()))
    if len(args.seeds) > 1 and "uniform" in args.runs:
        for run in args.runs:
            if run != "uniform":
                diffs = [results[(run, s)]["loss"].kendall_tau - results[("uniform", s)]["loss"].kendall_tau
                         for s in args.seeds]
                print(f"paired by seed, {run} - uniform (by loss): tau {np.mean(diffs):+.3f} ± "
                      f"{np.std(diffs, ddof=1):.3f}")


if __name__ == "__main__":
    main()
