"""The recurrent and autoencoding proxy tasks: their data, their models (the GRU against torch's GRUCell), their
evaluations one at a time and batched."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import evaluators
from evaluators import data
from evaluators.models import ModelSpec, build
from programs import library

NEW = ("markov-gru", "digits-autoencoder")


def test_new_tasks_have_three_scales_that_grow() -> None:
    for base in NEW:
        small, medium, large = (evaluators.get_task(n) for n in (base, f"{base}@10x", f"{base}@100x"))
        assert small.steps < medium.steps < large.steps and small.model.width < medium.model.width < large.model.width


def test_markov_windows_are_labelled_with_the_next_character_of_one_stream() -> None:
    pool = data.markov(None)
    again = data.markov(None)
    np.testing.assert_array_equal(pool.x, again.x)
    assert pool.x.shape == (data.MARKOV_SAMPLES, data.MARKOV_LENGTH) and pool.x.dtype == np.int64
    assert pool.n_classes == pool.vocab == data.MARKOV_VOCAB
    np.testing.assert_array_equal(pool.x[1:, -1], pool.y[:-1])  # window i+1 ends with the label of window i
    np.testing.assert_array_equal(pool.x[1:, :-1], pool.x[:-1, 1:])
    # order 2: the last two characters predict the next far better than chance (1/16)
    counts = np.zeros((16, 16, 16))
    np.add.at(counts, (pool.x[:, -2], pool.x[:, -1], pool.y), 1)
    assert counts.max(axis=2).sum() / len(pool.y) > 0.4


def test_the_autoencoding_target_is_the_input() -> None:
    pool = data.digits_autoencoding(None)
    assert pool.x.shape == (1797, 64) and pool.n_classes == 0
    np.testing.assert_array_equal(pool.x, pool.y)
    assert 0.0 <= pool.x.min() and pool.x.max() <= 1.0


def test_char_gru_is_torch_gru_cell() -> None:
    pool = data.markov(None)
    model = build(ModelSpec("gru", 8, 1), pool, seed=0)
    cell = torch.nn.GRUCell(8, 8)
    with torch.no_grad():
        cell.weight_ih.copy_(model.inputs[0].weight)
        cell.bias_ih.copy_(model.inputs[0].bias)
        cell.weight_hh.copy_(model.hidden[0].weight)
        cell.bias_hh.copy_(model.hidden[0].bias)
    tokens = torch.from_numpy(pool.x[:5])
    h = torch.zeros(5, 8)
    for t in range(tokens.shape[1]):
        h = cell(model.embed(tokens[:, t]), h)
    torch.testing.assert_close(model(tokens), model.head(h))
    assert build(ModelSpec("gru", 8, 2), pool, seed=0)(tokens).shape == (5, 16)


def test_adamw_learns_both_tasks_and_plain_sgd_is_worse() -> None:
    adamw, sgd = library.SOURCES["adamw"], library.SOURCES["sgd"]
    gru = evaluators.evaluate({"program": adamw, "task": "markov-gru", "seed": 0})
    assert gru["status"] == "ok" and gru["metrics"]["val_accuracy"] > 3 / 16  # chance: 1/16
    losses = [evaluators.evaluate({"program": p, "task": "digits-autoencoder", "seed": 0})["metrics"]["val_loss"]
              for p in (adamw, sgd)]
    assert losses[0] < 0.5 * losses[1] and losses[0] < 0.06  # the pixels' variance is ≈0.1


@pytest.mark.parametrize("name", NEW)
def test_batched_rows_equal_one_at_a_time(name: str) -> None:
    task = replace(evaluators.get_task(name), steps=20)
    programs = [library.get(n) for n in ("adamw", "lion", "momentum")]
    rows = evaluators.evaluate_batch(programs, task, seed=1)
    for program, row in zip(programs, rows):
        alone = evaluators.evaluate_program(program, task, seed=1)
        assert row["status"] == "ok"
        np.testing.assert_allclose(row["metrics"]["val_loss"], alone["val_loss"], rtol=1e-4)
