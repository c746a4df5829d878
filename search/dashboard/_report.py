"""What the run page shows, as JSON-ready values read from one job: its summary, the search curve, failures by
reason, the top candidates with a diff against their parent, the Pareto front of fitness and optimizer state buffers of
``--strategy nsga2`` runs, a candidate's lineage and the per-epoch curves of NAS jobs. Everything here only reads; the
summaries, groupings and the front are the CLI's own (``autodisco runs ...``)."""

from __future__ import annotations

import difflib
import functools
import math
import threading
from collections import OrderedDict
from typing import Any, Mapping

from search.cli._common import search_task
from search.cli._ranking import lineage_rows, pareto_front, ranked_row, simplified_program
from search.cli._report import job_summary, resolve_candidate
from search.cli._runs import failure_reasons
from search.dashboard._funnel import funnel_table
from search.epochs import epoch_curves
from search.store import CandidateRecord, JobRecord, Store

TOP_SHOWN = 10
CURVE_WINDOW = 50  # evaluations per rolling median / hit rate, as ``autodisco runs plot`` draws them
CURVE_POINTS = 2000  # at most this many points of a long search are sent to the page (every n-th, and the last)
BUFFERS_CACHE = 1 << 17  # candidate texts whose buffer count is kept between polls (a run's texts must all fit)
FRONT_CACHE = 1 << 10  # simplified programs of the front's members kept between polls
PARETO_POINTS = CURVE_POINTS  # at most this many candidates in the scatter (SVG: 10,000 take the browser ~1 s)
SECTIONS_KEPT = 16  # Pareto sections of unchanged runs kept between polls (one per run page open, roughly)
_SECTIONS: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()  # pareto_section's, least recent first
_SECTIONS_LOCK = threading.Lock()  # the server answers requests on several threads


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
        "pareto": pareto_section(store, job, task),
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
        "x": [int(curves.evaluations[i]) for i in chosen],  # evaluations run, as ``runs show`` counts them
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


def pareto_section(store: Store, job: JobRecord, task: str | None) -> dict[str, Any] | None:
    """The Pareto front of fitness and optimizer state buffers of a ``--strategy nsga2`` optimizer run, the rule
    ``runs top`` shows it by (``pareto_front`` over every candidate, one per functional hash, best first), with the
    ranked candidates' fitness and buffers for the scatter (every one up to ``PARETO_POINTS``, then every n-th by
    rank; the front is drawn from its own rows); None for other runs. Candidates whose text does not parse have no
    buffers: they are counted, not drawn.

    Ranking every candidate reads the whole run (most of a poll's time on a long run), so the section is kept while
    the run does not change: until its job row or its counts of candidates and evaluations on ``task`` do (finished
    evaluations and candidates are never rewritten)."""
    config = job.config if isinstance(job.config, Mapping) else {}
    if job.kind != "optimizer" or config.get("strategy") != "nsga2":
        return None
    counts = store.counts(job.id, task=task)
    token = (str(store.url), job.id, job.created, job.updated, job.status, task, counts)
    with _SECTIONS_LOCK:
        if token in _SECTIONS:
            _SECTIONS.move_to_end(token)
            return _SECTIONS[token]
    section = _pareto(store, job, task, counts.candidates)
    with _SECTIONS_LOCK:
        _SECTIONS[token] = section
        while len(_SECTIONS) > SECTIONS_KEPT:
            _SECTIONS.popitem(last=False)
    return section


def _pareto(store: Store, job: JobRecord, task: str | None, candidates: int) -> dict[str, Any]:
    ranked = store.top_k(job.id, candidates + 1, task=task)  # every candidate, one per functional hash (runs top)
    rows = [ranked_row(rank, entry) for rank, entry in enumerate(ranked, start=1)]
    for row in rows:  # pareto_front reads only the buffers of a row's simplification
        buffers = cached_buffers(row["program"])
        row["simplified"] = None if buffers is None else {"buffers": buffers}
    drawn = [r for r in rows if r["simplified"] is not None]
    stride = max(1, math.ceil(len(drawn) / PARETO_POINTS))  # a long run's scatter: every n-th by rank, best first
    shown = drawn[::stride]
    points = {"every": stride, "id": [r["id"] for r in shown], "fitness": [_number(r["fitness"]) for r in shown],
              "buffers": [r["simplified"]["buffers"] for r in shown]}
    front = []
    for row in pareto_front(rows):
        simple = cached_simplified(row["program"])
        assert simple is not None, "a row on the front has buffers, so its text parses"
        front.append({"rank": row["rank"], "id": row["id"], "hash": row["hash"], "fitness": row["fitness"],
                      "buffers": simple["buffers"], "program": simple["program"], "statements": simple["statements"],
                      "removed": len(simple["removed"])})
    return {"task": task, "candidates": len(rows), "unparsed": len(rows) - len(drawn), "front": front,
            "points": points}


@functools.lru_cache(maxsize=BUFFERS_CACHE)
def cached_buffers(text: str) -> int | None:
    """The state buffers of the optimizer program ``text`` (``simplified_program``'s; None if it does not parse),
    kept per text: the page polls every few seconds and a run's candidates do not change, so each text is parsed and
    simplified once per process, not once per poll. Only the number is kept, so that a long run's texts all fit."""
    simple = simplified_program(text)
    return None if simple is None else int(simple["buffers"])


@functools.lru_cache(maxsize=FRONT_CACHE)
def cached_simplified(text: str) -> dict[str, Any] | None:
    """``simplified_program(text)`` of the front's few members, kept per text (callers must not modify it)."""
    return simplified_program(text)


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
