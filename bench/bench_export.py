"""Step time and state memory of exported optimizers against ``torch.optim.AdamW``, on CPU.

Side by side in one run, on the same parameter set, in rounds that run every optimizer once (in a random order:
what ran just before affects allocation and caches);
each ratio is the median over rounds of the time ratio within a round, which holds up on a shared machine:

- baseline ``torch.optim.AdamW(foreach=True)`` (and ``foreach=False`` for the for-loop path);
- ``optimizer_class(library.get("adamw"))`` and ``optimizer_class(library.get("lion"))``, foreach and for-loop.

Parameter sets: ``transformer`` (a small transformer: 4 layers, d=256, 8k vocabulary; ~5.3M parameters in 52
tensors) and ``gpt2-small`` (GPT-2 small's 148 tensors, 124M parameters; slow on CPU).

Also printed: each optimizer's fraction of copy bandwidth (the bytes a step must read and write, AdamW 7 and Lion 5
per parameter entry, over its step time, against a plain copy of as many bytes timed in the same rounds; on a GPU,
``--device cuda``, fused AdamW is the anchor), and with ``--lowering`` the time to export 1,000- and 10,000-statement
programs (linear: the ratio per statement stays near 1).

Run: ``python bench/bench_export.py [--set transformer|gpt2-small] [--rounds N] [--steps K] [--threads 2]
[--device cpu|cuda] [--lowering]``.
Prints milliseconds per step and ratios against AdamW (goals: adamw <= 1.0x, lion <= 0.7x of foreach AdamW).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from programs import library
from programs.export import optimizer_class, optimizer_source
from programs.program import SIGNATURE, Program, Statement


@dataclass(frozen=True)
class ParameterSet:
    """A transformer-shaped list of parameter shapes."""

    layers: int
    width: int
    vocabulary: int
    context: int

    def shapes(self) -> list[tuple[int, ...]]:
        d = self.width
        shapes: list[tuple[int, ...]] = [(self.vocabulary, d), (self.context, d)]
        for _ in range(self.layers):
            shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
        return shapes + [(d,), (d,)]


SETS = {
    "transformer": ParameterSet(layers=4, width=256, vocabulary=8000, context=256),
    "gpt2-small": ParameterSet(layers=12, width=768, vocabulary=50257, context=1024),
}


def make_parameters(shapes: list[tuple[int, ...]], seed: int = 0, device: str = "cpu") -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter((torch.randn(shape, generator=generator) * 0.02).to(device))
        p.grad = (torch.randn(shape, generator=generator) * 1e-3).to(device)
        params.append(p)
    return params


# bytes read and written per parameter entry by one step, at the least: AdamW reads w, g, m, v and writes w, m, v
TRAFFIC = {"AdamW": 7, "adamw": 7, "lion": 5, "copy": 2}


def contenders(params: list[torch.nn.Parameter], device: str) -> dict[str, Callable[[], object]]:
    adamw, lion = optimizer_class(library.get("adamw")), optimizer_class(library.get("lion"))
    found: dict[str, torch.optim.Optimizer] = {
        "AdamW foreach (baseline)": torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, foreach=True),
        "AdamW for-loop": torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, foreach=False),
        "exported adamw foreach": adamw(params, lr=1e-3, foreach=True),
        "exported adamw for-loop": adamw(params, lr=1e-3, foreach=False),
        "exported lion foreach": lion(params, lr=1e-4, foreach=True),
        "exported lion for-loop": lion(params, lr=1e-4, foreach=False),
    }
    if device == "cuda":
        found["AdamW fused"] = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, fused=True)
    steps = {name: optimizer.step for name, optimizer in found.items()}
    source = torch.zeros(sum(p.numel() for p in params), device=device)
    target = torch.empty_like(source)
    steps["copy (bandwidth)"] = lambda: target.copy_(source)
    return steps


def time_steps(step: Callable[[], object], steps: int, device: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of the process) per step."""
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def long_program(length: int) -> Program:
    """A valid ``length``-statement program (lazy sums, in-place candidates, scalars), as the tests build it."""
    cycle = [("a", "add", ("a", "g")), ("b", "mul", ("a", 0.5)), ("s", "mul", ("s", 1.0001)),
             ("a", "sub", ("a", "b")), ("c", "interp", ("a", "m", 0.9)), ("a", "mul", ("c", "s"))]
    statements = [Statement("a", "mul", ("g", 0.1)), Statement("s", "add", ("lr", 0.0))]
    while len(statements) < length - 2:
        statements += [Statement(*item) for item in cycle]
    statements = statements[:length - 2] + [Statement("m", "interp", ("g", "m", 0.9)),
                                            Statement("update", "mul", ("a", "lr"))]
    return Program(tuple(statements), ("update", "m", "v"), SIGNATURE)


def lowering_times() -> None:
    """Seconds to export programs of 1,000 and 10,000 statements, and the ratio of their times per statement."""
    seconds = {}
    for length in (1_000, 10_000):
        program = long_program(length)
        start = time.perf_counter()
        optimizer_source(program, "Long")
        seconds[length] = time.perf_counter() - start
    per_statement = (seconds[10_000] / 10_000) / (seconds[1_000] / 1_000)
    print(f"export of 1,000 statements {seconds[1_000]:.2f} s, of 10,000 statements {seconds[10_000]:.2f} s: "
          f"{per_statement:.2f}x the time per statement (1.00x is linear; quadratic would be 10x)")


def paired_ratios(times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    """Median over rounds of each contender's time over the baseline's time in the same round (robust to load
    that drifts between rounds on a shared machine)."""
    return {name: statistics.median(t / b for t, b in zip(values, times[baseline])) for name, values in times.items()}


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for k, v in s.items()
               if isinstance(v, torch.Tensor) and k != "step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), default="transformer")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=1, help="steps per timed round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the order of the optimizers in each round")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--lowering", action="store_true", help="also time exporting long programs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.lowering:
        lowering_times()
    shapes = SETS[args.set].shapes()
    # shared parameters: each optimizer keeps its own state; values drift, timing does not
    params = make_parameters(shapes, device=args.device)
    optimizers = contenders(params, args.device)
    for step in optimizers.values():  # warm-up, and create the state
        step()
    names = list(optimizers)
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(args.seed)
    for _ in range(args.rounds):
        order = rng.sample(names, len(names))  # a fresh order each round: no optimizer always follows the same one
        for name in order:
            wall, cpu = time_steps(optimizers[name], args.steps, args.device)
            walls[name].append(wall)
            cpus[name].append(cpu)
    count = sum(p.numel() for p in params)
    print(f"parameter set {args.set}: {count / 1e6:.2f}M parameters in {len(shapes)} tensors, {args.threads} threads, "
          f"{args.rounds} rounds x {args.steps} steps, on {args.device}")
    print("ms per step (median), then the median over rounds of the time ratio to AdamW foreach and to AdamW for-loop "
          "in the same round, in wall-clock and in CPU time (all threads); state bytes relative to AdamW")
    ratios = {(clock, base): paired_ratios(times, base) for clock, times in (("wall", walls), ("cpu", cpus))
              for base in ("AdamW foreach (baseline)", "AdamW for-loop")}
    state_base = state_bytes(optimizers["AdamW foreach (baseline)"].__self__)  # type: ignore[attr-defined]
    copy_time = statistics.median(walls["copy (bandwidth)"])  # a copy reads and writes each entry once
    print(f"{'optimizer':26s} {'ms':>7s} {'wall/foreach':>12s} {'wall/loop':>9s} {'cpu/foreach':>11s} "
          f"{'cpu/loop':>8s} {'state':>6s} {'of copy bandwidth':>17s}")
    for name in names:
        cells = [f"{ratios[key][name]:.3f}x" for key in ratios]
        owner = getattr(optimizers[name], "__self__", None)
        memory = f"{state_bytes(owner) / state_base:5.2f}x" if isinstance(owner, torch.optim.Optimizer) else "-"
        traffic = next(v for k, v in TRAFFIC.items() if k in name)
        fraction = (traffic / 2) * copy_time / statistics.median(walls[name])
        print(f"{name:26s} {statistics.median(walls[name]) * 1e3:7.2f} {cells[0]:>12s} {cells[1]:>9s} "
              f"{cells[2]:>11s} {cells[3]:>8s} {memory:>6s} {fraction:16.0%}")


if __name__ == "__main__":
    main()
