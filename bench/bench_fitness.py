"""Fitness that survives tuning: what the lr grid costs, and how the old and new fitness rank issue 11's candidates.

Side by side, in one process, one torch thread:
  * cost: seconds of ``search.kinds.workers.evaluate_optimizer`` for library AdamW on ``--tasks`` without a grid and
    with ``--lr-grid``, and of ``evaluate_optimizer_batch`` for ``--batch`` programs (both ways); the ratio is the
    grid's cost factor (expected ≈ the number of lrs);
  * ranking: each candidate's fitness the old way (base lr only, plain mean of ratios, a failure counting 0) and the
    new way (best lr of the grid, AdamW tuned on the same grid, geometric mean of clipped ratios), and whether the lr
    probe would let the search evaluate it at all (``programs.lr_scaling``).

Run: ``python bench/bench_fitness.py [--tasks mnist1d-mlp,digits-cnn] [--lr-grid 0.25,1,4] [--batch 4]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from programs import library, lr_scaling, parse
from search.kinds.workers import evaluate_optimizer, evaluate_optimizer_batch

# issue 11's candidates: AdamW with `1 - 0.999^t` mutated to `1 - t` (a ~30x rescaled step with weaker decay), and
# SGD with momentum whose step no longer follows lr (`lr = tan(...)`)
RESCALED_ADAMW = """
def train(w, g, m, v, lr, t):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    m_hat = m / (1.0 - power(0.9, t))
    v_hat = v / (1.0 - t)
    update = (m_hat / sqrt(v_hat) + w * 0.01) * lr
    return update, m, v
"""
FIXED_STEP_MOMENTUM = """
def train(w, g, m, v, lr):
    m = m * 0.9 + g
    lr = tan(0.05)
    update = m * lr
    return update, m, v
"""
CANDIDATES = {"adamw": library.SOURCES["adamw"], "lion": library.SOURCES["lion"],
              "momentum": library.SOURCES["momentum"], "rescaled adamw (1 - t)": RESCALED_ADAMW,
              "fixed-step momentum": FIXED_STEP_MOMENTUM}


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mnist1d-mlp,digits-cnn")
    parser.add_argument("--lr-grid", default="0.25,1,4")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks, grid = args.tasks.split(","), [float(x) for x in args.lr_grid.split(",")]
    base = {"tasks": tasks, "seed": 0}
    evaluate_optimizer({**base, "program": library.SOURCES["adamw"]})  # data loaded, as in a long-lived worker

    print(f"cost on {', '.join(tasks)} (AdamW; batch: {args.batch} library programs)")
    _, plain = timed(evaluate_optimizer, {**base, "program": library.SOURCES["adamw"]})
    _, gridded = timed(evaluate_optimizer, {**base, "program": library.SOURCES["adamw"], "lr_grid": grid})
    programs = [library.SOURCES[n] for n in library.names()[: args.batch]]
    _, batch_plain = timed(evaluate_optimizer_batch, {"requests": [{**base, "program": p} for p in programs]})
    _, batch_grid = timed(evaluate_optimizer_batch,
                          {"requests": [{**base, "program": p, "lr_grid": grid} for p in programs]})
    print(f"  one program : {plain:7.2f} s base lr, {gridded:7.2f} s grid of {len(grid)}: {gridded / plain:5.2f}x")
    print(f"  batch of {args.batch:<3d}: {batch_plain:7.2f} s base lr, {batch_grid:7.2f} s grid of {len(grid)}: "
          f"{batch_grid / batch_plain:5.2f}x")

    old_base = {t: evaluate_optimizer({**base, "tasks": [t], "program": library.SOURCES["adamw"]})["fitness"]
                for t in tasks}
    new_base = {t: evaluate_optimizer({**base, "tasks": [t], "program": library.SOURCES["adamw"],
                                       "lr_grid": grid})["fitness"] for t in tasks}
    print(f"\nfitness (AdamW = 1.0): old = base lr, plain mean; new = best of lr x {grid}, AdamW tuned the same, "
          "geometric mean of ratios clipped to [0.25, 2]")
    print(f"{'candidate':26s} {'old':>8s} {'new':>8s}  {'lr probe':8s} per-task ratios new (chosen lr)")
    for name, text in CANDIDATES.items():
        old = evaluate_optimizer({**base, "program": text, "baselines": old_base, "aggregate": "mean"})
        new = evaluate_optimizer({**base, "program": text, "baselines": new_base, "lr_grid": grid})
        verdict = lr_scaling(parse(text))
        detail = ", ".join(f"{t} {m.get('ratio', float('nan')):.2f} ({m.get('lr', float('nan')):.2g})"
                           for t, m in new["metrics"].items()) if new["status"] == "ok" else new["error"]
        print(f"{name:26s} {_fmt(old['fitness'])} {_fmt(new['fitness'])}  {'pass' if verdict else 'REJECT':8s} "
              f"{detail}", flush=True)


def _fmt(value: float | None) -> str:
    return f"{value:8.3f}" if value is not None else f"{'failed':>8s}"


if __name__ == "__main__":
    main()
