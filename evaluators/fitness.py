"""Fitness over several tasks, normalised by AdamW's (AdamW = 1.0 on every task).

Each task gives a ratio to AdamW (``task_ratio``):

- ``ACCURACY`` tasks: ``score / baseline`` (accuracy relative to AdamW's).
- ``NEG_LOSS`` tasks (fitness = -validation loss): ``baseline / score`` = ``loss_AdamW / loss``, so halving the loss
  gives 2.0 and doubling it 0.5 — higher is still better.

The ratios are aggregated so that one task cannot dominate (``GEOMEAN``, the default): the geometric mean (the mean of
log-ratios) of the ratios clipped to ``[min_ratio, max_ratio]`` (default [1/4, 2]); a failed task (``None``) counts
as ``min_ratio``, the worst a task can give. Loss ratios have no upper bound (a 3.6x lower loss on one task made a
plain mean of 2.07 for an optimizer at 0.56x AdamW's accuracy on the other, issue 11): clipped, a gain on one task is
worth at most ``max_ratio`` and it is a product, so a 0.5x elsewhere cancels a 2x. ``MEAN`` is the previous
aggregate, kept to compare with older runs: the plain mean of the unclipped ratios, a failed task counting 0.0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

from evaluators.errors import EvaluationFailed, TaskError
from evaluators.evaluate import evaluate_program
from evaluators.tasks import ACCURACY, get_task
from programs import library

BASELINE = "adamw"
_TINY_LOSS = 1e-12
GEOMEAN = "geomean"  # the geometric mean of clipped ratios, a failure counting as the floor (the default)
MEAN = "mean"  # the plain mean of ratios, a failure counting 0.0 (runs before the robust aggregate)
AGGREGATES = (GEOMEAN, MEAN)
MAX_RATIO = 2.0  # GEOMEAN: a task's ratio counts at most this much ...
MIN_RATIO = 0.25  # ... and at least this much; a failed task counts as MIN_RATIO
_BASELINES: dict[tuple[str, int, str], float] = {}  # per-process cache: (task, seed, device) -> AdamW's fitness


def normalized_fitness(
    per_task_scores: Mapping[str, float | None],
    baselines: Mapping[str, float],
    *,
    aggregate: str = GEOMEAN,
    min_ratio: float = MIN_RATIO,
    max_ratio: float = MAX_RATIO,
) -> float:
    """The aggregate over ``per_task_scores`` (task name → fitness, None if failed) of each score's ratio to the
    baseline's score on that task (see the module docstring). Raises ``TaskError`` for an empty mapping, an
    unknown task, a missing baseline, a baseline of the wrong sign or an unknown aggregate."""
    if not per_task_scores:
        raise TaskError("normalized_fitness needs at least one task score")
    if aggregate not in AGGREGATES:
        raise TaskError(f"unknown fitness aggregate {aggregate!r}; choose from {', '.join(AGGREGATES)}")
    if not 0 < min_ratio <= 1 <= max_ratio < math.inf:
        raise TaskError(f"the ratio bounds must satisfy 0 < min_ratio <= 1 <= max_ratio, got {min_ratio}, {max_ratio}")
    ratios = task_ratios(per_task_scores, baselines)
    if aggregate == MEAN:
        return sum(0.0 if r is None else r for r in ratios.values()) / len(ratios)
    logs = [math.log(min_ratio if r is None else min(max(r, min_ratio), max_ratio)) for r in ratios.values()]
    return math.exp(sum(logs) / len(logs))


def task_ratios(per_task_scores: Mapping[str, float | None], baselines: Mapping[str, float]) -> dict[str, float | None]:
    """Each task's ratio to the baseline (unclipped; None for a failed task), in the order of ``per_task_scores``."""
    return {name: task_ratio(name, score, baselines) for name, score in per_task_scores.items()}


def task_ratio(name: str, score: float | None, baselines: Mapping[str, float]) -> float | None:
    """The score's ratio to the baseline's on task ``name`` (module docstring); None when ``score`` is None."""
    if name not in baselines:
        raise TaskError(f"no baseline score for task {name!r}; baselines cover {sorted(baselines)}")
    baseline = baselines[name]
    if score is None:
        return None
    if get_task(name).fitness == ACCURACY:
        if baseline <= 0:
            raise TaskError(f"baseline accuracy on {name!r} is {baseline}; it must be positive")
        return score / baseline
    if baseline >= 0:
        raise TaskError(f"baseline on {name!r} is {baseline}; a -loss fitness must be negative")
    return -baseline / max(-score, _TINY_LOSS)


def baseline_scores(
    tasks: Iterable[str], seed: int, *, device: str = "cpu", cache_dir: Path | str | None = None
) -> dict[str, float]:
    """AdamW's fitness (``programs.library`` adamw at each task's default lr) on each task, cached per process.

    Raises ``EvaluationFailed`` if AdamW itself fails on a task (then no normalisation is meaningful).
    """
    scores = {}
    for name in tasks:
        key = (name, seed, str(device))
        if key not in _BASELINES:
            _BASELINES[key] = _baseline(name, seed, device, cache_dir)
        scores[name] = _BASELINES[key]
    return scores


def _baseline(name: str, seed: int, device: str, cache_dir: Path | str | None) -> float:
    try:
        metrics = evaluate_program(library.get(BASELINE), name, seed=seed, device=device, cache_dir=cache_dir)
    except EvaluationFailed as failure:
        raise EvaluationFailed(f"baseline {BASELINE} failed on {name}: {failure.reason}", failure.step) from None
    return float(metrics["fitness"])


# -- the learning-rate grid ---------------------------------------------------------------------------------------

LR_GRID = (0.25, 1.0, 4.0)  # the grid ``--lr-grid`` turns on: a candidate is scored at its best of base_lr x these
NO_GRID = (1.0,)  # the task's base lr alone (the search's default: one training per task)
MAX_GRID = 16


def check_lr_grid(grid: object) -> tuple[float, ...]:
    """``grid`` as a sorted tuple of distinct lr multipliers; ``TaskError`` unless it is 1..16 positive finite numbers."""
    if isinstance(grid, (str, bytes)) or not hasattr(grid, "__iter__"):
        raise TaskError(f"an lr grid is a list of positive multipliers of the base lr, got {grid!r:.80}")
    values = list(grid)  # type: ignore[call-overload]
    if not 1 <= len(values) <= MAX_GRID or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0 for x in values
    ):
        raise TaskError(f"an lr grid is 1..{MAX_GRID} positive finite multipliers of the base lr, got {values!r:.80}")
    return tuple(sorted({float(x) for x in values}))


def best_on_grid(results: Mapping[float, Mapping[str, object]]) -> tuple[float, Mapping[str, object]]:
    """The (lr, result) with the highest ``metrics["fitness"]`` among results whose ``status`` is ``"ok"`` (ties: the
    lr nearer the base lr, then the smaller); when every lr failed, the result at the middle lr of the grid."""
    ok = {lr: r for lr, r in results.items() if r.get("status") == "ok"}
    lrs = sorted(results)
    middle = lrs[len(lrs) // 2]
    if not ok:
        return middle, results[middle]

    def key(lr: float) -> tuple[float, float, float]:
        metrics = ok[lr]["metrics"]
        assert isinstance(metrics, Mapping)
        return (-float(metrics["fitness"]), abs(math.log(lr / middle)), lr)  # type: ignore[arg-type]

    best = min(ok, key=key)
    return best, ok[best]
