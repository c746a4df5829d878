"""The functional-hashing probe of optimizer programs, registered with ``hashing`` when ``programs`` is imported.

A program is run with the reference numpy semantics (``Plan`` + ``NumpyOps``) for ``config.steps`` steps from
m = v = 0, with ``lr = config.lr`` and t = 1..steps, on canonical weights and per-step gradients drawn from
``config.seeds``; the caller's rule ``w = w - update`` is applied between steps. All seeds run batched in one
execution per step: arrays are ``(S, K, n)`` with S seeds, K = ``len(config.tensor_scales)`` parameter tensors of
n = ``config.tensor_size`` entries. The probe's output is the sequence of updates ``(steps, S, K, n)``: behaviour,
not internal state, so state that never reaches the update does not change the hash. The same execution also runs
the program at two more learning rates (``probe_lanes``: a leading lane axis), which the lr probe
(``programs.lr_probe``) reads: one run per child serves both.

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
from programs.primitives import PRIMITIVES, REDUCTION
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


# The probe runs each program at several learning rates at once, as lanes of one batched execution: the lane at
# ``config.lr`` is the functional hash's probe, and all of them together are the lr probe's (``programs.lr_probe``:
# does the update scale linearly with lr?). Powers of two, so a linear program's lanes differ by exact factors.
LR_FACTORS = (2.0**-8, 1.0, 2.0**4)  # with the default lr 2^-6: 2^-14 .. 2^-2 (6e-5 .. 0.25)
REFERENCE_LANE = LR_FACTORS.index(1.0)
_LANES_KEPT = 256  # recent lane results by (live program, config): the hash of a child, then its lr probe


def run_program_probe(program: Program, config: HashConfig) -> np.ndarray:
    """The updates ``(steps, S, K, n)`` of ``program`` on the canonical probe of ``config``: its lane at ``config.lr``
    (``probe_lanes``).

    Raises ``ProgramError`` for an invalid program. A step whose arithmetic raises (a Python-float division by an
    exact zero among scalar values) and every later step are NaN.
    """
    return probe_lanes(program, config)[REFERENCE_LANE]


@lru_cache(maxsize=_LANES_KEPT)
def probe_lanes(program: Program, config: HashConfig) -> np.ndarray:
    """The updates ``(lanes, steps, S, K, n)`` of ``program`` on the canonical probe of ``config``, one lane per lr
    ``config.lr * LR_FACTORS``, all in one execution per step (``lr`` an array ``(lanes, 1, 1, 1)``). Each lane keeps
    its own ``m``/``v``; the weights follow the reference lane (``config.lr``): ``w = w - update`` between steps,
    non-finite entries included, so that lane is exactly the single-lr probe (numpy computes each element of a
    batched elementwise op or a reduction along the last axes as it would alone; tests check it bit for bit).

    Results are kept for the last ``_LANES_KEPT`` (program, config) pairs: the functional hash of a child runs the
    probe, and its lr check (``programs.lr_probe``) reads the same lanes. The returned array is read-only.
    """
    lanes = _run_lanes(program, config)
    lanes.setflags(write=False)
    return lanes


def _run_lanes(program: Program, config: HashConfig) -> np.ndarray:
    plan = plan_for(program) if len(program) <= _CACHED_STATEMENTS else Plan(program)
    probe = program_probe(config)
    updates = np.full((len(LR_FACTORS), config.steps) + probe.w0.shape, np.nan)
    if program.derived("scalar_power_of_lr", _scalar_power_of_lr):
        return _run_lane_by_lane(plan, probe, config, updates)
    lr, zeros = _lane_inputs(config)
    w, m, v, gradients = probe.w0, zeros, zeros, probe.gradients
    with np.errstate(all="ignore"):
        for step in range(config.steps):
            try:
                update, m, v = plan(NumpyOps, {"w": w, "g": gradients[step], "m": m, "v": v, "lr": lr,
                                               "t": float(step + 1)})
            except ArithmeticError:
                break
            updates[:, step] = update
            w = w - updates[REFERENCE_LANE, step]
    return updates


@lru_cache(maxsize=16)
def _lane_inputs(config: HashConfig) -> tuple[np.ndarray, np.ndarray]:
    """The lanes' lr ``(lanes, 1, 1, 1)`` and their initial state (zeros), read-only."""
    lr = (config.lr * np.asarray(LR_FACTORS)).reshape(len(LR_FACTORS), 1, 1, 1)
    zeros = np.zeros((len(LR_FACTORS),) + program_probe(config).w0.shape)
    lr.setflags(write=False)
    zeros.setflags(write=False)
    return lr, zeros


def _run_lane_by_lane(plan: Plan, probe: ProgramProbe, config: HashConfig, updates: np.ndarray) -> np.ndarray:
    """``_run_lanes`` one lane at a time, lr a float64 scalar (see ``_scalar_power_of_lr``)."""
    zeros = np.zeros(probe.w0.shape)
    states: list[tuple[np.ndarray, np.ndarray] | None] = [(zeros, zeros)] * len(LR_FACTORS)
    w = probe.w0
    with np.errstate(all="ignore"):
        for step in range(config.steps):
            for lane, factor in enumerate(LR_FACTORS):
                state = states[lane]
                if state is None:  # its arithmetic raised at an earlier step
                    continue
                inputs = {"w": w, "g": probe.gradients[step], "m": state[0], "v": state[1],
                          "lr": probe.lr * factor, "t": float(step + 1)}  # as the single-lr probe: a float
                try:
                    update, m, v = plan(NumpyOps, inputs)
                except ArithmeticError:
                    states[lane] = None
                    continue
                updates[lane, step] = update
                states[lane] = (m, v)
            w = w - updates[REFERENCE_LANE, step]
    return updates


_POWERS = ("power", "cbrt")  # the primitives that compute ``x ** y``


def _scalar_power_of_lr(program: Program) -> bool:
    """Whether a statement raises a plain scalar that depends on lr to a power (``power``, ``cbrt``; scalars from lr,
    t and constants only). The lanes then run one by one: batched, lr is an array and such a value too, and numpy
    computes ``x ** y`` of two float64 scalars with the C library's pow but of arrays with its own vectorised pow,
    which differ in the last bits (tan, exp, ... run the same loop either way; values that come from a reduction
    are arrays in both forms)."""
    if not any(statement.fn in _POWERS for statement in program.statements):
        return False
    plain, of_lr = {"lr", "t"}, {"lr"}  # names holding a plain scalar; those of them that depend on lr
    for statement in program.statements:
        names = [a for a in statement.args if isinstance(a, str)]
        is_plain = PRIMITIVES[statement.fn].kind != REDUCTION and all(a in plain for a in names)
        depends = is_plain and any(a in of_lr for a in names)
        if depends and statement.fn in _POWERS:
            return True
        (plain.add if is_plain else plain.discard)(statement.target)
        (of_lr.add if depends else of_lr.discard)(statement.target)
    return False


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
