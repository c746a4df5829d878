"""A batched program interpreter: one optimizer step of K *different* programs on stacked flat buffers ``[K, P]``.

Row ``k`` of the batch runs ``programs[k]`` exactly as ``programs.compile`` runs it on one flat buffer (same levels,
same primitives, same special cases), but the K programs are executed together, one *instruction position* at a
time: at position ``i`` the rows whose i-th live tensor statement calls the same primitive on arguments of the same
levels form a group, and the group is computed by one call of the primitive on the gathered rows (gather → op →
scatter; rows that are contiguous and read one register are a view, not a gather). The number of kernels per step is
bounded by the number of distinct (primitive, levels) pairs per position, never by K (``groups_per_step``). Callers
that order their rows by ``BatchedProgram.layout_key`` get contiguous groups for programs that share instructions.

Values live in a register file ``regs[n_registers, K, P]``: registers 0–3 hold ``w, g, m, v``; the other values of a
row get registers by linear scan over their live ranges (``w`` and ``g`` are never overwritten by a program, even one
that reassigns them). Per-tensor scalars (``norm``, ``dot``, ``cosine_sim``: level
``SEGMENT``) and per-row scalars (``global_norm``: ``GLOBAL``) are kept spread over the P entries of their row, as
``programs.compile`` spreads per-tensor scalars. Values that depend only on ``lr``, ``t`` and constants (levels
``CONSTANT``/``STATIC``) do not depend on the buffers, so they are computed for every step of a run at once in
float64 (``statics``) and read by the tensor statements as per-row float32 constants ``[K, 1]`` — the cast the
compiled program does when it hands a Python float to a float32 kernel.

Numerics: each row equals ``programs.compile`` of its program up to float32 rounding of the constants' side
computations (a float64 sub-expression of a constant there may be float32 here) and the summation order of
reductions; the tests state the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch

from programs.compile import (
    _REDUCED_LEVEL, SEGMENT, STATIC, TENSOR, _check_segments, _clip_scale, _live_statements,
    value_levels,
)
from programs.primitives import EPS, PRIMITIVES
from programs.program import Program
from programs.torch_ops import NumpyScalarOps, TorchScalarOps

W, G, M, V = 0, 1, 2, 3  # registers of the inputs
_FIXED = {"w": W, "g": G, "m": M, "v": V}
Tensor = torch.Tensor


@dataclass(frozen=True)
class _Arg:
    """Where an argument comes from: a register (``static=False``) or a column of the step's statics."""

    static: bool
    index: int


@dataclass(frozen=True)
class _Instruction:
    key: tuple[str, tuple[int, ...]]  # (primitive, argument levels): rows with equal keys share one kernel
    args: tuple[_Arg, ...]
    target: int


class _RowPlan:
    """One program resolved for the batch: its static statements, its tensor instructions, its output registers.

    Tensor values get registers by linear scan over their live ranges (a register is reused once its value is read
    for the last time); ``w`` and ``g`` keep registers 0 and 1, and the returned ``m``/``v`` go to registers 2/3
    where those are free, so that the common program needs no copy at the end of a step.
    """

    def __init__(self, program: Program) -> None:
        levels = value_levels(program)
        live = _live_statements(program)
        self.static_steps: list[tuple[str, tuple[Any, ...], int]] = []  # (fn, args, column); args: (True, column)
        self.static_levels: list[int] = []
        current: dict[str, tuple[bool, int]] = {name: (False, reg) for name, reg in _FIXED.items()}  # value ids
        for name in ("lr", "t"):
            current[name] = (True, self._new_static(name, None))
        pending: list[tuple[tuple[str, tuple[int, ...]], list[tuple[bool, int]], int]] = []
        n_values = len(_FIXED)
        for index, (statement, level) in enumerate(zip(program.statements, levels)):
            if index not in live:
                continue
            args = [current[a] if isinstance(a, str) else (True, self._new_static(None, float(a)))
                    for a in statement.args]
            if level.result <= STATIC:
                column = self._column_count()
                self.static_steps.append((statement.fn, tuple(args), column))
                current[statement.target] = (True, column)
                continue
            current[statement.target] = (False, n_values)
            pending.append(((statement.fn, level.args), args, n_values))
            n_values += 1
        outputs = [current[name][1] for name in program.outputs]  # outputs are tensors: value ids
        self._allocate(pending, outputs)

    def _allocate(self, pending: list[tuple[tuple[str, tuple[int, ...]], list[tuple[bool, int]], int]],
                  outputs: list[int]) -> None:
        last_use: dict[int, float] = {}
        for position, (_, args, _) in enumerate(pending):
            for static, value in args:
                if not static:
                    last_use[value] = position
        for value in outputs:
            last_use[value] = float("inf")
        register = {value: value for value in _FIXED.values()}  # the inputs w g m v are values 0-3 in registers 0-3
        free = {reg for reg in (M, V) if reg not in last_use}
        prefer = {outputs[1]: M, outputs[2]: V}
        self.n_registers = len(_FIXED)
        self.instructions: list[_Instruction] = []
        for position, (key, args, value) in enumerate(pending):
            sources = tuple(_Arg(static, index if static else register[index]) for static, index in args)
            for static, index in args:
                if not static and last_use[index] == position and register[index] not in (W, G):
                    free.add(register[index])
            target = self._pick(free, prefer.get(value))
            register[value] = target
            if value not in last_use:
                free.add(target)
            self.instructions.append(_Instruction(key, sources, target))
        self.outputs = tuple(register[value] for value in outputs)

    def _pick(self, free: set[int], preferred: int | None) -> int:
        if preferred in free:
            free.discard(preferred)
            return preferred
        others = [reg for reg in free if reg not in (M, V)] or sorted(free)
        if others:
            reg = min(others)
            free.discard(reg)
            return reg
        self.n_registers += 1
        return self.n_registers - 1

    def _column_count(self) -> int:
        self.static_levels.append(STATIC)
        return len(self.static_levels) - 1

    def _new_static(self, name: str | None, constant: float | None) -> int:
        column = self._column_count()
        self.static_steps.append(("" if name is None else name, (constant,), column))
        return column

    def statics(self, lr: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Every static column over the steps: ``[T, columns]`` float64 (lr, t: ``[T]``)."""
        values: list[Any] = []
        with np.errstate(all="ignore"):
            for fn, args, column in self.static_steps:
                assert column == len(values)
                if fn == "lr":
                    values.append(lr)
                elif fn == "t":
                    values.append(t)
                elif fn == "":
                    values.append(np.float64(args[0]))
                else:
                    impl = PRIMITIVES[fn].impl
                    values.append(np.float64(impl(NumpyScalarOps, *(values[i] for _, i in args))))
        steps = len(lr)
        table = np.empty((steps, len(values)), dtype=np.float64)
        for column, value in enumerate(values):
            table[:, column] = value
        return table


class BatchedSegments:
    """Segment sums of stacked flat buffers ``[k, P]`` made of parameter tensors laid end to end (per row)."""

    def __init__(self, sizes: tuple[int, ...], device: torch.device) -> None:
        self.single = len(sizes) == 1
        lengths = torch.tensor(sizes, dtype=torch.int64)
        self.lengths = lengths.to(device)
        self.ids = torch.repeat_interleave(torch.arange(len(sizes)), lengths).to(device)
        self.starts = (torch.cumsum(lengths, 0) - lengths).to(device)

    def sum_tensor(self, x: Tensor) -> Tensor:
        """Each segment's sum spread over its entries (``[k, 1]`` for a single segment)."""
        if self.single:
            return x.sum(dim=1, keepdim=True)
        lengths = self.lengths.expand(x.shape[0], -1)
        return torch.segment_reduce(x, "sum", lengths=lengths, axis=1)[:, self.ids]

    @staticmethod
    def sum_all(x: Tensor) -> Tensor:
        return x.sum(dim=1, keepdim=True)

    def sum_segments(self, x: Tensor) -> Tensor:
        """The sum over segments of a per-segment value spread over its entries: one term per segment."""
        if self.single:
            return x[:, :1]
        return x[:, self.starts].sum(dim=1, keepdim=True)


def _identity(index: BatchedSegments, x: Tensor) -> Tensor:
    return x


def _sum_tensor(level: int) -> Callable[[BatchedSegments, Tensor], Tensor]:
    return BatchedSegments.sum_tensor if level == TENSOR else _identity


def _sum_global(level: int) -> Callable[[BatchedSegments, Tensor], Tensor]:
    if level == TENSOR:
        return lambda index, x: index.sum_all(x)
    return BatchedSegments.sum_segments if level == SEGMENT else _identity


def _reduction(fn: str, levels: tuple[int, ...]) -> Callable[..., Tensor]:
    """``programs.compile._reduction`` over rows: the same formulas, each sum per row and per segment."""
    if fn == "norm":
        s = _sum_tensor(levels[0])
        return lambda index, x: torch.sqrt(s(index, x * x))
    if fn == "global_norm":
        s = _sum_global(levels[0])
        return lambda index, x: torch.sqrt(s(index, x * x))
    if fn == "dot":
        s = _sum_tensor(max(levels))
        return lambda index, x, y: s(index, x * y)
    if fn == "cosine_sim":
        sx, sy, sxy = _sum_tensor(levels[0]), _sum_tensor(levels[1]), _sum_tensor(max(levels))
        return lambda index, x, y: sxy(index, x * y) / (torch.sqrt(sx(index, x * x)) * torch.sqrt(sy(index, y * y))
                                                       + EPS)
    assert fn == "clip_by_global_norm", fn
    s = _sum_global(levels[0])
    return lambda index, x, c: x * _clip_scale(torch.sqrt(s(index, x * x)), c)


def _kernel(fn: str, levels: tuple[int, ...]) -> Callable[..., Tensor]:
    """The function computing ``fn`` on arguments of ``levels``: ``(index, *args)`` (as ``CompiledProgram``)."""
    if TENSOR in levels and fn in _REDUCED_LEVEL:
        return _reduction(fn, levels)
    if fn == "interp" and levels[0] == levels[1] == TENSOR and levels[2] <= STATIC:
        return lambda index, x, y, a: torch.lerp(x, y, a)  # (1 - a) x + a y in one kernel, as compiled
    impl = partial(PRIMITIVES[fn].impl, TorchScalarOps)
    return lambda index, *args: impl(*args)


class _Source:
    """Where one argument (or the target) of a group's rows lives, and how to gather (scatter) it.

    The register file is ``regs[R, K, P]``; ``flat`` is its view ``[R * K, P]``. Rows that read one register over a
    contiguous range of rows are a view (no copy); otherwise rows are gathered with one ``index_select``.
    """

    def __init__(self, static: bool, indices: list[int], rows: list[int], device: torch.device) -> None:
        self.static = static
        self.uniform = len(set(indices)) == 1
        self.first = indices[0]
        self.span = (rows[0], rows[-1] + 1) if rows == list(range(rows[0], rows[-1] + 1)) else None
        self.rows = torch.tensor(rows, dtype=torch.int64, device=device)
        self.indices = torch.tensor(indices, dtype=torch.int64, device=device)
        self.flat: Tensor | None = None  # indices * K + rows, set by _Group once K is known

    def gather(self, regs: Tensor, flat: Tensor, statics: Tensor) -> Tensor:
        if self.static:  # statics: [K, columns]
            if self.uniform and self.span is not None:
                return statics[self.span[0] : self.span[1], self.first : self.first + 1]
            return statics[self.rows, self.indices].unsqueeze(1)
        if self.uniform and self.span is not None:
            return regs[self.first, self.span[0] : self.span[1]]
        return flat.index_select(0, self.flat)

    def scatter(self, regs: Tensor, flat: Tensor, value: Tensor) -> None:
        if self.uniform and self.span is not None:
            regs[self.first, self.span[0] : self.span[1]].copy_(value)
        else:
            flat.index_copy_(0, self.flat, value.expand(len(self.rows), flat.shape[1]))


class _Group:
    def __init__(self, key: tuple[str, tuple[int, ...]], rows: list[int], instructions: list[_Instruction], k: int,
                 device: torch.device) -> None:
        self.kernel = _kernel(*key)
        self.args = tuple(
            _Source(instructions[0].args[a].static, [i.args[a].index for i in instructions], rows, device)
            for a in range(len(key[1])))
        self.target = _Source(False, [i.target for i in instructions], rows, device)
        for source in (*self.args, self.target):
            source.flat = source.indices * k + source.rows

    def run(self, regs: Tensor, flat: Tensor, statics: Tensor, index: BatchedSegments) -> None:
        self.target.scatter(regs, flat, self.kernel(index, *(a.gather(regs, flat, statics) for a in self.args)))


class BatchedProgram:
    """K programs compiled to run together on stacked flat buffers ``[K, P]`` (see the module docstring).

    ``segments`` are the sizes of the parameter tensors laid end to end in each row (``None``: one tensor of P).
    Use: ``regs = batch.registers_for(w)``, ``statics = batch.statics(lrs, ts)`` once per run, then
    ``batch.step(regs, statics[t - 1])`` per step, which applies ``w -= update`` to ``regs[W]`` and carries ``m``
    and ``v`` in ``regs[M]``, ``regs[V]``. ``__call__`` is the one-step form of ``programs.compile``'s programs.
    Immutable after construction.
    """

    def __init__(self, programs: Sequence[Program], segments: Sequence[int] | None = None) -> None:
        if not programs:
            raise ValueError("a batch needs at least one program")
        self.programs = tuple(programs)
        self.segments = _check_segments(segments)
        self.rows = tuple(_RowPlan(p) for p in self.programs)
        self.n_registers = max(r.n_registers for r in self.rows)
        self.n_statics = max(len(r.static_levels) for r in self.rows)
        self._compiled: dict[torch.device, tuple[list[list[_Group]], BatchedSegments, tuple[Any, ...]]] = {}

    def __len__(self) -> int:
        return len(self.programs)

    def groups_per_step(self) -> int:
        """How many (primitive, levels) groups one step runs: the batch's kernel launches, up to a constant each."""
        positions, _, _ = self._build(len(self.rows), sum(self.segments or (1,)), torch.device("cpu"))
        return sum(len(groups) for groups in positions)

    @staticmethod
    def layout_key(program: Program) -> tuple[Any, ...]:
        """A sort key that puts programs with the same instructions (and registers) next to each other: a batch
        whose rows are in this order has contiguous groups, which are views instead of gathers."""
        row = _RowPlan(program)
        return tuple((i.key, tuple((a.static, a.index) for a in i.args), i.target) for i in row.instructions), \
            row.outputs

    def registers_for(self, w: Tensor) -> Tensor:
        """A register file for stacked parameters ``w[K, P]``: ``w`` copied into ``W``, zero ``g, m, v``."""
        regs = torch.zeros((self.n_registers, *w.shape), dtype=w.dtype, device=w.device)
        regs[W].copy_(w)
        return regs

    def statics(self, lr: Sequence[float] | np.ndarray, t: Sequence[int] | np.ndarray, *,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Tensor:
        """The static values of every row for steps with learning rates ``lr`` and step numbers ``t``:
        ``[T, K, columns]`` in ``dtype`` (computed in float64, as ``programs.compile`` does)."""
        lr_array = np.asarray(lr, dtype=np.float64).reshape(-1)
        t_array = np.asarray(t, dtype=np.float64).reshape(-1)
        table = np.zeros((len(lr_array), len(self.rows), self.n_statics), dtype=np.float64)
        for k, row in enumerate(self.rows):
            values = row.statics(lr_array, t_array)
            table[:, k, : values.shape[1]] = values
        return torch.from_numpy(table).to(device=device, dtype=dtype)

    def step(self, regs: Tensor, statics: Tensor) -> None:
        """One optimizer step of every row in place: ``regs[W] -= update``, new ``m``/``v`` in ``regs[M]``/``regs[V]``.

        ``statics`` is this step's ``[K, columns]`` slice of ``statics(...)``. ``regs[G]`` must hold the gradients.
        """
        positions, index, (m_out, v_out, update) = self._plan(regs)
        flat = regs.view(-1, regs.shape[2])
        for groups in positions:
            for group in groups:
                group.run(regs, flat, statics, index)
        # gathered (copied) before w changes: a program may return w itself as its state
        new_state = [(reg, source.gather(regs, flat, statics).clone() if source.uniform else
                      source.gather(regs, flat, statics)) for reg, source in ((M, m_out), (V, v_out))
                     if source is not None]
        regs[W].sub_(update.gather(regs, flat, statics))
        for reg, value in new_state:
            regs[reg].copy_(value)

    def __call__(self, w: Tensor, g: Tensor, m: Tensor, v: Tensor, lr: float, t: int) -> tuple[Tensor, Tensor, Tensor]:
        """One step on stacked buffers ``[K, P]`` with one ``lr`` and ``t``: ``(update, m, v)``; inputs unchanged."""
        regs = self.registers_for(w)
        regs[G].copy_(g)
        regs[M].copy_(m)
        regs[V].copy_(v)
        self.step(regs, self.statics([lr], [t], dtype=w.dtype, device=w.device)[0])
        return w - regs[W], regs[M].clone(), regs[V].clone()

    def _plan(self, regs: Tensor) -> tuple[list[list[_Group]], BatchedSegments, tuple[Any, ...]]:
        device = regs.device
        k, p = regs.shape[1], regs.shape[2]
        assert k == len(self.rows), f"the register file has {k} rows for {len(self.rows)} programs"
        if self.segments is not None and p != sum(self.segments):
            raise ValueError(f"flat buffers have {p} entries but the segments add up to {sum(self.segments)}")
        if device not in self._compiled:
            self._compiled[device] = self._build(k, p, device)
        return self._compiled[device]

    def _build(self, k: int, p: int, device: torch.device) -> tuple[list[list[_Group]], BatchedSegments, tuple[Any, ...]]:
        positions = []
        for position in range(max(len(r.instructions) for r in self.rows)):
            by_key: dict[tuple[str, tuple[int, ...]], list[int]] = {}
            for row_id, row in enumerate(self.rows):
                if position < len(row.instructions):
                    by_key.setdefault(row.instructions[position].key, []).append(row_id)
            positions.append([
                _Group(key, rows, [self.rows[r].instructions[position] for r in rows], k, device)
                for key, rows in by_key.items()])
        update, m_out, v_out = (
            _Source(False, [r.outputs[i] for r in self.rows], list(range(k)), device) for i in range(3))
        for source in (update, m_out, v_out):
            source.flat = source.indices * k + source.rows
        # m and v stay in place when every row returns its own m (or v); else they are gathered before w changes
        outputs = (None if m_out.uniform and m_out.first == M else m_out,
                   None if v_out.uniform and v_out.first == V else v_out, update)
        return positions, BatchedSegments(self.segments or (p,), device), outputs
