"""Fitness normalised by AdamW, and the cached AdamW baselines."""

from __future__ import annotations

import pytest

import evaluators
from evaluators import fitness

# mnist1d-mlp scores accuracy; quadratic and digits-cnn score -loss
BASELINES = {"mnist1d-mlp": 0.6, "quadratic": -2.0, "digits-cnn": -0.2}


def test_adamw_scores_normalise_to_one() -> None:
    assert evaluators.normalized_fitness(BASELINES, BASELINES) == pytest.approx(1.0)


def test_accuracy_is_divided_and_loss_is_inverted() -> None:
    assert evaluators.normalized_fitness({"mnist1d-mlp": 0.9}, BASELINES) == pytest.approx(1.5)
    assert evaluators.normalized_fitness({"quadratic": -1.0}, BASELINES) == pytest.approx(2.0)  # half the loss
    assert evaluators.normalized_fitness({"quadratic": -4.0}, BASELINES) == pytest.approx(0.5)
    scores = {"mnist1d-mlp": 0.3, "quadratic": -1.0, "digits-cnn": -0.2}
    assert fitness.task_ratios(scores, BASELINES) == pytest.approx({"mnist1d-mlp": 0.5, "quadratic": 2.0,
                                                                    "digits-cnn": 1.0})
    mean = evaluators.normalized_fitness(scores, BASELINES, aggregate=fitness.MEAN)
    assert mean == pytest.approx((0.5 + 2.0 + 1.0) / 3)
    assert evaluators.normalized_fitness(scores, BASELINES) == pytest.approx(1.0)  # geometric: 0.5 x 2 x 1


def test_old_mean_counts_a_failed_task_as_zero() -> None:
    scores = {"mnist1d-mlp": None, "quadratic": -2.0}
    assert evaluators.normalized_fitness(scores, BASELINES, aggregate=fitness.MEAN) == pytest.approx(0.5)


def test_one_task_cannot_dominate_the_geometric_mean() -> None:
    # issue 11's winner: a 3.6x lower loss on one task, 0.56x AdamW's accuracy on the other
    scores = {"mnist1d-mlp": 0.6 * 0.56, "digits-cnn": -0.2 / 3.6}
    assert evaluators.normalized_fitness(scores, BASELINES, aggregate=fitness.MEAN) == pytest.approx(2.08)
    robust = evaluators.normalized_fitness(scores, BASELINES)
    assert robust == pytest.approx((2.0 * 0.56) ** 0.5)  # the gain is clipped to 2x, then a product
    assert robust < 1.1
    # a 1000x lower loss counts as 2x, no more
    assert evaluators.normalized_fitness({"quadratic": -0.002}, BASELINES) == pytest.approx(fitness.MAX_RATIO)


def test_a_failed_task_counts_as_the_floor_which_no_other_task_buys_back() -> None:
    failed = evaluators.normalized_fitness({"mnist1d-mlp": None, "quadratic": -0.001}, BASELINES)
    assert failed == pytest.approx((fitness.MIN_RATIO * fitness.MAX_RATIO) ** 0.5)
    assert failed < 1.0
    # zero accuracy is as bad as a failure, and not -inf
    assert evaluators.normalized_fitness({"mnist1d-mlp": 0.0}, BASELINES) == pytest.approx(fitness.MIN_RATIO)
    assert evaluators.normalized_fitness({"mnist1d-mlp": None}, BASELINES) == pytest.approx(fitness.MIN_RATIO)
    bounds = {"min_ratio": 0.1, "max_ratio": 10.0}
    assert evaluators.normalized_fitness({"mnist1d-mlp": None, "quadratic": -0.002}, BASELINES,
                                         **bounds) == pytest.approx(1.0)


def test_lr_grid_check_and_best_lr() -> None:
    assert fitness.check_lr_grid([4, 0.25, 1, 1]) == (0.25, 1.0, 4.0)
    for bad in ([], [0.0], [-1.0], [float("nan")], "0.25,1", [True], list(range(1, 30))):
        with pytest.raises(evaluators.TaskError, match="lr grid"):
            fitness.check_lr_grid(bad)
    ok = {"status": "ok"}
    results = {0.1: {**ok, "metrics": {"fitness": 0.5}}, 0.4: {**ok, "metrics": {"fitness": 0.7}},
               1.6: {"status": "failed", "metrics": {}, "error": "nan loss"}}
    assert fitness.best_on_grid(results)[0] == 0.4
    tie = {0.1: {**ok, "metrics": {"fitness": 0.7}}, 0.4: {**ok, "metrics": {"fitness": 0.7}}, 1.6: results[1.6]}
    assert fitness.best_on_grid(tie)[0] == 0.4  # a tie goes to the middle of the grid
    failed = {lr: results[1.6] for lr in (0.1, 0.4, 1.6)}
    assert fitness.best_on_grid(failed) == (0.4, results[1.6])


@pytest.mark.parametrize(
    "scores, baselines, message",
    [
        ({}, BASELINES, "at least one task"),
        ({"modadd-transformer": 0.5}, BASELINES, "no baseline score for task 'modadd-transformer'"),
        ({"nope": 0.5}, {"nope": 0.5}, "unknown task 'nope'"),
        ({"quadratic": -1.0}, {"quadratic": 2.0}, "must be negative"),
        ({"mnist1d-mlp": 0.5}, {"mnist1d-mlp": 0.0}, "must be positive"),
        ({"mnist1d-mlp": 0.5}, BASELINES, "unknown fitness aggregate 'median'"),
        ({"mnist1d-mlp": 0.5}, BASELINES, "ratio bounds"),
    ],
)
def test_bad_inputs_raise_task_errors(scores: dict, baselines: dict, message: str) -> None:
    options = {"aggregate": "median"} if "aggregate" in message else {"max_ratio": 0.5} if "bounds" in message else {}
    with pytest.raises(evaluators.TaskError, match=message):
        evaluators.normalized_fitness(scores, baselines, **options)


def test_baseline_scores_evaluate_adamw_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = fitness._baseline

    def counting(*args):
        calls.append(args[:2])
        return original(*args)

    monkeypatch.setattr(fitness, "_BASELINES", {})
    monkeypatch.setattr(fitness, "_baseline", counting)
    first = evaluators.baseline_scores(["quadratic", "quadratic@10x"], seed=0)
    again = evaluators.baseline_scores(["quadratic"], seed=0)
    assert calls == [("quadratic", 0), ("quadratic@10x", 0)]
    assert again["quadratic"] == first["quadratic"]
    direct = evaluators.evaluate({"program": fitness.library.SOURCES["adamw"], "task": "quadratic", "seed": 0})
    assert first["quadratic"] == direct["metrics"]["fitness"]
    assert first["quadratic@10x"] > first["quadratic"]  # a longer run fits the regression better
    assert evaluators.normalized_fitness(first, first) == pytest.approx(1.0)
