"""The functional-hashing probe of optimizer programs, registered with ``hashing`` when ``programs`` is imported.

A program is run with the reference numpy semantics (``Plan`` + ``NumpyOps``) for ``config.steps`` steps from
m = v = 0, with ``lr = config.lr`` and t = 1..steps, on canonical weights and per-step gradients drawn from
``config.seeds``; the caller's rule ``w = w - update`` is applied between steps. All seeds run batched in one
execution per step: arrays are ``(S, K, n)`` with S seeds, K = ``len(config.tensor_scales)`` parameter tensors of
n = ``config.tensor_size`` entries. The probe's output is the sequence of updates ``(steps, S, K, n)``: behaviour,
not internal state, so state that never reaches the update does not change the hash.

Probe values are log-uniform in ``config.magnitudes`` (default [2^-7, 32]) x the tensor's scale, with random signs:
bounded away from zero so that the language's protected 1e-8 (in ``/``, ``reciprocal``, ...) moves results by
< 3e-5 relative and algebraically equal forms (``m / sqrt(m * m)`` and ``sign(m)``) quantize to the same value; yet
spread over twelve octaves so that thresholds (``max(g, c)``) are crossed and momentum sometimes outweighs a small
gradient (Lion is not signSGD on the probe). Tensors of unequal scales tell per-tensor reductions (``norm``,
``dot``) from global ones (``global_norm``). The default lr is a power of two, so sign-like updates sit in the
middle of a rounding bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hashing import HashConfig, register_probe_runner
from programs.execute import NumpyOps, Plan
from programs.program import Program
from programs.mutation import is_valid_fast
from programs.simplify import live_indices

_PROBE_STREAM = 0x0A11_5EED  # separates probe draws from any other use of the same seed


@dataclass(frozen=True)
class ProgramProbe:
    """Canonical inputs: initial weights ``(S, K, n)`` and gradients ``(steps, S, K, n)`` (read-only arrays)."""

    w0: np.ndarray
    gradients: np.ndarray
    lr: float


@lru_cache(maxsize=16)
def program_probe(config: HashConfig) -> ProgramProbe:
    """The probe inputs of ``config``; the same arrays in every process."""
    draws = [_draw(seed, config) for seed in config.seeds]
    w0 = np.stack([w for w, _ in draws])
    gradients = np.stack([g for _, g in draws], axis=1)
    w0.setflags(write=False)
    gradients.setflags(write=False)
    return ProgramProbe(w0, gradients, float(config.lr))


def _draw(seed: int, config: HashConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, _PROBE_STREAM])
    shape = (config.steps + 1, len(config.tensor_scales), config.tensor_size)
    low, high = np.log(config.magnitudes)
    values = np.exp(rng.uniform(low, high, shape)) * rng.choice([-1.0, 1.0], shape)
    values *= np.asarray(config.tensor_scales)[:, None]
    return values[0], values[1:]


_CACHED_STATEMENTS = 64  # longer programs are planned afresh: 4096 cached plans of 1,000 statements would hold ~1 GB


@lru_cache(maxsize=4096)
def plan_for(program: Program) -> Plan:
    """The execution plan of ``program``, cached (a program hashed twice is resolved once)."""
    return Plan(program)


def run_program_probe(program: Program, config: HashConfig) -> np.ndarray:
    """The updates ``(steps, S, K, n)`` of ``program`` on the canonical probe of ``config``.

    Raises ``ProgramError`` for an invalid program. A step whose arithmetic raises (a Python-float division by an
    exact zero among scalar values) and every later step are NaN.
    """
    plan = plan_for(program) if len(program) <= _CACHED_STATEMENTS else Plan(program)
    probe = program_probe(config)
    updates = np.full((config.steps,) + probe.w0.shape, np.nan)
    w, m, v = probe.w0, np.zeros_like(probe.w0), np.zeros_like(probe.w0)
    with np.errstate(all="ignore"):
        for step in range(config.steps):
            inputs = {"w": w, "g": probe.gradients[step], "m": m, "v": v, "lr": probe.lr, "t": float(step + 1)}
            try:
                update, m, v = plan(NumpyOps, inputs)
            except ArithmeticError:
                break
            updates[step] = update
            w = w - updates[step]
    return updates


def live_program(program: Program) -> Program:
    """``program`` without its dead statements (those the update never depends on): the same probe outputs, so the
    functional hash probes this and memoises by it (``register_probe_runner(..., canonical=)``). ``program`` itself
    when dropping them leaves a state output that is not a tensor (its last write dead, an earlier one a scalar).
    Computed once per program object (the hash and the lr probe both ask)."""
    pruned = program.derived("live_program", _pruned)
    return program if pruned is None else pruned


def _pruned(program: Program) -> Program | None:
    """``live_program``, or None for ``program`` itself (kept on the object: no reference to itself)."""
    live = live_indices(program)
    if len(live) == len(program):
        return None
    statements = program.statements
    pruned = program.replace_statements(tuple(statements[i] for i in live))
    return pruned if is_valid_fast(pruned) else None


register_probe_runner(Program, run_program_probe, canonical=live_program)
