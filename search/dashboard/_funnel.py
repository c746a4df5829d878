"""The validation funnel's table read back from the sweeps a ``RUN/validate`` job has recorded so far.

``search.funnel.Funnel`` runs the funnel (and may add AdamW as a candidate); this module only reads: it judges each
stage as the funnel does (``_judge`` on a scale stage: tuned fitness over AdamW's, must be > 1; ``_judge_unseen`` on
the unseen stage: per unseen task the mean over the seeds of the ratio to AdamW at the same seed with its 95 %
interval, passed with wins on at least half of the tasks) wherever the sweeps are all recorded, and marks the rest
"pending", so the table fills in while the validation runs.

The table is a list of ``columns`` (``key``, ``title``) and rows whose ``cells`` map a column's key to its text: a
scale stage's aggregate ratio under the stage's name (``10x``), each unseen task's mean ratio and interval under
``unseen:<task>`` and the unseen wins under ``unseen``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from evaluators import TaskError
from search.cli._validate import _ratio_text
from search.funnel import (
    ALL_STAGES, BASELINE, DEFAULT_SEEDS, UNSEEN, _judge, _judge_unseen, _sweep_of, evaluation_key, interval_method,
    scaled_tasks, unseen_key, unseen_tasks,
)
from search.store import CandidateRecord, EvaluationRecord, JobRecord, Store

VALIDATE_SUFFIX = "/validate"  # search.jobs._validate.validation_name
MAX_K = 1000
MAX_SEEDS = 1000  # a stored setting beyond this is taken as damaged, not read as that many sweeps per task
FINISHED = ("ok", "failed")


@dataclass(frozen=True)
class Settings:
    """What the table needs of a stored ``ValidateConfig``: ``stages`` as the funnel runs them (the unseen stage
    dropped when no unseen task is left), the funnel's ``seed`` (None: the target job's), the resolved ``unseen``
    tasks and the ``seeds`` each is swept at."""

    k: int
    stages: tuple[str, ...]
    seed: int | None
    unseen: tuple[str, ...]
    seeds: int


@dataclass
class _Table:
    """The cells, verdicts and AdamW's recorded sweeps, filled in stage by stage."""

    cells: dict[int, dict[str, str]]
    verdicts: dict[int, str]
    adamw: list[dict[str, Any]] = field(default_factory=list)


def funnel_table(store: Store, job: JobRecord) -> dict[str, Any] | None:
    """The funnel of ``job`` (a search with a validation, or the validation itself), or None if it has none."""
    if job.name.endswith(VALIDATE_SUFFIX) and isinstance(job.config, Mapping) and "target" in job.config:
        target, validation = store.get_job(str(job.config["target"])), job
    else:
        target, validation = job, store.get_job(job.name + VALIDATE_SUFFIX)
    if target is None or validation is None or not isinstance(target.config, Mapping):
        return None
    tasks = target.config.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        tasks = None
    settings = None if tasks is None else read_settings(validation.config, tasks)
    if settings is None or tasks is None:
        return {"job": validation.name, "status": validation.status, "error": "unreadable validation settings"}
    seed = target.seed if settings.seed is None else settings.seed
    try:
        judged = _judged(store, target, tasks, settings, seed)
    except TaskError as error:  # a task this process does not know (a plug-in's), a baseline of the wrong sign ...
        return {"job": validation.name, "status": validation.status, "error": f"cannot judge the sweeps: {error}"}
    return {"job": validation.name, "status": validation.status, "stages": list(settings.stages), "tasks": tasks,
            "seed": seed, "unseen": list(settings.unseen), "seeds": settings.seeds if settings.unseen else 1,
            "interval": interval_method() if settings.unseen else "", "columns": columns(settings), "error": None,
            **judged}


def read_settings(config: Any, tasks: Sequence[str]) -> Settings | None:
    """The settings of a stored ``ValidateConfig`` for a search over ``tasks``, or None if it is not one. A config
    recorded before the unseen stage existed has no ``unseen`` and ``seeds`` (and no unseen stage); one with the stage
    but without the tasks resolved means the built-in tasks the search did not use, as the funnel takes it."""
    if not isinstance(config, Mapping):
        return None
    k, stages, seed = config.get("k"), config.get("stages"), config.get("seed")
    unseen, seeds = config.get("unseen"), config.get("seeds", DEFAULT_SEEDS)
    if not isinstance(k, int) or not 1 <= k <= MAX_K or not isinstance(stages, list) or not stages:
        return None
    if any(s not in ALL_STAGES for s in stages) or not (seed is None or isinstance(seed, int)):
        return None
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= MAX_SEEDS:
        return None
    if unseen is not None and (not isinstance(unseen, list)
                               or not all(isinstance(t, str) and t and "@" not in t for t in unseen)):
        return None
    if UNSEEN not in stages:
        resolved: tuple[str, ...] = ()
    elif unseen is None:
        resolved = unseen_tasks(tasks)
    else:
        resolved = tuple(unseen)
    # with no unseen task left the funnel drops the stage (search.funnel.Funnel.stages)
    return Settings(k, tuple(s for s in stages if s != UNSEEN or resolved), seed, resolved, seeds)


def columns(settings: Settings) -> list[dict[str, str]]:
    """The table's stage columns, in order: each scale stage's ratio to AdamW; each unseen task's mean ratio with its
    interval, then the unseen wins."""
    found = []
    for stage in settings.stages:
        if stage == UNSEEN:
            found += [{"key": f"{UNSEEN}:{task}", "title": f"{task} (unseen)"} for task in settings.unseen]
            found.append({"key": UNSEEN, "title": f"{UNSEEN} wins"})
        else:
            found.append({"key": stage, "title": f"{stage} vs AdamW"})
    return found


def _judged(store: Store, target: JobRecord, tasks: list[str], settings: Settings, seed: int) -> dict[str, Any]:
    entrants = store.top_k(target.id, settings.k, task="+".join(tasks))
    baseline = _baseline(store, target)
    table = _Table(cells={r.candidate.id: {} for r in entrants},
                   verdicts={r.candidate.id: "pending" for r in entrants})
    alive = [r.candidate.id for r in entrants] if baseline is not None else []
    for stage in settings.stages:  # alive: the candidates known to have passed every stage so far
        if not alive or baseline is None:
            break
        if stage == UNSEEN:
            seeds = [seed + i for i in range(settings.seeds)]  # search.funnel.Funnel._units
            alive = _unseen_stage(store, target, baseline.id, alive, settings.unseen, seeds, table)
        else:
            alive = _scale_stage(store, target, baseline.id, alive, stage, tasks, table)
    for c in alive:
        table.verdicts[c] = "passed"
    keys = [c["key"] for c in columns(settings)]
    rows = [{"id": r.candidate.id, "hash": r.candidate.hash, "proxy": _finite(r.evaluation.fitness),
             "cells": {key: table.cells[r.candidate.id].get(key, "-") for key in keys},
             "verdict": table.verdicts[r.candidate.id]} for r in entrants]
    return {"baseline_id": None if baseline is None else baseline.id, "baseline": table.adamw, "rows": rows}


def _scale_stage(store: Store, target: JobRecord, baseline: int, alive: list[int], stage: str, tasks: list[str],
                 table: _Table) -> list[int]:
    """Judge ``alive`` on a scale stage (``_judge``); the candidates that go on to the next stage."""
    base = [store.get_evaluation(target.id, evaluation_key(baseline, t)) for t in scaled_tasks(tasks, stage)]
    if any(b is None or b.status not in FINISHED for b in base):
        for c in alive:
            table.cells[c][stage] = "pending"
        return []
    table.adamw += [_adamw_row(stage, b) for b in base if b is not None]
    if any(b is None or b.status != "ok" for b in base):
        for c in alive:
            table.cells[c][stage], table.verdicts[c] = "baseline failed", "stopped"
        return []
    scores = {b.task: b.fitness for b in base if b is not None}
    return [c for c in alive if _scale_cell(store, target, c, stage, tasks, scores, table)]


def _scale_cell(store: Store, target: JobRecord, candidate: int, stage: str, tasks: list[str],
                scores: dict[str, float], table: _Table) -> bool:
    """Fill the candidate's cell of ``stage``; True if it goes on to the next stage."""
    recorded = [store.get_evaluation(target.id, evaluation_key(candidate, t)) for t in scaled_tasks(tasks, stage)]
    if any(r is None or r.status not in FINISHED for r in recorded):
        table.cells[candidate][stage] = "pending"
        return False
    outcome = _judge(stage, [_sweep_of(r, stage) for r in recorded if r is not None], scores)
    if outcome.ratio is None:
        table.cells[candidate][stage], table.verdicts[candidate] = "failed", f"failed at {stage}"
        return False
    table.cells[candidate][stage] = f"{outcome.ratio:.4f}"
    if not outcome.passed:
        table.verdicts[candidate] = f"stopped at {stage}"
    return outcome.passed


def _unseen_stage(store: Store, target: JobRecord, baseline: int, alive: list[int], unseen: tuple[str, ...],
                  seeds: list[int], table: _Table) -> list[int]:
    """Judge ``alive`` on the unseen stage (``_judge_unseen``), task by task as the sweeps come in: a task's cell is
    filled once its sweeps and AdamW's are recorded at every seed, the wins and the verdict once every task's are.
    The candidates that pass."""
    base = {(t, s): store.get_evaluation(target.id, unseen_key(baseline, t, s)) for t in unseen for s in seeds}
    table.adamw += [_adamw_row(UNSEEN, b) for b in base.values() if b is not None and b.status in FINISHED]
    failed = {t for (t, _), b in base.items() if b is not None and b.status == "failed"}
    ready = [t for t in unseen if t not in failed and all(_finished(base[t, s]) for s in seeds)]
    scores = {(s.task, s.seed): s.fitness for s in (_sweep_of(b, UNSEEN) for b in base.values()
                                                     if b is not None and b.status == "ok")}
    return [c for c in alive if _unseen_cells(store, target, c, unseen, seeds, ready, failed, scores, table)]


def _unseen_cells(store: Store, target: JobRecord, candidate: int, unseen: tuple[str, ...], seeds: list[int],
                  ready: list[str], failed: set[str], scores: dict[tuple[str, int | None], float | None],
                  table: _Table) -> bool:
    """Fill the candidate's unseen cells; True if it passes the stage."""
    own = {(t, s): store.get_evaluation(target.id, unseen_key(candidate, t, s)) for t in ready for s in seeds}
    judged = [t for t in ready if all(_finished(own[t, s]) for s in seeds)]
    cells = table.cells[candidate]
    for task in unseen:
        cells[f"{UNSEEN}:{task}"] = "baseline failed" if task in failed else "pending"
    if failed:  # the funnel stops on a failed AdamW sweep: the stage cannot be judged
        cells[UNSEEN], table.verdicts[candidate] = "baseline failed", "stopped"
        return False
    cells[UNSEEN] = "pending"
    if not judged:
        return False
    sweeps = [_sweep_of(own[t, s], UNSEEN) for t in judged for s in seeds if own[t, s] is not None]
    outcome = _judge_unseen(sweeps, scores)  # each task's ratio depends on that task's sweeps alone
    for ratio in outcome.tasks:
        cells[f"{UNSEEN}:{ratio.task}"] = _ratio_text(ratio.ratio, ratio.low, ratio.high)
    if len(judged) < len(unseen):
        return False
    cells[UNSEEN] = f"{outcome.wins} of {len(outcome.tasks)}"
    if not outcome.passed:
        table.verdicts[candidate] = f"{'failed' if outcome.status == 'failed' else 'stopped'} at {UNSEEN}"
    return outcome.passed


def _adamw_row(stage: str, record: EvaluationRecord) -> dict[str, Any]:
    metrics = record.metrics if isinstance(record.metrics, Mapping) else {}
    return {"stage": stage, "task": record.task, "seed": record.seed if stage == UNSEEN else None,
            "fitness": _finite(record.fitness), "status": record.status, "lr": _finite(metrics.get("lr"))}


def _finished(record: EvaluationRecord | None) -> bool:
    return record is not None and record.status in FINISHED


def _baseline(store: Store, target: JobRecord) -> CandidateRecord | None:
    """The candidate the funnel takes as AdamW: the first-born of the job's candidates with AdamW's functional hash
    (None until the validation has added it, when the run had none)."""
    found = store.first_by_hash(target.id, _adamw_hash(), limit=1)
    return found[0] if found else None


@functools.lru_cache(maxsize=1)
def _adamw_hash() -> str:
    """AdamW's functional hash (it runs the probes: a few seconds, once per process)."""
    from programs import library
    from search.kinds import OptimizerKind

    return OptimizerKind().functional_hash(library.get(BASELINE))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
