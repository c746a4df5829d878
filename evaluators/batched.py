"""Population-batched evaluation: K candidate programs trained at once on one task and seed.

``train_batch(task, programs, seed=...)`` is ``evaluators.train`` for K programs together. The K models start from the
same initial weights and see the same batches (exactly what K separate evaluations with that seed do); their
parameters are stacked into the rows of one buffer ``W[K, P]`` (laid out as ``FlatParameters`` lays out one model),
forward and backward run once for all rows (``evaluators.stacked``: batched matmuls written out for an MLP,
``torch.func.functional_call`` under ``vmap`` for other models), and the K update rules run in the batched program
interpreter (``programs.batched``) on a GPU, or each row's compiled program on its row on a CPU (``updates``). The
learning-rate schedule, the divergence checks and their messages are the one-at-a-time loop's (``evaluators.loop``):
a row that fails is reported with the step and reason the loop would give, and is dropped from the batch; the others
go on.

``evaluate_batch`` is the same over requests (program texts, ``evaluators.evaluate``'s result format), split into
batches that fit a memory bound (``max_batch``); a batch that runs out of memory is retried in halves.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from evaluators.errors import EvaluationFailed, TaskError
from evaluators.evaluate import _device
from evaluators.fit import Diverged, _nonfinite_name, check_losses, first_loss_limit
from evaluators.loop import CHECK_EVERY, EVAL_CHUNK, TRAIN_LOSS_WINDOW, FlatParameters, Setup, _synchronize, prepare, train
from evaluators.plugins import batch_problem
from evaluators.schedule import lr_schedule
from evaluators.stacked import stacked_model
from evaluators.tasks import ACCURACY, Task, get_task
from programs import Program, ProgramError, parse
from programs.batched import G, W, BatchedProgram
from programs.compile import compile as compile_program

Tensor = torch.Tensor
Row = dict[str, Any] | EvaluationFailed  # a row's metrics, or why it failed

DEFAULT_MEMORY_BYTES = 2 * 1024**3  # the default bound of one batch on the CPU (on a GPU: half its free memory)
# Validation of a batch on a CPU runs this many rows at a time (mnist1d-mlp, K = 32, 1000 validation examples:
# 1.05-1.10 ms per row in chunks of 8 against 1.28-1.55 ms for all 32 at once, whose activations are 16 MB each).
VALIDATION_ROWS = 8
REGISTERS_ESTIMATE = 10  # registers of a typical batch (library programs use 4–6, long mutants ~10)


def train_batch(
    task: Task,
    programs: Sequence[Program],
    *,
    seed: int,
    lr: float | None = None,
    device: str | torch.device = "cpu",
    cache_dir: Path | str | None = None,
    updates: str = "auto",
) -> list[Row]:
    """Train ``task`` once with each of ``programs`` (all rows at once); one entry per program, in order.

    An entry is the metrics dict of ``evaluators.train`` (plus ``batch``: the number of rows trained together;
    ``wall_time`` is the batch's time divided by that number) or the ``EvaluationFailed`` that ``train`` would have
    raised. Raises ``torch.OutOfMemoryError`` if the batch does not fit (``evaluate_batch`` then splits it).

    ``updates``: how the K update rules run — ``"grouped"`` (the batched interpreter, kernels per step independent
    of K), ``"rows"`` (each row's compiled program on its row) or ``"auto"`` (rows on a CPU, grouped elsewhere).
    """
    if len(programs) == 1 or batch_problem(task) is not None:  # a batch of one, or a plug-in model vmap cannot
        # batch (evaluators.plugins): the one-at-a-time loop
        return [_train_one(task, program, seed=seed, lr=lr, device=device, cache_dir=cache_dir) for program in programs]
    started = time.perf_counter()
    base_lr = task.base_lr if lr is None else float(lr)
    setup = prepare(task, seed, device, cache_dir)
    flat = FlatParameters(setup.model)
    schedule = lr_schedule(base_lr, task.steps, task.warmup)
    form = _updates_form(updates, flat.w.device)
    order = list(range(len(programs)))
    if form == "grouped":  # rows with the same instructions side by side: their groups are views, not gathers
        order.sort(key=lambda k: BatchedProgram.layout_key(programs[k]))
    run = _BatchRun(setup, flat, [programs[k] for k in order], schedule, form)
    seconds = run.train()
    rows: list[Row] = [None] * len(programs)  # type: ignore[list-item]
    for position, failure in run.failures.items():
        rows[order[position]] = failure
    if run.active:
        chunk = VALIDATION_ROWS if flat.w.device.type == "cpu" else None
        val_loss, accuracy = run.model.validate(run.updates.w, chunk)
        for position, k in enumerate(run.active):
            rows[order[k]] = _metrics(setup, run.losses[position], float(val_loss[position]),
                                      None if accuracy is None else float(accuracy[position]))
    share = (time.perf_counter() - started) / len(programs)
    for row in rows:
        if isinstance(row, dict):
            row.update(steps_per_s=task.steps / max(seconds, 1e-9), wall_time=share, lr=base_lr, batch=len(programs))
    return rows  # type: ignore[return-value]


UPDATES = ("auto", "grouped", "rows")


def _updates_form(updates: str, device: torch.device) -> str:
    if updates not in UPDATES:
        raise ValueError(f"updates must be one of {', '.join(UPDATES)}, got {updates!r}")
    if updates == "auto":
        return "rows" if device.type == "cpu" else "grouped"
    return updates


def _train_one(task: Task, program: Program, **options: Any) -> Row:
    try:
        metrics = train(task, lambda segments: compile_program(program, segments), **options)
    except EvaluationFailed as failure:
        return failure
    metrics["batch"] = 1
    return metrics


def _metrics(setup: Setup, losses: Tensor, val_loss: float, accuracy: float | None) -> Row:
    task = setup.task
    if not math.isfinite(val_loss):
        return EvaluationFailed(f"{_nonfinite_name(val_loss)} validation loss after step {task.steps}", task.steps)
    fitness = accuracy if task.fitness == ACCURACY else -val_loss
    window = losses[-min(TRAIN_LOSS_WINDOW, task.steps) :]
    return {"fitness": fitness, "val_loss": val_loss, "val_accuracy": accuracy, "train_loss": float(window.mean()),
            "steps": task.steps}


class _GroupedUpdates:
    """The K update rules in the batched program interpreter (``programs.batched``): one kernel per group of rows
    that share an instruction, so the kernels per step do not grow with K — the form for a GPU, where a launch costs
    more than the gathers and scatters it saves. ``w``/``g``: the stacked parameters and gradients ``[K, P]``."""

    def __init__(self, programs: list[Program], segments: tuple[int, ...], schedule: list[float], w: Tensor) -> None:
        self.segments = segments
        self.batch = BatchedProgram(programs, segments)
        self.regs = self.batch.registers_for(w)
        steps = np.arange(1, len(schedule) + 1)
        self.statics = self.batch.statics(schedule, steps, dtype=w.dtype, device=w.device).transpose(0, 1).contiguous()

    @property
    def w(self) -> Tensor:
        return self.regs[W]

    @property
    def g(self) -> Tensor:
        return self.regs[G]

    def step(self, t: int) -> None:
        self.batch.step(self.regs, self.statics[:, t - 1])

    def keep(self, rows: list[int]) -> None:
        """Go on with these rows only (positions, in order)."""
        index = torch.tensor(rows, dtype=torch.int64, device=self.regs.device)
        self.regs = self.regs.index_select(1, index)
        self.statics = self.statics.index_select(0, index)
        self.batch = BatchedProgram([self.batch.programs[k] for k in rows], self.segments)


class _RowUpdates:
    """The K update rules on a CPU: each row runs its compiled program (``programs.compile``, exactly the
    one-at-a-time step) on its own row of ``w`` and ``g``, with its ``m`` and ``v`` held apart. On a CPU a kernel
    launch costs little and a copy costs as much as the op it feeds, so the interpreter's gathers and scatters cost
    more than the launches they save: this loop takes about half the interpreter's time at K = 32 (measured on
    mutants of the library: 0.05–0.08 ms per row and step against 0.12–0.16 ms)."""

    def __init__(self, programs: list[Program], segments: tuple[int, ...], schedule: list[float], w: Tensor) -> None:
        self.schedule = schedule
        self.steps = [compile_program(program, segments) for program in programs]
        self.wg = torch.zeros((2, *w.shape), dtype=w.dtype, device=w.device)
        self.wg[0].copy_(w)
        self.m = list(torch.zeros_like(w).unbind(0))
        self.v = list(torch.zeros_like(w).unbind(0))
        self._unbind()

    def _unbind(self) -> None:
        self.rows_w, self.rows_g = list(self.wg[0].unbind(0)), list(self.wg[1].unbind(0))

    @property
    def w(self) -> Tensor:
        return self.wg[0]

    @property
    def g(self) -> Tensor:
        return self.wg[1]

    def step(self, t: int) -> None:
        lr, m, v, steps, w, g = self.schedule[t - 1], self.m, self.v, self.steps, self.rows_w, self.rows_g
        for k in range(len(steps)):
            update, m[k], v[k] = steps[k](w[k], g[k], m[k], v[k], lr, t)
            w[k].sub_(update)

    def keep(self, rows: list[int]) -> None:
        self.wg = self.wg.index_select(1, torch.tensor(rows, dtype=torch.int64, device=self.wg.device))
        self.steps, self.m, self.v = ([items[k] for k in rows] for items in (self.steps, self.m, self.v))
        self._unbind()


class _BatchRun:
    """The training steps of one batch; rows that fail are dropped (``active`` maps positions to program indices)."""

    def __init__(self, setup: Setup, flat: FlatParameters, programs: list[Program], schedule: list[float],
                 updates: str) -> None:
        self.setup, self.schedule = setup, schedule
        self.model = stacked_model(setup)
        self.active = list(range(len(programs)))
        self.failures: dict[int, EvaluationFailed] = {}
        k, device = len(programs), flat.w.device
        form = _RowUpdates if updates == "rows" else _GroupedUpdates
        self.updates = form(programs, flat.segments, schedule, flat.w.expand(k, -1))
        self.losses = torch.empty((k, len(schedule)), device=device, dtype=torch.float32)
        self.limits = np.full(k, math.inf)

    def train(self) -> float:
        setup, factor, updates = self.setup, self.setup.task.diverge_factor, self.updates
        _synchronize(self.losses.device)
        started = time.perf_counter()
        for t in range(1, len(self.schedule) + 1):
            index = setup.batches[t - 1]
            self.losses[:, t - 1] = self.model.loss_and_grad(updates.w, updates.g, setup.x_train[index],
                                                             setup.y_train[index])
            updates.step(t)
            if t == 1:
                self._first_step(factor)
            if (t % CHECK_EVERY == 0 or t == len(self.schedule)) and self.active:
                self._check(max(t - CHECK_EVERY, 0), t, factor)
            if not self.active:
                break
        _synchronize(self.losses.device)
        return time.perf_counter() - started

    def _first_step(self, factor: float) -> None:
        failed = []
        for position in range(len(self.active)):
            try:
                self.limits[position] = first_loss_limit(self.losses[position, 0], factor)
            except Diverged as failure:
                failed.append((position, EvaluationFailed(str(failure), failure.step)))
        self._drop(failed)

    def _check(self, start: int, stop: int, factor: float) -> None:
        window = self.losses[:, start:stop]
        limits = torch.as_tensor(self.limits, dtype=window.dtype, device=window.device).unsqueeze(1)
        suspects = (~torch.isfinite(window) | (window > limits)).any(dim=1).nonzero().flatten().tolist()
        failed = []
        for position in suspects:  # the loop's own check, on this row alone: the same reason and step
            try:
                check_losses(self.losses[position], start, stop, float(self.limits[position]), factor)
            except Diverged as failure:
                failed.append((position, EvaluationFailed(str(failure), failure.step)))
        self._drop(failed)

    def _drop(self, failed: list[tuple[int, EvaluationFailed]]) -> None:
        """Record the failures and go on with the other rows only (a smaller batch: fewer kernels' work)."""
        if not failed:
            return
        gone = {position for position, _ in failed}
        for position, failure in failed:
            self.failures[self.active[position]] = failure
        keep = [p for p in range(len(self.active)) if p not in gone]
        self.active = [self.active[p] for p in keep]
        if not keep:
            return
        self.updates.keep(keep)
        self.losses = self.losses.index_select(0, torch.tensor(keep, dtype=torch.int64, device=self.losses.device))
        self.limits = self.limits[keep]


def evaluate_batch(
    programs: Sequence[Program | str],
    task: Task | str,
    *,
    seed: int = 0,
    lr: float | None = None,
    device: str | torch.device = "cpu",
    cache_dir: Path | str | None = None,
    max_rows: int | None = None,
    memory_bytes: int | None = None,
) -> list[dict[str, Any]]:
    """Evaluate each program (a ``Program`` or untrusted text) on ``task``; results as ``evaluators.evaluate`` gives.

    Batches hold at most ``max_rows`` rows (None: ``max_batch(task, memory_bytes=...)``). An unparsable program gets
    its own ``"invalid request: ..."`` result; the others are evaluated.
    """
    started = time.perf_counter()
    try:
        spec = get_task(task) if isinstance(task, str) else task
        resolved = _device(device)
    except TaskError as error:
        return [{"status": "failed", "metrics": {}, "error": f"invalid request: {error}"} for _ in programs]
    results: list[dict[str, Any] | None] = [None] * len(programs)
    parsed: list[tuple[int, Program]] = []
    for k, program in enumerate(programs):
        try:
            parsed.append((k, _program(program)))
        except ProgramError as error:
            results[k] = {"status": "failed", "metrics": {}, "error": f"invalid request: {error}"}
    rows = max_rows if max_rows is not None else max_batch(spec, memory_bytes=memory_bytes, device=resolved)
    for first in range(0, len(parsed), max(1, rows)):
        chunk = parsed[first : first + max(1, rows)]
        for (k, _), row in zip(chunk, _train_splitting(spec, [p for _, p in chunk], seed, lr, resolved, cache_dir)):
            results[k] = _result(row, started)
    return results  # type: ignore[return-value]


def _program(program: Program | str) -> Program:
    if isinstance(program, Program):
        return program
    if not isinstance(program, str):
        raise ProgramError(f"a program is text, got {type(program).__name__}")
    return parse(program)


def _train_splitting(task: Task, programs: list[Program], seed: int, lr: float | None, device: torch.device,
                     cache_dir: Path | str | None) -> list[Row]:
    """``train_batch``, retried in halves when it runs out of memory (a single row out of memory fails)."""
    try:
        return train_batch(task, programs, seed=seed, lr=lr, device=device, cache_dir=cache_dir)
    except torch.OutOfMemoryError:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if len(programs) == 1:
            return [EvaluationFailed("out of memory at step 0", 0)]
    half = len(programs) // 2
    return (_train_splitting(task, programs[:half], seed, lr, device, cache_dir)
            + _train_splitting(task, programs[half:], seed, lr, device, cache_dir))


def _result(row: Row, started: float) -> dict[str, Any]:
    if isinstance(row, EvaluationFailed):
        return {"status": "failed", "metrics": {"steps": row.step, "wall_time": time.perf_counter() - started},
                "error": row.reason}
    return {"status": "ok", "metrics": row, "error": None}


def row_bytes(task: Task, registers: int = REGISTERS_ESTIMATE) -> int:
    """An estimate of the memory one row of a batch of ``task`` needs (float32): the register file, the gradient
    and parameter views, the activations of a training step (kept for backward, and their gradients) and of a
    validation chunk."""
    setup = prepare(task, 0)
    parameters = sum(p.numel() for p in setup.model.parameters())
    activations = _activation_count(setup.model, setup.x_train[setup.batches[0]])
    validation = _activation_count(setup.model, setup.x_val[:EVAL_CHUNK]) // 2  # no backward: not kept
    statics = task.steps * 16  # the per-step constants of a row
    return 4 * (parameters * (registers + 4) + 3 * activations + validation + statics)


def _activation_count(model: nn.Module, x: Tensor) -> int:
    """Entries of every module's output for input ``x`` (what a forward pass allocates, roughly)."""
    count = [0]

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            count[0] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return count[0]


def max_batch(
    task: Task | str,
    *,
    memory_bytes: int | None = None,
    device: str | torch.device = "cpu",
    limit: int = 1024,
    registers: int = REGISTERS_ESTIMATE,
) -> int:
    """The largest number of rows (at most ``limit``) whose batch of ``task`` fits in ``memory_bytes``.

    ``memory_bytes`` None: half the free memory of a CUDA device, else ``DEFAULT_MEMORY_BYTES``.
    """
    spec = get_task(task) if isinstance(task, str) else task
    if memory_bytes is None:
        memory_bytes = _default_memory(torch.device(device))
    if memory_bytes <= 0 or limit < 1:
        raise ValueError(f"memory_bytes ({memory_bytes}) and limit ({limit}) must be positive")
    return max(1, min(limit, memory_bytes // row_bytes(spec, registers)))


def _default_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return DEFAULT_MEMORY_BYTES
