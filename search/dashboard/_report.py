"""What the run page shows, as JSON-ready values read from one job: its summary, the search curve, failures by
reason, the top candidates with a diff against their parent, a candidate's lineage and the per-epoch curves of
NAS jobs. Everything here only reads; the summaries and groupings are the CLI's own (``autodisco runs ...``)."""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from search.cli._common import search_task
from search.cli._ranking import lineage_rows, ranked_row
from search.cli._report import job_summary, resolve_candidate
from search.cli._runs import failure_reasons
from search.dashboard._funnel import funnel_table
from search.store import CandidateRecord, JobRecord, Store

TOP_SHOWN = 10
CURVE_WINDOW = 50  # evaluations per rolling median / hit rate, as ``autodisco runs plot`` draws them
CURVE_POINTS = 2000  # at most this many points of a long search are sent to the page (every n-th, and the last)
ALPHA_EPOCHS = 200  # α of at most the last this many epochs
ALPHA_MAX_ROWS, ALPHA_MAX_COLUMNS = 256, 64
_EPOCH_KEY = re.compile(r"^(?:s(\d+)-)?epoch-(\d+)$")  # DARTS/train: epoch-N; few-shot sub-supernets: sS-epoch-N


def run_report(store: Store, job: JobRecord) -> dict[str, Any]:
    """Everything the run page shows about ``job``."""
    task = search_task(job)
    epochs = epoch_curves(store, job, store.list_evaluations(job.id)) if job.kind == "architecture" else None
    return {
        "summary": job_summary(store, job),
        "config": job.config,
        "curve": None if epochs is not None else search_curve(store, job),  # epochs are not a search's evaluations
        "failures": failure_reasons([e.error for e in store.list_evaluations(job.id, status="failed")]),
        "top": top_candidates(store, job, task),
        "epochs": epochs,
        "funnel": funnel_table(store, job),
        "related": [{"name": other.name, "kind": other.kind, "status": other.status} for other in store.list_jobs()
                    if other.name != job.name and (other.name.startswith(job.name + "/")
                                                   or job.name.startswith(other.name + "/"))],
    }


def search_curve(store: Store, job: JobRecord) -> dict[str, Any]:
    """Best-so-far and rolling median fitness and the cache hit rate against evaluations (``runs plot``'s data)."""
    from search.plot import search_curves  # numpy and matplotlib: only once a run is shown

    points = store.best_so_far(job.id, task=search_task(job))
    curves = search_curves(points, CURVE_WINDOW)
    stride = max(1, math.ceil(len(points) / CURVE_POINTS))
    chosen = sorted(set(range(0, len(points), stride)) | ({len(points) - 1} if points else set()))
    return {
        "evaluations": len(points), "window": CURVE_WINDOW, "every": stride,
        "order": [int(curves.order[i]) for i in chosen],
        "fitness": [_number(curves.fitness[i]) for i in chosen],
        "best": [_number(curves.best[i]) for i in chosen],
        "median": [_number(curves.median[i]) for i in chosen],
        "hit_rate": [_number(curves.hit_rate[i]) for i in chosen],
        "cumulative_hit_rate": [_number(curves.cumulative_hit_rate[i]) for i in chosen],
        "failed": int(curves.failed.sum()), "cached": int(curves.cached.sum()),
    }


def top_candidates(store: Store, job: JobRecord, task: str | None, k: int = TOP_SHOWN) -> list[dict[str, Any]]:
    """The ``k`` best candidates, one per functional hash (``runs top``), each with a unified diff of its text
    against its first parent's (empty without a recorded parent)."""
    rows = [ranked_row(rank, entry) for rank, entry in enumerate(store.top_k(job.id, k, task=task), start=1)]
    for row in rows:
        parent = _candidate(store, row["parent_ids"][0]) if row["parent_ids"] else None
        row["parent"] = None if parent is None else parent.id
        row["diff"] = "" if parent is None else program_diff(parent.id, parent.text, row["id"], row["program"])
    return rows


def program_diff(parent_id: int, parent_text: str, child_id: int, child_text: str) -> str:
    """``difflib``'s unified diff from the parent's program to the child's."""
    lines = difflib.unified_diff(parent_text.splitlines(), child_text.splitlines(),
                                 f"candidate {parent_id} (parent)", f"candidate {child_id}", lineterm="")
    return "\n".join(lines)


def lineage(store: Store, job: JobRecord, ident: str) -> dict[str, Any]:
    """The ancestors of the candidate ``ident`` (an id or a hash prefix, as ``runs lineage`` takes), breadth-first
    with their depth, each with the diff against its first parent when that parent is in the lineage."""
    rows = lineage_rows(store, resolve_candidate(store, job, ident))
    by_id = {r["id"]: r for r in rows}
    for row in rows:
        parent = by_id.get(row["parent_ids"][0]) if row["parent_ids"] else None
        row["diff"] = "" if parent is None else program_diff(parent["id"], parent["program"], row["id"],
                                                             row["program"])
    return {"candidate": rows[0]["id"], "rows": rows}


def epoch_curves(store: Store, job: JobRecord, evaluations: list[Any]) -> dict[str, Any] | None:
    """Per-epoch figures of a NAS job, or None for a search: from its ``epoch-N`` evaluations (DARTS, genotype
    training; few-shot ``sS-epoch-N`` per sub-supernet), else from the epoch history its checkpoint holds (one-shot
    supernets, with the ranking's Kendall τ once trained)."""
    series: dict[str, dict[int, dict[str, float]]] = {}
    genotypes: list[dict[str, Any]] = []
    alphas: list[dict[str, Any]] = []
    for evaluation in evaluations:
        found = _EPOCH_KEY.match(evaluation.key)
        if found is None or not isinstance(evaluation.metrics, dict):
            continue
        name = "" if found.group(1) is None else f"sub-supernet {found.group(1)}"
        epoch = int(found.group(2))
        series.setdefault(name, {})[epoch] = _numbers(evaluation.metrics)
        if isinstance(evaluation.metrics.get("genotype"), str):
            genotypes.append({"series": name, "epoch": epoch, "candidate": evaluation.candidate_id,
                              "genotype": evaluation.metrics["genotype"]})
        cells = {cell: _matrix(evaluation.metrics.get(f"alpha_{cell}")) for cell in ("normal", "reduce")}
        if name == "" and all(m is not None for m in cells.values()):
            alphas.append({"epoch": epoch, **cells})
    ranking = None
    if not series:
        checkpoint = store.latest_checkpoint(job.id)
        state = checkpoint.state if checkpoint is not None and isinstance(checkpoint.state, dict) else {}
        history = state.get("history")
        if isinstance(history, list):
            rows = [r for r in history if isinstance(r, dict) and isinstance(r.get("epoch"), int)]
            series[""] = {r["epoch"]: _numbers(r) for r in rows}
        ranking = _numbers(state.get("ranking"))
    if not series:
        return None
    curves = []
    for name, by_epoch in sorted(series.items()):
        epochs = sorted(by_epoch)
        metrics = sorted({m for values in by_epoch.values() for m in values} - {"epoch"})
        curves.append({"name": name, "epochs": epochs,
                       "metrics": {m: [by_epoch[e].get(m) for e in epochs] for m in metrics}})
    alphas.sort(key=lambda a: a["epoch"])
    return {"series": curves, "genotypes": _changes(genotypes), "ranking": ranking or None,
            "alpha": {"primitives": _primitives(job.config), "epochs": alphas[-ALPHA_EPOCHS:]} if alphas else None}


def _matrix(value: Any) -> list[list[float]] | None:
    """α of one cell as softmax weights per edge (rows), or None unless ``value`` is a small matrix of finite
    numbers (a database is untrusted)."""
    if not isinstance(value, list) or not 0 < len(value) <= ALPHA_MAX_ROWS:
        return None
    rows = []
    for row in value:
        if (not isinstance(row, list) or not 0 < len(row) <= ALPHA_MAX_COLUMNS or len(row) != len(value[0])
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row)):
            return None
        top = max(row)
        weights = [math.exp(v - top) for v in row]
        rows.append([w / sum(weights) for w in weights])
    return rows


def _primitives(config: Any) -> list[str] | None:
    """The operation names of a DARTS job's supernet (its α's columns), if its config holds them."""
    try:
        names = config["search"]["net"]["primitives"]
    except (KeyError, TypeError):
        return None
    return list(names) if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def _changes(genotypes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each epoch's genotype, marked ``changed`` when it differs from the previous epoch's of the same series."""
    last: dict[str, str] = {}
    for row in sorted(genotypes, key=lambda r: (r["series"], r["epoch"])):
        row["changed"] = row["series"] in last and last[row["series"]] != row["genotype"]
        last[row["series"]] = row["genotype"]
    return sorted(genotypes, key=lambda r: (r["series"], r["epoch"]))


def _numbers(values: Any) -> dict[str, float]:
    """The finite real-number entries of a metrics dict (booleans, text, lists and nested values left out)."""
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _candidate(store: Store, candidate_id: int) -> CandidateRecord | None:
    from search.store import StoreError

    try:
        return store.get_candidate(candidate_id)
    except StoreError as error:
        if type(error) is not StoreError:  # damaged or unreadable: not merely a parent that was never recorded
            raise
        return None
