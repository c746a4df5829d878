"""DARTS search cost: time per search epoch and peak memory, second order against first order (the baseline).

Each order runs in a fresh process (peak memory is a per-process high-water mark) on the same small config and
made-up data; the figures are the last epoch's wall time (the first pays one-off warm-up) and the rise of the peak
resident set (CPU) or of ``torch.cuda.max_memory_allocated`` (CUDA) during the search.

    python bench/bench_darts.py            # CPU, one thread
    python bench/bench_darts.py cuda       # on a GPU
    python bench/bench_darts.py --baseline OLD [cuda]   # this tree's epoch time against another checkout's

``--baseline OLD`` (a checkout of an earlier commit, e.g. ``git worktree add /tmp/old d8e02ea``) runs the first-order
search in this tree and in OLD, each in a fresh process, alternately ``REPEATS`` times, and prints the median
seconds per epoch and their ratio, and whether the two searches ended with the same α (the loop changed nothing).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LAYERS, C, SIZE, N, BATCH, EPOCHS = 5, 8, 16, 128, 32, 2
REPEATS = 3
ROOT = Path(__file__).resolve().parents[1]


def run_one(order: int, device: str) -> dict[str, float]:
    """One search in this process; returns seconds per epoch and the peak memory rise in MiB."""
    import torch

    from nas import ArchitectConfig, DartsConfig, SupernetConfig, search

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2 * N, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (2 * N,), generator=g)
    config = DartsConfig(
        net=SupernetConfig(layers=LAYERS, C=C), arch=ArchitectConfig(order=order), epochs=EPOCHS, batch_size=BATCH
    )
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.max_memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started, cpu_started = time.perf_counter(), time.process_time()
    result = search(config, (x[:N], y[:N]), (x[N:], y[N:]), device=device)
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KiB on Linux
    return {
        "alpha": [result.history[-1].alpha_normal, result.history[-1].alpha_reduce],
        "epoch_seconds": result.history[-1].seconds,
        "cpu_seconds_per_epoch": cpu / EPOCHS,
        "total_seconds": total,
        "peak_mib": peak,
    }


def run_in(tree: Path, order: int, device: str) -> dict:
    """``run_one`` in a fresh process importing the code of ``tree`` (this file's ``run_one`` either way)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import bench_darts; "
        f"print(json.dumps(bench_darts.run_one({order}, {device!r})))"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(baseline: Path, device: str) -> None:
    runs: dict[str, list[dict]] = {"new": [], "old": []}
    for _ in range(REPEATS):
        runs["new"].append(run_in(ROOT, 1, device))
        runs["old"].append(run_in(baseline, 1, device))
    new, old = (statistics.median(r["epoch_seconds"] for r in runs[k]) for k in ("new", "old"))
    same = runs["new"][0]["alpha"] == runs["old"][0]["alpha"]
    print(f"DARTS first-order epoch, {LAYERS} cells, C={C}, {SIZE}x{SIZE} inputs, batch {BATCH}, {device}: this tree "
          f"{new:.3f} s, {baseline} {old:.3f} s (medians of {REPEATS}); new/old time x{new / old:.3f}; "
          f"same final alpha: {same}")


def main(device: str) -> None:
    figures = {order: run_in(ROOT, order, device) for order in (1, 2)}
    steps = N // BATCH
    print(f"DARTS search, {LAYERS} cells, C={C}, {SIZE}x{SIZE} inputs, batch {BATCH}, {steps} steps/epoch, {device}")
    print(f"{'order':>6} {'s/epoch (wall, last)':>21} {'CPU s/epoch (mean)':>19} {'peak MiB':>9}")
    for order, f in figures.items():
        print(f"{order:>6} {f['epoch_seconds']:>21.2f} {f['cpu_seconds_per_epoch']:>19.2f} {f['peak_mib']:>9.1f}")
    first, second = figures[1], figures[2]
    print(
        f"ratio 2nd/1st: wall time x{second['epoch_seconds'] / first['epoch_seconds']:.2f}, "
        f"CPU time x{second['cpu_seconds_per_epoch'] / first['cpu_seconds_per_epoch']:.2f}, "
        f"peak memory x{second['peak_mib'] / max(first['peak_mib'], 1e-9):.2f}"
    )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--baseline"]:
        if len(arguments) < 2 or not (Path(arguments[1]) / "nas").is_dir():
            print("--baseline needs a checkout of autodisco (a folder with nas/)", file=sys.stderr)
            sys.exit(2)
        compare(Path(arguments[1]).resolve(), arguments[2] if len(arguments) > 2 else "cpu")
    else:
        main(arguments[0] if arguments else "cpu")
