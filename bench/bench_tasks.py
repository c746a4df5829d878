"""Seconds per proxy-task evaluation on one CPU thread, and our loop's step time against a plain torch loop.

    python bench/bench_tasks.py                       # the base tasks and their @10x variants
    python bench/bench_tasks.py mnist1d-mlp@100x ...  # any tasks by name
    python bench/bench_tasks.py --baseline OLD [TASK ...]   # this tree's steps/s against another checkout's

``--baseline OLD`` (a checkout of an earlier commit, e.g. ``git worktree add /tmp/old d8e02ea``) measures library
AdamW's training steps per second of ``evaluators.evaluate`` in this tree and in OLD, each in its own process,
alternately ``COMPARE_REPEATS`` times, and prints the medians and their ratio (> 1: this tree is faster), the ratio
of the CPU seconds of one whole evaluation (steadier than wall time on a shared machine), and the two fitnesses
(equal when the loop changed nothing).

For each task: one full ``evaluators.evaluate`` of library AdamW (data cached beforehand, as in a worker), then the
training steps of our loop (flat buffers + compiled AdamW program + divergence checks) against a plain loop on the
same model, data and batches with ``torch.optim.AdamW`` (same betas/eps/weight decay, same lr schedule; both its
for-loop implementation, torch's CPU default, and ``foreach=True``), run alternately ``REPEATS`` times; medians are
reported. Ratio > 1 means our loop is slower per step.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import evaluators
from evaluators.loop import prepare
from programs import library

REPEATS = 3
COMPARE_REPEATS = 5  # --baseline: processes per tree
DEFAULT_TASKS = [name for name in evaluators.TASKS if not name.endswith("@100x")]


def plain_adamw_steps_per_s(task: evaluators.Task, foreach: bool, seed: int = 0) -> float:
    """Steps per second of a textbook torch.optim.AdamW loop on the task's model and batches."""
    setup = prepare(task, seed)
    optimizer = torch.optim.AdamW(setup.model.parameters(), lr=task.base_lr, weight_decay=0.01, foreach=foreach)
    schedule = evaluators.lr_schedule(task.base_lr, task.steps, task.warmup)
    started = time.perf_counter()
    for t, lr in enumerate(schedule, start=1):
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = setup.batches[t - 1]
        optimizer.zero_grad()
        setup.loss(setup.model(setup.x_train[index]), setup.y_train[index]).backward()
        optimizer.step()
    return task.steps / (time.perf_counter() - started)


def bench(name: str, cache_dir: str) -> dict[str, float]:
    task = evaluators.get_task(name)
    request = {"program": library.SOURCES["adamw"], "task": name, "seed": 0, "cache_dir": cache_dir}
    ours, plain, foreach, wall = [], [], [], []
    for _ in range(REPEATS):
        result = evaluators.evaluate(request)
        assert result["status"] == "ok", result["error"]
        wall.append(result["metrics"]["wall_time"])
        ours.append(result["metrics"]["steps_per_s"])
        plain.append(plain_adamw_steps_per_s(task, foreach=False))
        foreach.append(plain_adamw_steps_per_s(task, foreach=True))
    rate = statistics.median(ours)
    return {
        "seconds": statistics.median(wall),
        "ours": rate,
        # our step time / the plain loop's step time (for-loop AdamW, torch's CPU default; and foreach AdamW)
        "ratio": statistics.median(plain) / rate,
        "ratio_foreach": statistics.median(foreach) / rate,
        "fitness": result["metrics"]["fitness"],
    }


ROOT = Path(__file__).resolve().parents[1]
_MEASURE = """
import json, sys, time, torch, evaluators
from programs import library
torch.set_num_threads(1)
cache, names = sys.argv[1], sys.argv[2:]
out = {}
for name in names:
    evaluators.data.load(evaluators.get_task(name).dataset, cache)
    request = {"program": library.SOURCES["adamw"], "task": name, "seed": 0, "cache_dir": cache}
    evaluators.evaluate(request)  # warm-up
    cpu = time.process_time()
    result = evaluators.evaluate(request)
    assert result["status"] == "ok", result["error"]
    out[name] = [result["metrics"]["steps_per_s"], result["metrics"]["fitness"], time.process_time() - cpu]
print(json.dumps(out))
"""


def measure_tree(tree: Path, names: list[str], cache_dir: str) -> dict[str, list[float]]:
    """Steps/s and fitness of library AdamW per task, measured by the code of ``tree`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", _MEASURE, cache_dir, *names], capture_output=True, text=True,
                         check=True, cwd=tree, env=env)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(baseline: Path, names: list[str]) -> None:
    runs: dict[str, list[dict[str, list[float]]]] = {"new": [], "old": []}
    with tempfile.TemporaryDirectory() as cache_dir:
        for _ in range(COMPARE_REPEATS):
            runs["new"].append(measure_tree(ROOT, names, cache_dir))
            runs["old"].append(measure_tree(baseline, names, cache_dir))
    print(f"training steps/s of library AdamW, this tree vs {baseline} (medians of {COMPARE_REPEATS}, one thread each)")
    print(f"{'task':26s} {'steps/s new':>12s} {'steps/s old':>12s} {'new/old':>8s} {'CPU s/eval new/old':>19s} "
          f"{'fitness new':>12s} {'old':>8s}")  # fmt: skip
    for name in names:
        new, old = (statistics.median(r[name][0] for r in runs[k]) for k in ("new", "old"))
        cpu_new, cpu_old = (statistics.median(r[name][2] for r in runs[k]) for k in ("new", "old"))
        fitness = (runs["new"][0][name][1], runs["old"][0][name][1])
        print(f"{name:26s} {new:12.0f} {old:12.0f} {new / old:7.3f}x {cpu_new / cpu_old:18.3f}x "
              f"{fitness[0]:12.4f} {fitness[1]:8.4f}", flush=True)  # fmt: skip


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache_dir:
        for dataset in {evaluators.get_task(name).dataset for name in names}:
            evaluators.data.load(dataset, cache_dir)  # generate once, as a long-lived worker would
        print("step time ratio = our loop's step time / a plain torch.optim.AdamW loop's (for-loop | foreach)")
        columns = ("s/eval", "steps/s ours", "ratio for-loop", "ratio foreach", "fitness")
        print(f"{'task':26s} " + " ".join(f"{c:>14s}" for c in columns))
        for name in names:
            row = bench(name, cache_dir)
            print(
                f"{name:26s} {row['seconds']:14.2f} {row['ours']:14.0f} {row['ratio']:13.2f}x "
                f"{row['ratio_foreach']:13.2f}x {row['fitness']:14.4f}",
                flush=True,
            )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--baseline"]:
        if len(arguments) < 2 or not (Path(arguments[1]) / "evaluators").is_dir():
            print("--baseline needs a checkout of autodisco (a folder with evaluators/)", file=sys.stderr)
            sys.exit(2)
        compare(Path(arguments[1]).resolve(), arguments[2:] or DEFAULT_TASKS)
    else:
        main(arguments or DEFAULT_TASKS)
