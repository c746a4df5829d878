"""Learning-rate schedules: the proxy tasks' by step, and the epoch schedules of ``fit`` (counted 1..epochs).

- ``lr_schedule``: the proxy tasks' linear warm-up, then cosine decay, one lr per step.
- ``cosine_annealing``: DARTS's schedule, ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs, eta_min)``
  stepped once per epoch: ``lr_min + (lr_max - lr_min)·(1 + cos(π·(epoch - 1)/epochs))/2`` — starts at ``lr_max``
  and stays above ``lr_min`` in the last epoch.
- ``cosine_power_annealing``: sharpDARTS's schedule (Hundt et al. 2019), which reaches ``lr_min`` in the last epoch.

Bad arguments raise ``ScheduleError`` (a ``ValueError``).
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "cosine_power")


class ScheduleError(ValueError):
    """An epoch, power or warm-up outside the schedule; the message names it."""


def lr_schedule(base_lr: float, steps: int, warmup: int = 0) -> list[float]:
    """The lr of steps 1..``steps``: ``base_lr·t/warmup`` during warm-up, then ``base_lr·(1 + cos(π·p))/2``
    with ``p`` going from 0 (first step after warm-up) towards 1 (never reached, so the last lr is positive)."""
    assert steps > 0 and 0 <= warmup < steps, f"need 0 <= warmup ({warmup}) < steps ({steps})"
    decay_steps = steps - warmup
    schedule = [base_lr * t / warmup for t in range(1, warmup + 1)]
    schedule += [base_lr * 0.5 * (1.0 + math.cos(math.pi * k / decay_steps)) for k in range(decay_steps)]
    return schedule


def cosine_annealing(epoch: int, epochs: int, lr_max: float, lr_min: float) -> float:
    """DARTS's cosine schedule at ``epoch`` (1-based); equals ``CosineAnnealingLR`` after ``epoch - 1`` steps."""
    _check(epoch, epochs)
    return lr_min + (lr_max - lr_min) * (1.0 + math.cos(math.pi * (epoch - 1) / epochs)) / 2.0


def cosine_power_annealing(
    epoch: int, epochs: int, lr_max: float, lr_min: float, power: float, warmup_epochs: int = 0
) -> float:
    """sharpDARTS's cosine power annealing at ``epoch`` (1-based).

    With ``c(t) = (1 + cos(πt/T))/2`` and ``s(t) = p^(c(t) + 1)`` (``s = c`` for ``p = 1``), ``s`` is min-max
    normalised to [0, 1] over the schedule and ``lr = lr_min + s·(lr_max - lr_min)``. Without warm-up, ``t = epoch``
    and ``T = epochs``, so ``lr(1) = lr_max`` and ``lr(epochs) = lr_min``; ``p = 1`` is then the cosine curve through
    those two points. With ``w = warmup_epochs``, epochs ``1..w`` ramp linearly (``s = epoch/w``, reaching
    ``lr_max`` at epoch ``w``) and the curve runs over ``t = epoch - w``, ``T = epochs - w``, normalised with its
    maximum at ``t = 0`` — as in the sharpDARTS code. Larger ``p`` decays faster early and slower late.
    """
    _check(epoch, epochs)
    if power < 1:
        raise ScheduleError(f"cosine_power_annealing needs power >= 1, got {power}")
    if not 0 <= warmup_epochs < epochs:
        raise ScheduleError(f"warmup_epochs must be in 0..{epochs - 1}, got {warmup_epochs}")
    if epoch <= warmup_epochs:
        return lr_min + (lr_max - lr_min) * epoch / warmup_epochs
    t, T = epoch - warmup_epochs, epochs - warmup_epochs
    c_top = 1.0 if warmup_epochs else _c(1, T)
    s, s_top, s_bottom = (_s(c, power) for c in (_c(t, T), c_top, 0.0))
    proportion = (s - s_bottom) / (s_top - s_bottom) if s_top > s_bottom else 1.0
    return lr_min + (lr_max - lr_min) * proportion


def scheduled_lr(schedule: str, epoch: int, epochs: int, lr_max: float, lr_min: float, power: float,
                 warmup_epochs: int = 0) -> float:
    """The lr of ``epoch`` (1-based) under ``schedule``: "cosine" (DARTS) or "cosine_power" (sharpDARTS)."""
    if schedule == "cosine":
        return cosine_annealing(epoch, epochs, lr_max, lr_min)
    if schedule == "cosine_power":
        return cosine_power_annealing(epoch, epochs, lr_max, lr_min, power, warmup_epochs)
    raise ScheduleError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def _c(t: int, T: int) -> float:
    return (1.0 + math.cos(math.pi * t / T)) / 2.0


def _s(c: float, power: float) -> float:
    return c if power == 1 else power ** (c + 1.0)


def _check(epoch: int, epochs: int) -> None:
    if epochs < 1 or not 1 <= epoch <= epochs:
        raise ScheduleError(f"epoch must be in 1..epochs (epochs >= 1), got epoch={epoch}, epochs={epochs}")
