"""Does a program's update scale with ``lr``? The learning rate must stay the learning rate.

A program whose update does not scale with its ``lr`` input defeats the learning-rate schedule and any lr tuning: it
reassigns ``lr`` (``lr = tan(m)``), ignores it (``update = m * 0.1``), or uses it nonlinearly (``update = g * sqrt(lr)``).
Searches find such programs easily — a fixed large step that the task's default lr would never give looks like a
discovery — and they fall apart on the first task whose best step size is different (issue 11).

``lr_scaling(program)`` checks two things:

- statically, that no statement writes ``lr``;
- by probing, that the update is linear in ``lr``: the program runs with the reference numpy semantics
  (``programs.execute``) on the canonical probe of functional hashing at ``PROBE_LRS``, the lanes of
  ``programs.probe.probe_lanes`` (one batched execution per step, shared with the functional hash: a child hashed
  by FCM is not run again here); every lane sees the same weights and gradients, step by step (the weights follow
  the lane at the hash's lr, 2^-6), and keeps its own ``m``/``v``. At each step the update at lr·c must equal c × the
  update at lr within ``tolerance`` (relative, in the largest-magnitude norm). State that carries lr
  (``m = m + g * lr; update = m``) is linear and passes; ``lr²`` does not.

The probe lrs are powers of two, so ``c × update`` is exact in floating point and a linear program's error is at the
level of rounding (and of the language's protected ``1e-8`` denominators, < 1e-3 relative at the smallest probe lr).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hashing import HashConfig
from programs.errors import ProgramError
from programs.probe import LR_FACTORS, REFERENCE_LANE, live_program, probe_lanes
from programs.program import Program

if TYPE_CHECKING:
    from programs.mutation import Mutation, MutationConfig

_PROBE_CONFIG = HashConfig()  # the canonical probe inputs (seeds, tensor scales, magnitudes) of functional hashing
# 2^-14, 2^-6, 2^-2 (6e-5 .. 0.25): the lrs a tuned task uses, and its schedule's tail; the middle one is the hash's
PROBE_LRS = tuple(_PROBE_CONFIG.lr * factor for factor in LR_FACTORS)
TOLERANCE = 1e-3


@dataclass(frozen=True)
class LrScaling:
    """The verdict of ``lr_scaling``: ``ok`` (the update scales linearly with lr) and, when not, the ``reason``.

    ``error`` is the largest relative deviation from linearity measured (0.0 for an exactly linear program; ``nan``
    when a static check decided). ``bool(verdict)`` is ``ok``.
    """

    ok: bool
    reason: str = ""
    error: float = 0.0

    def __bool__(self) -> bool:
        return self.ok


def writes_lr(program: Program) -> int | None:
    """The 0-based index of the first statement that assigns ``lr``, or None."""
    return next((i for i, s in enumerate(program.statements) if s.target == "lr"), None)


def lr_scaling(program: Program, *, tolerance: float = TOLERANCE) -> LrScaling:
    """Whether ``program``'s update scales linearly with ``lr`` (see the module docstring). ``ProgramError`` for an
    invalid program.

    A program whose probe updates are non-finite everywhere cannot be judged and passes (its evaluation will fail);
    one that is finite at some lrs and not at others does not scale.
    """
    index = writes_lr(program)
    if index is not None:
        text = program.statements[index].to_text()
        return LrScaling(False, f"statement {index + 1} ({text}) reassigns lr: the schedule and lr tuning no longer "
                                "reach the update", float("nan"))
    # The probe sees only the update, which dead statements never reach: it runs on the live statements (the same
    # numbers, see ``live_program``) with their cached plan, and its verdict is memoised by them.
    live = live_program(program)
    key = (live, float(tolerance))
    verdict = _VERDICTS.get(key)
    if verdict is None:
        with np.errstate(all="ignore"):  # updates near the float64 limit overflow when scaled: inf, no warning
            verdict = _probe_verdict(probe_lanes(live, _PROBE_CONFIG), tolerance)
        _VERDICTS[key] = verdict
        if len(_VERDICTS) > MEMO_SIZE:
            _VERDICTS.popitem(last=False)  # the oldest
    else:
        _VERDICTS.move_to_end(key)
    return verdict


MEMO_SIZE = 8192  # recent verdicts by live code: a converged population draws the same children again and again
_VERDICTS: OrderedDict[tuple[Program, float], LrScaling] = OrderedDict()


def _probe_verdict(updates: np.ndarray, tolerance: float) -> LrScaling:
    """The verdict on the probe ``updates`` (one lane per lr of ``PROBE_LRS``), every lane compared with the reference
    lane at once: the larger lr first ("x16" reads better), the first lane that does not scale decides; else the
    largest error. The arithmetic is elementwise and the reductions are maxima, so each lane's error is the number a
    lane-by-lane comparison gives."""
    reference, base_lr = updates[REFERENCE_LANE], PROBE_LRS[REFERENCE_LANE]
    finite = np.isfinite(updates)
    finite_ref = finite[REFERENCE_LANE]
    steps = reference.shape[0]
    factors = _LANE_FACTORS.reshape((-1,) + (1,) * reference.ndim)
    expected = np.where(finite_ref, reference, 0.0) * factors  # (lanes, steps, ...); the reference lane unused
    got = np.where(finite, updates, 0.0)
    scale = np.abs(expected.reshape(len(factors), steps, -1)).max(axis=2)
    deviation = np.abs((got - expected).reshape(len(factors), steps, -1)).max(axis=2)
    ratio = deviation / np.maximum(scale, 1e-300)
    any_finite = finite.reshape(len(factors), -1).any(axis=1)
    same_finite = (finite == finite_ref).reshape(len(factors), -1).all(axis=1)
    scaled = scale.any(axis=1)
    worst = LrScaling(True)
    for lane in reversed(range(len(factors))):
        if lane == REFERENCE_LANE or (not any_finite[REFERENCE_LANE] and not any_finite[lane]):
            continue
        lr = PROBE_LRS[lane]
        if not same_finite[lane]:
            return LrScaling(False, f"the update is non-finite at lr={_fmt(lr)} where it is finite at "
                                    f"lr={_fmt(base_lr)} (or the reverse): it does not scale with lr", float("inf"))
        error = float(ratio[lane].max() if scaled[lane] else deviation[lane].max())
        if not error <= tolerance:  # a NaN error does not scale either
            return _not_scaling(got[lane], reference, lr, base_lr, LR_FACTORS[lane], tolerance, error)
        worst = LrScaling(True, "", error) if error > worst.error else worst
    return worst


_LANE_FACTORS = np.asarray(LR_FACTORS)  # each lane's lr over the reference lane's (powers of two: exact)
_LANE_FACTORS.setflags(write=False)


def _not_scaling(got: np.ndarray, reference: np.ndarray, lr: float, base_lr: float, factor: float,
                 tolerance: float, error: float) -> LrScaling:
    """The verdict on a lane whose update deviates from ``factor`` x the reference by ``error`` > ``tolerance``."""
    size, size_ref = np.abs(got).max(), np.abs(reference).max()
    ratio = size / size_ref if size_ref > 0 else float("inf")
    if abs(ratio - 1.0) <= tolerance:
        how = "it is the same update: the program ignores lr"
    else:
        how = f"it changes {ratio:.3g}x instead"
    return LrScaling(False, f"lr {_fmt(base_lr)} -> {_fmt(lr)} should scale the update by {factor:g}x; {how}", error)


def _fmt(lr: float) -> str:
    return f"2^{int(np.log2(lr))}"


REDRAWS = 200  # children drawn per mutation before giving up (about 1 in 8 children of AdamW does not scale)


def mutate_scaling(
    program: Program, rng: np.random.Generator, config: MutationConfig | None = None, *, allow_lr_free: bool = False,
    redraws: int = REDRAWS,
) -> tuple[Program, Mutation]:
    """``programs.mutate_with_info``, re-drawn until the child's update scales with lr (``lr_scaling``): a child that
    does not is rejected before evaluation, as an invalid one is. ``allow_lr_free=True`` keeps the first child.

    Raises ``ProgramError`` when ``redraws`` children in a row do not scale (a parent that ignores lr, say).
    """
    from programs.mutation import mutate_with_info

    last = ""
    for _ in range(redraws if not allow_lr_free else 1):
        child, mutation = mutate_with_info(program, rng, config)
        verdict = LrScaling(True) if allow_lr_free else lr_scaling(child)
        if verdict.ok:
            return child, mutation
        last = verdict.reason
    raise ProgramError(f"no child in {redraws} draws has an update that scales with lr (last: {last}); "
                       "allow lr-free programs to search from this one")


def random_scaling_program(rng: np.random.Generator, *, allow_lr_free: bool = False, redraws: int = 10_000,
                           statements: tuple[int, int] = (3, 13)) -> Program:
    """``programs.random_program`` of ``rng.integers(*statements)`` statements, re-drawn until its update scales
    with lr (about 1 random program in 4 does); ``ProgramError`` after ``redraws`` draws."""
    from programs.mutation import random_program

    for _ in range(redraws if not allow_lr_free else 1):
        program = random_program(rng, int(rng.integers(*statements)))
        if allow_lr_free or lr_scaling(program).ok:
            return program
    raise ProgramError(f"no random program in {redraws} draws has an update that scales with lr")
