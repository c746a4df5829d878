"""The validation funnel's table read back from the sweeps a ``RUN/validate`` job has recorded so far.

``search.funnel.Funnel`` runs the funnel (and may add AdamW as a candidate); this module only reads: it judges each
stage as the funnel does (``_judge``: tuned fitness over AdamW's, must be > 1) wherever the stage's sweeps are all
recorded, and marks the rest "pending", so the table fills in while the validation runs.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping

from search.funnel import ALL_STAGES, BASELINE, STAGES, _judge, _sweep_of, evaluation_key
from search.store import CandidateRecord, JobRecord, Store

VALIDATE_SUFFIX = "/validate"  # search.jobs._validate.validation_name
MAX_K = 1000


def funnel_table(store: Store, job: JobRecord) -> dict[str, Any] | None:
    """The funnel of ``job`` (a search with a validation, or the validation itself), or None if it has none."""
    if job.name.endswith(VALIDATE_SUFFIX) and isinstance(job.config, Mapping) and "target" in job.config:
        target, validation = store.get_job(str(job.config["target"])), job
    else:
        target, validation = job, store.get_job(job.name + VALIDATE_SUFFIX)
    if target is None or validation is None or not isinstance(target.config, Mapping):
        return None
    settings = _settings(validation.config)
    tasks = target.config.get("tasks")
    if settings is None or not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        return {"job": validation.name, "status": validation.status, "error": "unreadable validation settings"}
    k, stages, seed = settings
    return {"job": validation.name, "status": validation.status, "stages": list(stages), "tasks": tasks,
            "seed": target.seed if seed is None else seed, "error": None,
            **_judged(store, target, tasks, k, stages)}


def _settings(config: Any) -> tuple[int, tuple[str, ...], int | None] | None:
    """``(k, stages, seed)`` of a stored ``ValidateConfig``, or None if it is not one."""
    if not isinstance(config, Mapping):
        return None
    k, stages, seed = config.get("k"), config.get("stages"), config.get("seed")
    if not isinstance(k, int) or not 1 <= k <= MAX_K or not isinstance(stages, list) or not stages:
        return None
    if any(s not in ALL_STAGES for s in stages) or not (seed is None or isinstance(seed, int)):
        return None
    return k, tuple(s for s in stages if s in STAGES), seed  # the unseen stage is shown by `autodisco validate` only


def _judged(store: Store, target: JobRecord, tasks: list[str], k: int, stages: tuple[str, ...]) -> dict[str, Any]:
    entrants = store.top_k(target.id, k, task="+".join(tasks))
    baseline = _baseline(store, target)
    cells: dict[int, dict[str, str]] = {r.candidate.id: {} for r in entrants}
    verdicts: dict[int, str] = {r.candidate.id: "pending" for r in entrants}
    adamw: list[dict[str, Any]] = []
    alive = [r.candidate.id for r in entrants]
    for stage in stages:
        if not alive or baseline is None:
            break
        base = [store.get_evaluation(target.id, evaluation_key(baseline.id, f"{t}@{stage}")) for t in tasks]
        if any(b is None or b.status not in ("ok", "failed") for b in base):
            for c in alive:
                cells[c][stage] = "pending"
            break
        adamw += [{"stage": stage, "task": b.task, "fitness": _finite(b.fitness), "status": b.status,
                   "lr": _finite((b.metrics or {}).get("lr") if isinstance(b.metrics, Mapping) else None)}
                  for b in base]
        if any(b.status != "ok" for b in base):
            for c in alive:
                cells[c][stage], verdicts[c] = "baseline failed", "stopped"
            break
        scores = {b.task: b.fitness for b in base}
        alive = [c for c in alive if _judge_cell(store, target, c, stage, tasks, scores, cells, verdicts)]
    for c in alive:
        if verdicts[c] == "pending" and len(cells[c]) == len(stages) and "pending" not in cells[c].values():
            verdicts[c] = "passed"
    rows = [{"id": r.candidate.id, "hash": r.candidate.hash, "proxy": _finite(r.evaluation.fitness),
             "stages": {s: cells[r.candidate.id].get(s, "-") for s in stages}, "verdict": verdicts[r.candidate.id]}
            for r in entrants]
    return {"baseline_id": None if baseline is None else baseline.id, "baseline": adamw, "rows": rows}


def _judge_cell(store: Store, target: JobRecord, candidate: int, stage: str, tasks: list[str],
                scores: dict[str, float], cells: dict[int, dict[str, str]], verdicts: dict[int, str]) -> bool:
    """Fill the candidate's cell of ``stage``; True if it goes on to the next stage."""
    recorded = [store.get_evaluation(target.id, evaluation_key(candidate, f"{t}@{stage}")) for t in tasks]
    if any(r is None or r.status not in ("ok", "failed") for r in recorded):
        cells[candidate][stage] = "pending"
        return False
    outcome = _judge(stage, [_sweep_of(r, stage) for r in recorded if r is not None], scores)
    if outcome.ratio is None:
        cells[candidate][stage], verdicts[candidate] = "failed", f"failed at {stage}"
        return False
    cells[candidate][stage] = f"{outcome.ratio:.4f}"
    if not outcome.passed:
        verdicts[candidate] = f"stopped at {stage}"
    return outcome.passed


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
