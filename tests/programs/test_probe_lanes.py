"""The probe's lr lanes (programs.probe.probe_lanes): one batched execution serves the functional hash and the lr
probe, and its hash lane is the single-lr probe bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from hashing import HashConfig, functional_hash
from programs import Program, library, mutate, parse
from programs.execute import NumpyOps, Plan
from programs.probe import LR_FACTORS, REFERENCE_LANE, _run_lanes, probe_lanes, program_probe, run_program_probe


def _single_lr_probe(program: Program, config: HashConfig, lr: float, w_lr: float | None = None) -> np.ndarray:
    """The probe as written before lanes: one lr, scalars as numpy float64, weights following the run itself (or,
    with ``w_lr``, the run at that lr)."""
    plan, probe = Plan(program), program_probe(config)
    updates = np.full((config.steps,) + probe.w0.shape, np.nan)
    w, m, v = probe.w0, np.zeros_like(probe.w0), np.zeros_like(probe.w0)
    w_m, w_v = m, v
    with np.errstate(all="ignore"):
        for step in range(config.steps):
            g = probe.gradients[step]
            update, m, v = plan(NumpyOps, {"w": w, "g": g, "m": m, "v": v, "lr": lr, "t": float(step + 1)})
            updates[step] = update
            if w_lr is None:
                w = w - update
            else:
                w_update, w_m, w_v = plan(NumpyOps, {"w": w, "g": g, "m": w_m, "v": w_v, "lr": w_lr,
                                                     "t": float(step + 1)})
                w = w - w_update
    return updates


def _population(size: int, seed: int) -> list[Program]:
    rng = np.random.default_rng(seed)
    members = [library.get(name) for name in library.names()]
    while len(members) < size:
        members.append(mutate(members[int(rng.integers(len(members)))], rng))
    return members


SCALAR_POWER = parse("def train(w, g, m, v, lr):\n    c = power(0.9, lr)\n    d = cbrt(lr)\n    e = c * d\n"
                     "    m = interp(g, m, 0.9)\n    update = m * e\n    return update, m, v\n")


@pytest.mark.parametrize("config", [HashConfig(), HashConfig(seeds=(5,), steps=3, lr=2.0**-3)])
def test_the_reference_lane_is_the_single_lr_probe_bit_for_bit(config: HashConfig) -> None:
    # 400 mutants of the library (the search's children) and a program that raises a scalar to a power of lr
    # (numpy's scalar pow and its vectorised pow differ in the last bits: such programs run lane by lane)
    for program in _population(400, seed=3) + [SCALAR_POWER]:
        expected = _single_lr_probe(program, config, config.lr)
        assert np.array_equal(_run_lanes(program, config)[REFERENCE_LANE], expected, equal_nan=True), program.to_text()


def test_every_lane_is_its_lr_with_the_weights_of_the_reference_lane() -> None:
    config = HashConfig()
    for program in _population(40, seed=5) + [SCALAR_POWER]:
        lanes = _run_lanes(program, config)
        for lane, factor in enumerate(LR_FACTORS):
            expected = _single_lr_probe(program, config, config.lr * factor, w_lr=config.lr)
            np.testing.assert_allclose(lanes[lane], expected, rtol=1e-12, atol=0, equal_nan=True)


def test_lanes_are_shared_by_the_hash_and_kept_read_only() -> None:
    program = mutate(library.get("adamw"), np.random.default_rng(0))
    from hashing import _fingerprint

    _fingerprint._memo.clear()  # a digest memoised by an earlier test would skip the probe
    probe_lanes.cache_clear()
    functional_hash(program)
    from programs.probe import live_program

    assert probe_lanes.cache_info().currsize == 1  # the hash ran the probe once and kept its lanes
    kept = probe_lanes(live_program(program), HashConfig())
    assert probe_lanes.cache_info().hits == 1 and not kept.flags.writeable
    assert np.array_equal(run_program_probe(program, HashConfig()), kept[REFERENCE_LANE], equal_nan=True)
