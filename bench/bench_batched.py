"""Evaluations/s of population-batched evaluation against one-at-a-time evaluation, on one CPU thread or one GPU.

    python bench/bench_batched.py                                   # mnist1d-mlp, K = 1 8 32 128 512, 50 steps
    python bench/bench_batched.py --tasks mnist1d-mlp digits-cnn modadd-transformer quadratic --ks 1 8 32
    python bench/bench_batched.py --steps 0                         # each task's full budget
    python bench/bench_batched.py --search 64 --search-batch 32     # the search end to end, --batch 32 vs without
    python bench/bench_batched.py --baseline /tmp/base              # also the batched mode of another checkout
    python bench/bench_batched.py --device cuda --ks 1 32 128 512 1024 --single 8   # on the GPU

The programs are a real population's: library optimizers and a chain of seeded mutants of them (each child mutates a
random earlier member), all distinct, the same list for both modes. For each (task, K), in fresh processes run side by
side: batched — ``evaluators.train_batch`` on the K programs; one at a time — ``evaluators.evaluate_program`` on the
``min(K, --single)`` of them evenly spread over the list (the same mix of failing mutants). Both count failed evaluations
(diverging mutants) as evaluations, as the search does. ``--steps N`` shortens every task to N steps (0: the task's
own), which scales both modes' time per evaluation alike. Peak memory is the process's peak RSS (data, model and
torch included). Each mode runs ``--repeats`` times, alternated; the median run of each is printed: evaluations/s of
each and their ratio (> 1: batching is faster), and the ratio of the medians of evaluations per CPU-second of the
process (``cpu ratio``: on a machine shared with other work, wall time also counts the time others hold the CPU).

``--device cuda`` runs both modes on the GPU (the CUDA context and the BLAS handle are made before the clock starts;
peak memory is then the device's, ``torch.cuda.max_memory_allocated``).

``--baseline PATH``: a checkout of the project to compare with (e.g. ``git archive main | tar -x -C /tmp/base``);
its batched mode runs as a third mode, alternated with the other two (its own ``bench/bench_batched.py --one``,
with ``PATH`` first on the import path), and its figures are printed next to this code's: evaluations/s, the ratio
to this code's one-at-a-time loop and the cpu ratio.

``--search N``: ``autodisco search optimizer`` end to end (one worker, one thread, same seed, N evaluations of the
first task at its full budget), with ``--batch K`` and without, run one after the other; evaluations/s counts the
whole command (start-up, the AdamW baseline and the search).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def population(size: int, seed: int) -> list:
    """``size`` distinct programs: the library, then mutants of random earlier members (seeded)."""
    from programs import library
    from programs.mutation import mutate

    rng = np.random.default_rng(seed)
    members = [library.get(name) for name in library.names()]
    seen = {p.to_text() for p in members}
    while len(members) < size:
        child = mutate(members[int(rng.integers(len(members)))], rng)
        if child.to_text() not in seen:
            seen.add(child.to_text())
            members.append(child)
    return members[:size]


def measure(task_name: str, k: int, mode: str, steps: int, single: int, seed: int,
            device: str = "cpu") -> dict[str, float]:
    """One measurement in this process: evaluations/s and peak RSS (on a GPU: the peak of the device's memory)."""
    import torch

    from evaluators import EvaluationFailed, evaluate_program, get_task, prepare
    from evaluators.batched import train_batch

    torch.set_num_threads(1)
    task = get_task(task_name)
    if steps:
        task = replace(task, steps=steps, warmup=min(task.warmup, steps // 10))
    programs = population(k, seed)
    if mode == "single":  # an even sample of the same population: the same mix of failures
        programs = [programs[i] for i in np.linspace(0, k - 1, min(k, single)).round().astype(int)]
    prepare(task, 0, device)  # the data pool cached, as in a worker
    cuda = device.startswith("cuda")
    if cuda:  # the context and the BLAS handle made before the clock starts, as in a worker that has run before
        torch.ones((8, 8), device=device).matmul(torch.ones((8, 8), device=device))
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "batched":
        rows = train_batch(task, programs, seed=0, device=device)
        failed = sum(isinstance(row, EvaluationFailed) for row in rows)
    else:
        failed = 0
        for program in programs:
            try:
                evaluate_program(program, task, seed=0, device=device)
            except EvaluationFailed:
                failed += 1
    if cuda:
        torch.cuda.synchronize(device)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"rate": len(programs) / seconds, "cpu_rate": len(programs) / cpu_seconds, "failed": failed / len(programs),
            "peak_mb": peak}


ROOT = Path(__file__).resolve().parents[1]


def run_one(args: argparse.Namespace, task: str, k: int, mode: str, root: Path = ROOT) -> dict[str, float]:
    """One measurement in a fresh process, with the code of the checkout ``root`` (first on the import path)."""
    command = [sys.executable, str(root / "bench" / "bench_batched.py"), "--one", task, str(k), mode, "--steps",
               str(args.steps), "--single", str(args.single), "--seed", str(args.seed)]
    command += ["--device", args.device] if args.device != "cpu" else []  # a baseline checkout may not know it
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=root, env=environment).stdout
    return json.loads(output.strip().splitlines()[-1])


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run whose evaluations/s is the median's (the figures printed together come from one run)."""
    middle = statistics.median(r["rate"] for r in runs)
    return min(runs, key=lambda r: abs(r["rate"] - middle))


def cpu_ratio(runs: list[dict[str, float]], singles: list[dict[str, float]]) -> float:
    return statistics.median(r["cpu_rate"] for r in runs) / statistics.median(r["cpu_rate"] for r in singles)


def search_rate(task: str, evaluations: int, batch: int | None, folder: str) -> float:
    """Evaluations/s of one ``autodisco search optimizer`` run (the whole command)."""
    command = [sys.executable, "-m", "search.cli._main", "search", "optimizer", "--run", f"{folder}/b{batch}",
               "--task", task, "--evaluations", str(evaluations), "--workers", "1", "--threads", "1", "--seed", "0",
               "--quiet"] + ([] if batch is None else ["--batch", str(batch)])
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return evaluations / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["mnist1d-mlp"])
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 8, 32, 128, 512])
    parser.add_argument("--steps", type=int, default=50, help="steps per evaluation (0: the task's own)")
    parser.add_argument("--single", type=int, default=32, help="one-at-a-time evaluations timed per task")
    parser.add_argument("--seed", type=int, default=0, help="seed of the population's mutations")
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of each mode (medians are shown)")
    parser.add_argument("--baseline", metavar="PATH", help="a checkout whose batched mode runs alongside")
    parser.add_argument("--search", type=int, default=0, metavar="N", help="end-to-end search with N evaluations")
    parser.add_argument("--search-batch", type=int, default=32, metavar="K")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda[:N]: both modes train there (peak memory: "
                                                         "the device's)")
    parser.add_argument("--one", nargs=3, metavar=("TASK", "K", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        task, k, mode = args.one
        print(json.dumps(measure(task, int(k), mode, args.steps, args.single, args.seed, args.device)))
        return
    if args.search:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            alone = search_rate(args.tasks[0], args.search, None, folder)
            batched = search_rate(args.tasks[0], args.search, args.search_batch, folder)
        print(f"search optimizer on {args.tasks[0]}, {args.search} evaluations: --batch {args.search_batch} "
              f"{batched:.3f} ev/s, without {alone:.3f} ev/s, ratio {batched / alone:.2f}x")
        return
    baseline = Path(args.baseline).resolve() if args.baseline else None
    if baseline is not None and not (baseline / "bench" / "bench_batched.py").is_file():
        parser.error(f"--baseline {args.baseline}: no bench/bench_batched.py there (give a checkout of the project)")
    extra = f" {'base ev/s':>10} {'base ratio':>10} {'base cpu':>9}" if baseline else ""
    print(f"{'task':<22} {'K':>4} {'batched ev/s':>13} {'single ev/s':>12} {'ratio':>7} {'cpu ratio':>9} "
          f"{'failed':>7} {'peak MB b/s':>13}{extra}")
    for task in args.tasks:
        for k in args.ks:
            singles, batches, bases = [], [], []
            for _ in range(args.repeats):  # alternated, medians: the machine's load drifts between runs
                singles.append(run_one(args, task, k, "single"))
                batches.append(run_one(args, task, k, "batched"))
                if baseline is not None:
                    bases.append(run_one(args, task, k, "batched", baseline))
            single, batched = median_run(singles), median_run(batches)
            line = (f"{task:<22} {k:>4} {batched['rate']:>13.2f} {single['rate']:>12.2f} "
                    f"{batched['rate'] / single['rate']:>6.2f}x {cpu_ratio(batches, singles):>8.2f}x "
                    f"{batched['failed']:>7.0%} {batched['peak_mb']:>6.0f}/{single['peak_mb']:<6.0f}")
            if baseline is not None:
                base = median_run(bases)
                line += (f" {base['rate']:>10.2f} {base['rate'] / single['rate']:>9.2f}x "
                         f"{cpu_ratio(bases, singles):>8.2f}x")
            print(line, flush=True)


if __name__ == "__main__":
    main()
