"""``evaluators.train_batch`` / ``evaluate_batch``: each row equals its one-at-a-time evaluation (same seed).

Tolerance: float reassociation only — batched matmuls, segment sums and float32 constants round differently from the
one-at-a-time loop, so losses agree to a relative 1e-4 (1e-2 for programs calling ``sign``, which is discontinuous
at 0), accuracy to one validation example; failures agree on the
step and the kind of failure (the diverged loss a reason quotes is itself a large, chaotic number).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import evaluators
from evaluators import EvaluationFailed, Task, evaluate_batch, evaluate_program, max_batch, train_batch
from evaluators import batched as batched_module
from programs import Program, library, parse
from programs.mutation import mutate

STEPS = 12
RTOL, ATOL = 1e-4, 1e-6
RTOL_SIGN = 1e-2  # sign() turns a last-bit difference of a near-zero gradient entry into a ±lr step
# a row that diverges: the loss passes 100x the first step's; a row that turns NaN
DIVERGING = "def train(w, g, m, v, lr):\n    update = g * -30.0\n    return update, m, v\n"
NAN = "def train(w, g, m, v, lr, t):\n    a = t - 3.0\n    b = power(a, -1.0)\n    update = g * (b * lr)\n    return update, m, v\n"


def mutants(count: int, seed: int) -> list[Program]:
    """The library, two programs that fail, and ``count`` random mutants of library programs (chains of edits)."""
    rng = np.random.default_rng(seed)
    members = [library.get(name) for name in library.names()] + [parse(DIVERGING), parse(NAN)]
    for _ in range(count):
        members.append(mutate(members[int(rng.integers(len(members)))], rng))
    return members


def short(task: Task, steps: int = STEPS) -> Task:
    return replace(task, steps=steps, warmup=min(task.warmup, 2))


def one_at_a_time(program: Program, task: Task) -> dict | EvaluationFailed:
    try:
        return evaluate_program(program, task, seed=3)
    except EvaluationFailed as failure:
        return failure


def _kind(reason: str) -> str:
    """The reason without the loss values it quotes (a diverging loss is large: its digits may differ)."""
    return reason.split(":")[0]


def assert_same(row: dict | EvaluationFailed, expected: dict | EvaluationFailed, task: Task, program: Program) -> None:
    where = f"{task.name}:\n{program}"
    if isinstance(expected, EvaluationFailed):
        assert isinstance(row, EvaluationFailed), f"one at a time failed ({expected.reason}), batched did not: {where}"
        assert row.step == expected.step and _kind(row.reason) == _kind(expected.reason), f"{row.reason}: {where}"
        return
    assert isinstance(row, dict), f"batched failed ({row.reason}), one at a time did not: {where}"
    rtol = RTOL_SIGN if any(s.fn == "sign" for s in program.statements) else RTOL
    for key in ("val_loss", "train_loss"):
        np.testing.assert_allclose(row[key], expected[key], rtol=rtol, atol=ATOL, err_msg=f"{key} of {where}")
    if expected["val_accuracy"] is not None:
        assert abs(row["val_accuracy"] - expected["val_accuracy"]) <= 1.0 / task.n_val + 1e-12, where
    assert row["steps"] == expected["steps"] and row["lr"] == expected["lr"], where


def _cases() -> list[tuple[str, int, int]]:
    """(task, mutants, steps): 100+ mutants on the fastest task, the library and a few mutants on every base model,
    the library on the wider @10x/@100x models (only their width differs here: the tests shorten every run)."""
    cases = [("quadratic", 110, STEPS), ("mnist1d-mlp", 8, STEPS), ("digits-cnn", 4, STEPS),
             ("modadd-transformer", 4, STEPS)]
    return cases + [(name, 0, 5) for name in evaluators.TASKS if "@" in name]


@pytest.mark.parametrize("name,count,steps", _cases())
def test_rows_equal_one_at_a_time(name: str, count: int, steps: int) -> None:
    task = short(evaluators.get_task(name), steps)
    members = mutants(count, seed=len(name))
    if "@100x" in name:
        members = [library.get("adamw"), library.get("lion"), parse(DIVERGING), parse(NAN)]
    rows = train_batch(task, members, seed=3)
    assert len(rows) == len(members)
    failures = 0
    for program, row in zip(members, rows):
        expected = one_at_a_time(program, task)
        assert_same(row, expected, task, program)
        failures += isinstance(expected, EvaluationFailed)
    assert failures >= 2  # the two failing programs at least: failure isolation is exercised on every task
    if steps < 4:
        return


@pytest.mark.parametrize("name,count", [("quadratic", 110), ("mnist1d-mlp", 8)])
def test_grouped_updates_equal_row_updates(name: str, count: int) -> None:
    """The batched interpreter (the GPU's form, ``updates="grouped"``) gives the rows that each row's compiled program
    gives (the CPU's form, checked against one-at-a-time evaluation above, on the same mutants: a program that divides
    by a near-zero gradient entry is chaotic, like ``sign``, and no tolerance holds for it over 12 steps)."""
    task = short(evaluators.get_task(name))
    members = mutants(count, seed=len(name))
    grouped = train_batch(task, members, seed=3, updates="grouped")
    rows = train_batch(task, members, seed=3, updates="rows")
    for program, row, expected in zip(members, grouped, rows):
        assert_same(row, expected, task, program)
    assert sum(isinstance(row, EvaluationFailed) for row in rows) >= 2
    with pytest.raises(ValueError, match="updates must be one of"):
        train_batch(task, members[:2], seed=3, updates="fused")


@pytest.mark.parametrize("name", ["mnist1d-mlp", "digits-cnn"])
def test_validation_in_chunks_of_rows_equals_all_rows(name: str) -> None:
    """``validate(w, chunk)`` (the CPU runs ``VALIDATION_ROWS`` at a time) gives every row what one pass over all
    rows gives: the rows are independent."""
    from evaluators.loop import FlatParameters
    from evaluators.stacked import stacked_model

    setup = evaluators.prepare(evaluators.get_task(name), 0)
    w = FlatParameters(setup.model).w.expand(7, -1).clone()
    w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)), alpha=0.05)  # 7 different rows
    model = stacked_model(setup)
    whole_loss, whole_accuracy = model.validate(w)
    loss, accuracy = model.validate(w, 3)
    np.testing.assert_allclose(loss, whole_loss, rtol=1e-5)
    np.testing.assert_array_equal(accuracy, whole_accuracy)
    assert len(set(np.round(whole_loss, 6))) > 1  # the rows differ: a mix-up of rows would show


def test_failures_keep_their_step_and_reason() -> None:
    task = short(evaluators.get_task("quadratic"))
    rows = train_batch(task, [parse(NAN), library.get("adamw"), parse(DIVERGING)], seed=0)
    assert isinstance(rows[0], EvaluationFailed) and rows[0].reason == "nan loss at step 4" and rows[0].step == 4
    assert isinstance(rows[1], dict) and rows[1]["batch"] == 3
    assert isinstance(rows[2], EvaluationFailed) and rows[2].reason.startswith("loss diverged at step")


def test_evaluate_batch_results_and_invalid_rows() -> None:
    task = short(evaluators.get_task("quadratic"))
    texts = [library.SOURCES["adamw"], "def train(w, g, m, v, lr):\n    return w, m\n", library.SOURCES["lion"], NAN]
    results = evaluate_batch(texts, task, seed=1, max_rows=2)
    assert [r["status"] for r in results] == ["ok", "failed", "ok", "failed"]
    assert results[1]["error"].startswith("invalid request: ") and results[1]["metrics"] == {}
    assert results[3]["error"] == "nan loss at step 4" and results[3]["metrics"]["steps"] == 4
    expected = evaluate_program(library.get("lion"), task, seed=1)
    np.testing.assert_allclose(results[2]["metrics"]["val_loss"], expected["val_loss"], rtol=RTOL)
    assert evaluate_batch(texts, "no-such-task")[0]["error"].startswith("invalid request: unknown task")


def test_out_of_memory_splits_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    real = batched_module.train_batch

    def small_only(task, programs, **kwargs):  # a device that holds two rows at most
        if len(programs) > 2:
            raise torch.OutOfMemoryError("simulated")
        return real(task, programs, **kwargs)

    monkeypatch.setattr(batched_module, "train_batch", small_only)
    task = short(evaluators.get_task("quadratic"))
    names = library.names()
    results = evaluate_batch([library.get(n) for n in names], task, seed=0, max_rows=len(names))
    assert all(r["status"] == "ok" for r in results)
    assert {r["metrics"]["batch"] for r in results} <= {1, 2}


def test_max_batch_fits_the_bound() -> None:
    task = evaluators.get_task("mnist1d-mlp")
    per_row = batched_module.row_bytes(task)
    assert max_batch(task, memory_bytes=10 * per_row) == 10
    assert max_batch(task, memory_bytes=per_row // 2) == 1
    assert max_batch(task, memory_bytes=10**15, limit=64) == 64
    assert max_batch("mnist1d-mlp@10x", memory_bytes=10**9) < max_batch(task, memory_bytes=10**9)
    with pytest.raises(ValueError):
        max_batch(task, memory_bytes=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,count", [("quadratic", 40), ("mnist1d-mlp", 8)])
def test_rows_equal_one_at_a_time_on_cuda(name: str, count: int) -> None:
    """On a GPU the batch runs the grouped interpreter (one kernel per group of equal instructions): each row equals
    the one-at-a-time evaluation of its program on the same GPU, failures included."""
    task = short(evaluators.get_task(name))
    members = mutants(count, seed=len(name))
    rows = train_batch(task, members, seed=3, device="cuda")
    for program, row in zip(members, rows):
        try:
            expected: dict | EvaluationFailed = evaluate_program(program, task, seed=3, device="cuda")
        except EvaluationFailed as failure:
            expected = failure
        assert_same(row, expected, task, program)
    assert sum(isinstance(row, EvaluationFailed) for row in rows) >= 2
