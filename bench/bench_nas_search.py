"""FEC hit rate in evolutionary NAS (NAS-Bench-201 space), and time per candidate with the cache on vs off.

    python bench/bench_nas_search.py [--candidates 200] [--task digits] [--population 20] [--tournament 5]
                                     [--epochs 3] [--train-examples 512] [--valid-examples 256] [--channels 4]
                                     [--batch-size 32] [--seed 0] [--space-stats]

Each run is the engine's search job over ``ArchitectureKind("nb201")`` (regularized evolution from P random cells,
or random search), stopped after exactly ``--candidates`` candidates (``max_candidates_per_evaluation=1``), with a
cheap fitness — a real training from scratch on a tiny budget — run inline on one thread, timed in CPU seconds of
the process (robust to other jobs on a shared machine). Side by side: FEC plain vs off, FCM on vs off; then

- the ratio of time per candidate, FEC plain / FEC off (the cache skips the training of a repeated hash);
- the cost of the functional hash per candidate against the cost of one training;
- how lossless the cache is here: in the FEC-off runs, hash-equal genotypes written differently are trained
  separately (their dead or reordered operations draw other initial weights) — the fitness spread within such
  groups against the seed-to-seed spread of one genotype and the spread between random pairs;
- with ``--space-stats``: the number of distinct functional hashes among all 15,625 NB201 cells.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hashing
from nas import all_nb201
from search.executor import InlineExecutor
from search.jobs import run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import ArchitectureKind, ScratchBudget
from search.kinds.workers import evaluate_architecture
from search.store import Store

RUNS = (  # (label, strategy, fcm, cache)
    ("evolution FCM on ", "evolution", True, "plain"),
    ("evolution FCM on ", "evolution", True, "off"),
    ("evolution FCM off", "evolution", False, "plain"),
    ("evolution FCM off", "evolution", False, "off"),
    ("random search    ", "random", False, "plain"),
)


def run_once(root: Path, args: argparse.Namespace, strategy: str, fcm: bool, cache: str) -> dict[str, Any]:
    budget = ScratchBudget(epochs=args.epochs, train_examples=args.train_examples, valid_examples=args.valid_examples,
                           channels=args.channels, batch_size=args.batch_size)
    kind = ArchitectureKind("nb201", budget=budget, fcm=fcm)
    rng = np.random.default_rng([args.seed, 2])
    warm = () if strategy == "random" else tuple(kind.to_text(kind.random_candidate(rng))
                                                 for _ in range(args.population))
    config = SearchConfig(tasks=(args.task,), strategy=strategy, population=args.population, tournament=args.tournament,
                       evaluations=args.candidates, max_candidates_per_evaluation=1, seed=args.seed,
                       warm_start=warm, fcm=fcm, cache=cache, kind_options=kind.options())
    name = f"{strategy}-{'fcm' if fcm else 'nofcm'}-{cache}"
    store = Store.for_run(root / name)
    job = SearchJob.create(store, name, kind, config, executor_factory=lambda **_: InlineExecutor(), show_progress=False)
    started, cpu_started = time.perf_counter(), time.process_time()
    summary = run_job(job)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    candidates = store.list_candidates(job.record.id)
    evaluations = [e for e in store.list_evaluations(job.record.id) if e.status in ("ok", "failed")]
    store.close()
    return {
        "candidates": summary.candidates, "evaluations": summary.evaluations, "hits": summary.cache_hits,
        "hit_rate": summary.cache_hits / max(summary.candidates, 1), "wall_s": wall, "cpu_s": cpu,
        "per_candidate_s": cpu / max(summary.candidates, 1),
        "best": summary.best_fitness, "texts": [c.text for c in candidates],
        "fitness_by_hash": _fitness_by_hash(candidates, evaluations),
    }


def _fitness_by_hash(candidates: list[Any], evaluations: list[Any]) -> dict[str, dict[str, float]]:
    hash_of = {c.id: (c.hash, c.text) for c in candidates}
    groups: dict[str, dict[str, float]] = {}
    for e in evaluations:
        if e.fitness is not None:
            digest, text = hash_of[e.candidate_id]
            groups.setdefault(digest, {})[text] = e.fitness
    return groups


def warm_up(args: argparse.Namespace) -> None:
    """Load the data and run one training and one hash first, so the first run pays no start-up cost."""
    kind = ArchitectureKind("nb201", budget=ScratchBudget(epochs=1, train_examples=args.train_examples,
                                                          valid_examples=args.valid_examples, channels=args.channels))
    genotype = kind.random_candidate(np.random.default_rng(0))
    kind.functional_hash(genotype)
    evaluate_architecture(kind.payload(genotype, seed=0, context={"tasks": [args.task]}))


def hash_cost(texts: list[str]) -> float:
    """Mean CPU seconds of one functional hash (what FEC and FCM add per candidate, FCM more on re-draws)."""
    kind = ArchitectureKind("nb201")
    genotypes = [kind.parse(t) for t in texts]
    started = time.process_time()
    for genotype in genotypes:
        kind.functional_hash(genotype)
    return (time.process_time() - started) / max(len(genotypes), 1)


def spread(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, float]:
    """How far apart hash-equal, differently written genotypes trained separately land (``within``: mean fitness
    range per group of ``groups``), against the same genotype trained on as many seeds (``seeds``: the first
    member of each group on the job's seed and on seeds + 1, + 2, ...) and random pairs of distinct hashes
    (``between``: mean absolute difference)."""
    budget = ScratchBudget(epochs=args.epochs, train_examples=args.train_examples, valid_examples=args.valid_examples,
                           channels=args.channels, batch_size=args.batch_size)
    kind = ArchitectureKind("nb201", budget=budget)
    within, seeds, singles = [], [], []
    for result in results:
        for texts in result["fitness_by_hash"].values():
            values = list(texts.values())
            singles.append(values[0])
            if len(values) > 1:
                within.append(max(values) - min(values))
                first = kind.parse(next(iter(texts)))
                again = [evaluate_architecture(kind.payload(first, seed=args.seed + k, context={"tasks": [args.task]}))
                         ["fitness"] for k in range(1, len(values))]
                seeds.append(max([values[0], *again]) - min([values[0], *again]))
    pairs = np.random.default_rng(args.seed).integers(len(singles), size=(2000, 2))
    between = float(np.mean([abs(singles[a] - singles[b]) for a, b in pairs if a != b]))
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return {"groups": len(within), "within": mean(within), "seeds": mean(seeds), "between": between}


def space_stats() -> tuple[int, float]:
    started = time.perf_counter()
    digests = {hashing.functional_hash(g) for g in all_nb201()}
    return len(digests), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--task", default="digits", choices=("digits", "mnist1d"))
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--tournament", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-examples", type=int, default=512)
    parser.add_argument("--valid-examples", type=int, default=256)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--space-stats", action="store_true", help="also hash all 15,625 cells (about a minute)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warm_up(args)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_once(Path(tmp), args, strategy, fcm, cache) for _, strategy, fcm, cache in RUNS]
    print(f"NAS-Bench-201 cells on {args.task}, P={args.population} T={args.tournament}, {args.candidates} candidates "
          f"per run, seed {args.seed}; fitness: {args.epochs} epoch(s) on {args.train_examples} examples, C="
          f"{args.channels}, batch {args.batch_size}, validated on {args.valid_examples}; inline, one thread; "
          "CPU seconds of this process (the machine is shared)")
    print(f"{'run':30}{'evaluations':>12}{'cache hits':>11}{'hit rate':>10}{'CPU s':>8}{'wall s':>8}"
          f"{'CPU s/cand.':>12}{'vs FEC off':>11}{'best':>7}")
    for (label, strategy, fcm, cache), result in zip(RUNS, results):
        pair = _partner(results, strategy, fcm, cache)
        ratio = f"{result['per_candidate_s'] / pair['per_candidate_s']:.2f}" if pair and cache == "plain" else ""
        print(f"{label} FEC {cache:6}    {result['evaluations']:>12}{result['hits']:>11}{result['hit_rate']:>10.1%}"
              f"{result['cpu_s']:>8.1f}{result['wall_s']:>8.1f}{result['per_candidate_s']:>12.3f}{ratio:>11}"
              f"{result['best']:>7.3f}")
    texts = sorted(set(itertools.chain.from_iterable(r["texts"] for r in results)))
    off = [r for r, (_, _, _, c) in zip(results, RUNS) if c == "off"]
    per_hash = hash_cost(texts)
    per_eval = sum(r["cpu_s"] for r in off) / sum(r["evaluations"] for r in off)  # search overhead included
    print(f"functional hash: {per_hash * 1e3:.2f} CPU ms per candidate = {per_hash / per_eval:.4f} of one evaluation "
          f"({per_eval:.3f} CPU s)")
    figures = spread(off, args)
    print(f"FEC off runs: {figures['groups']} groups of hash-equal genotypes written differently, trained separately "
          f"(same seed): mean fitness range {figures['within']:.4f}; the first of each on as many seeds: "
          f"{figures['seeds']:.4f}; random pairs of distinct hashes: mean |difference| {figures['between']:.4f}")
    if args.space_stats:
        distinct, seconds = space_stats()
        print(f"NB201 space: {distinct} distinct functional hashes among 15,625 cells "
              f"({15625 / distinct:.2f} cells per hash; hashed in {seconds:.0f} s)")


def _partner(results: list[dict[str, Any]], strategy: str, fcm: bool, cache: str) -> dict[str, Any] | None:
    """The run with the same strategy and FCM and the other cache setting, if there is one."""
    for (_, s, f, c), result in zip(RUNS, results):
        if (s, f) == (strategy, fcm) and c != cache:
            return result
    return None


if __name__ == "__main__":
    main()
