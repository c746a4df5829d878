"""The lr probe: a program's update must scale linearly with lr (programs.lr_scaling)."""

from __future__ import annotations

import numpy as np
import pytest

from programs import ProgramError, library, lr_scaling, mutate_scaling, parse, random_scaling_program
from programs.lr_probe import PROBE_LRS, writes_lr


def _program(*lines: str, step: bool = False) -> str:
    signature = "w, g, m, v, lr, t" if step else "w, g, m, v, lr"
    body = "".join(f"    {line}\n" for line in lines)
    return parse(f"def train({signature}):\n{body}    return update, m, v\n")


@pytest.mark.parametrize("name", library.names())
def test_every_library_optimizer_scales_with_lr(name: str) -> None:
    verdict = lr_scaling(library.get(name))
    assert verdict.ok and verdict and verdict.reason == "" and verdict.error < 1e-9


SCALING = {
    "lr carried in the state": ("s = g * lr", "m = interp(s, m, 0.9)", "update = m * 1.0"),
    "lr through a reciprocal": ("r = reciprocal(lr)", "update = g / r"),
    "a sign-like step": ("c = interp(g, m, 0.9)", "update = sign(c) * lr", "m = interp(g, m, 0.99)"),
}


@pytest.mark.parametrize("lines", SCALING.values(), ids=SCALING.keys())
def test_programs_linear_in_lr_pass(lines: tuple[str, ...]) -> None:
    assert lr_scaling(_program(*lines)).ok


LR_FREE = {
    "ignores lr": (("update = g * 0.01",), "ignores lr"),
    "weights without lr": (("s = g * lr", "update = s + w"), "should scale the update by 16x"),
    "decay without lr": (("u = g * lr", "d = w * 0.01", "update = u + d"), "should scale the update by 16x"),
    "square root of lr": (("s = sqrt(lr)", "update = g * s"), "changes 4x instead"),
    "lr squared": (("s = lr * lr", "update = g * s"), "changes 256x instead"),
    "a fixed step below a threshold": (("s = minimum(lr, 0.001)", "update = sign(g) * s"), "should scale"),
    "reassigns lr": (("lr = tan(lr)", "update = g * lr"), "statement 1 (lr = tan(lr)) reassigns lr"),
    "reassigns lr linearly": (("lr = lr * 2.0", "update = g * lr"), "reassigns lr"),
    "non-finite at one lr": (("d = lr - 0.015625", "r = g / d", "s = r * 0.0", "q = log(d)", "u = q * 0.0",
                               "e = s + u", "f = g * lr", "update = e + f"), "non-finite"),
}


@pytest.mark.parametrize("lines, reason", LR_FREE.values(), ids=LR_FREE.keys())
def test_lr_free_programs_are_caught_with_a_reason(lines: tuple[str, ...], reason: str) -> None:
    verdict = lr_scaling(_program(*lines))
    assert not verdict.ok and not verdict
    assert reason in verdict.reason


def test_the_static_check_finds_the_statement() -> None:
    program = _program("u = g * lr", "lr = tan(m)", "update = u * lr")
    assert writes_lr(program) == 1 and writes_lr(library.get("adamw")) is None


def test_probe_lrs_are_powers_of_two_around_a_tuned_lr() -> None:
    assert all(float(np.log2(lr)).is_integer() for lr in PROBE_LRS)
    assert min(PROBE_LRS) < 1e-4 and max(PROBE_LRS) > 0.1


def test_mutation_keeps_only_children_that_scale() -> None:
    rng = np.random.default_rng(3)
    parent = library.get("adamw")
    children = [mutate_scaling(parent, rng)[0] for _ in range(60)]
    assert all(lr_scaling(child).ok for child in children)
    # without the check about 1 child in 8 of AdamW does not scale: allowing them lets some through
    rng = np.random.default_rng(3)
    free = [mutate_scaling(parent, rng, allow_lr_free=True)[0] for _ in range(60)]
    assert any(not lr_scaling(child).ok for child in free)


def test_a_parent_without_scaling_children_is_an_error_not_a_loop() -> None:
    parent = _program("update = g * 0.01")
    with pytest.raises(ProgramError, match="scales with lr"):
        mutate_scaling(parent, np.random.default_rng(0), redraws=3)


def test_random_programs_are_redrawn_until_they_scale() -> None:
    rng = np.random.default_rng(0)
    programs = [random_scaling_program(rng) for _ in range(20)]
    assert all(lr_scaling(p).ok for p in programs)
    assert all(3 <= len(p) < 13 for p in programs)


def _reference_verdict(program):
    """The lr probe as it ran before it probed the live statements and memoised: the whole program, planned afresh."""
    from programs.lr_probe import TOLERANCE, _probe_verdict

    index = writes_lr(program)
    if index is not None:
        return lr_scaling(program)  # the static check alone decides; it reads the whole program as before
    return _probe_verdict(list(_fresh_lanes(program)), TOLERANCE)


def _fresh_lanes(program):
    """The probe lanes of ``program`` run afresh (not the memoised ones), planned afresh."""
    from hashing import HashConfig
    from programs.probe import _run_lanes

    return _run_lanes(program, HashConfig())


def test_probing_the_live_statements_gives_the_verdicts_of_probing_the_whole_program():
    from programs import MutationConfig, mutate_with_info, random_program
    from programs.lr_probe import _VERDICTS
    from programs.probe import live_program

    rng = np.random.default_rng(41)
    programs = [library.get(name) for name in library.names()] + [random_program(rng, int(rng.integers(2, 16)))
                                                                  for _ in range(60)]
    for _ in range(4):  # children (FCM, as the search draws them), and their children
        programs += [mutate_with_info(p, rng, MutationConfig(fcm=True))[0] for p in programs[-60:]]
    _VERDICTS.clear()
    pruned = 0
    for program in programs:
        live = live_program(program)
        pruned += live is not program
        if writes_lr(program) is None:  # the numbers themselves: bit for bit, NaN where NaN
            assert all(np.array_equal(a, b, equal_nan=True)
                       for a, b in zip(_fresh_lanes(program), _fresh_lanes(live))), program.to_text()
        reference = _reference_verdict(program)
        for verdict in (lr_scaling(program), lr_scaling(program)):  # computed, then memoised
            assert (verdict.ok, verdict.reason) == (reference.ok, reference.reason), program.to_text()
            assert np.array_equal(verdict.error, reference.error, equal_nan=True), program.to_text()
    assert pruned > len(programs) // 4, "the test must cover programs with dead code"
    assert any(not _reference_verdict(p).ok for p in programs) and any(_reference_verdict(p).ok for p in programs)


def _children(parent, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [mutate_scaling(parent, rng) for _ in range(15)]


def test_memoised_verdicts_give_the_children_of_a_fresh_probe():
    from programs.lr_probe import _VERDICTS

    parents = [library.get("adamw"), library.get("lion")] * 3
    fresh = []
    for index, parent in enumerate(parents):  # each parent's children with an empty memo
        _VERDICTS.clear()
        fresh.append(_children(parent, index))
    for _ in range(2):  # then twice without clearing: the second time every verdict comes from the memo
        assert [_children(parent, index) for index, parent in enumerate(parents)] == fresh
    assert len({child for children in fresh for child, _ in children}) > 30


def test_an_update_near_the_float64_limit_is_judged_without_a_warning():
    import warnings

    from programs.lr_probe import _VERDICTS

    _VERDICTS.clear()
    program = _program("s = sign(g)", "c = exp(709.0)", "update = s * c")  # 8e307, and 16x that overflows
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verdict = lr_scaling(program)
    assert not verdict.ok


def test_a_deviation_that_cannot_be_measured_does_not_scale():
    """At the larger lr the expected update overflows (16 x 1e308): the relative error is inf / inf, NaN, which is
    no evidence of scaling; the lanes are compared together, and a NaN must fail as it did lane by lane."""
    from programs.lr_probe import _probe_verdict
    from programs.probe import REFERENCE_LANE

    reference = np.full((4, 3, 3, 16), 1e308)
    updates = np.stack([reference * (lr / PROBE_LRS[REFERENCE_LANE]) if lane != 2 else np.ones_like(reference)
                        for lane, lr in enumerate(PROBE_LRS)])
    with np.errstate(all="ignore"):
        verdict = _probe_verdict(updates, 1e-3)
    assert not verdict.ok and np.isnan(verdict.error) and "2^-2" in verdict.reason
