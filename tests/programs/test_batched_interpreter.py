"""``programs.batched``: each row of a batched step equals ``programs.compile`` of its program."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import programs
from programs import library
from programs.batched import M, V, W, BatchedProgram
from programs.mutation import mutate

from program_samples import HAND_WRITTEN, random_program  # tests/programs/program_samples.py

SEGMENTS = [6, 9, 4]
# float32 rounding of constants' side computations and of reduction order only (see programs.batched)
RTOL, ATOL = 1e-4, 1e-6


def population(seed: int = 0, mutants: int = 110) -> list[programs.Program]:
    """The library, the hand-written programs, random programs and mutants of them."""
    rng = np.random.default_rng(seed)
    members = [library.get(name) for name in library.names()] + [programs.parse(text) for text in HAND_WRITTEN]
    members += [random_program(rng, 6, reduction_share=0.3) for _ in range(20)]
    for _ in range(mutants):
        members.append(mutate(members[int(rng.integers(len(members)))], rng))
    return members


def _inputs(k: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    w, g, m, v = (torch.randn(k, sum(SEGMENTS), generator=generator) for _ in range(4))
    return [w, g, m, v.abs()]


def _assert_rows_match(batch_out: tuple[torch.Tensor, ...], row_out: tuple[torch.Tensor, ...], k: int,
                       program: programs.Program, roles: tuple[str, ...] = ("update", "m", "v")) -> None:
    for role, got, expected in zip(roles, batch_out, row_out):
        expected = torch.as_tensor(expected).expand(sum(SEGMENTS))
        torch.testing.assert_close(got[k], expected, rtol=RTOL, atol=ATOL, equal_nan=True,
                                   msg=lambda text: f"{role} of row {k}:\n{program}\n{text}")


def test_one_step_matches_compiled_row_by_row() -> None:
    members = population()
    assert len(members) > 130
    batch = BatchedProgram(members, SEGMENTS)
    w, g, m, v = _inputs(len(members), 0)
    for lr, t in ((0.01, 1), (0.003, 9)):
        got = batch(w, g, m, v, lr, t)
        for k, program in enumerate(members):
            expected = programs.compile(program, SEGMENTS)(w[k].clone(), g[k].clone(), m[k].clone(), v[k].clone(), lr, t)
            _assert_rows_match(got, expected, k, program)


def test_steps_carry_state_like_the_compiled_loop() -> None:
    members = population(seed=1, mutants=30)
    batch = BatchedProgram(members, SEGMENTS)
    w, g, m, v = _inputs(len(members), 1)
    schedule = [0.01, 0.008, 0.005]
    regs = batch.registers_for(w)
    regs[M].copy_(m)
    regs[V].copy_(v)
    statics = batch.statics(schedule, [1, 2, 3])
    for t in range(3):
        regs[1].copy_(g * (t + 1))
        batch.step(regs, statics[t])
    for k, program in enumerate(members):
        step = programs.compile(program, SEGMENTS)
        wk, mk, vk = w[k].clone(), m[k].clone(), v[k].clone()
        for t, lr in enumerate(schedule):
            update, mk, vk = step(wk, g[k] * (t + 1), mk, vk, lr, t + 1)
            mk, vk = (x.clone() if x.data_ptr() == wk.data_ptr() else x for x in (mk, vk))
            wk = wk - update
        _assert_rows_match((regs[W], regs[M], regs[V]), (wk, mk, vk), k, program, ("w", "m", "v"))


def test_state_may_be_the_old_weights() -> None:
    program = programs.parse("def train(w, g, m, v, lr):\n    update = g * lr\n    return update, w, v\n")
    batch = BatchedProgram([program, library.get("sgd")], SEGMENTS)
    w, g, m, v = _inputs(2, 2)
    update, new_m, _ = batch(w, g, m, v, 0.1, 1)
    torch.testing.assert_close(new_m[0], w[0])  # m = w before the update, as compiled programs give it
    torch.testing.assert_close(new_m[1], m[1])
    torch.testing.assert_close(update, g * 0.1)


def test_groups_per_step_do_not_grow_with_the_batch() -> None:
    members = population(seed=2, mutants=40)
    one = BatchedProgram(members, SEGMENTS).groups_per_step()
    eight = BatchedProgram(members * 8, SEGMENTS).groups_per_step()
    assert eight == one
    same = BatchedProgram([library.get("adamw")] * 64, SEGMENTS)
    assert same.groups_per_step() == BatchedProgram([library.get("adamw")], SEGMENTS).groups_per_step()


def test_bad_buffers_are_refused() -> None:
    batch = BatchedProgram([library.get("adam")], SEGMENTS)
    with pytest.raises(ValueError, match="segments add up"):
        batch(*(torch.zeros(1, 5) for _ in range(4)), 0.1, 1)
    with pytest.raises(ValueError, match="at least one program"):
        BatchedProgram([])
