"""What the inspection commands share: run arguments, job summaries, per-candidate results, candidate look-up, and
plain-text tables."""

from __future__ import annotations

import argparse
import string
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

from search.cli._common import UsageError, search_task

if TYPE_CHECKING:
    from search.store import CandidateRecord, JobRecord, Store

HASH_SHOWN = 10  # hex digits of a functional hash shown in tables
MUTATION_SHOWN = 48  # characters of a mutation description shown in tables
_HEX = frozenset(string.hexdigits.lower())
_MATCHES_SHOWN = 5


@dataclass(frozen=True)
class CandidateResult:
    """How a candidate fared: its best fitness over its ok/cached evaluations and a one-word status.

    ``status`` is "ok" or "cached" (the evaluation that gave ``fitness``), else "failed" (also when a cache hit
    repeated an equivalent candidate's failure), "pending" or "unevaluated".
    """

    status: str
    fitness: float | None
    evaluations: int


def add_run_arguments(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    """The run folder, ``--db`` and (with ``json_output``) ``--json`` arguments every run command takes."""
    parser.add_argument("run", help="run folder, e.g. runs/lion-hunt (with --db: the job's name)")
    parser.add_argument("--db", metavar="URL", help="read the job from this database instead of <run>/results.db")
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON")


def job_summary(store: Store, job: JobRecord) -> dict[str, Any]:
    """Name, kind, status, counts, cache hit rate and best fitness of ``job`` (JSON-ready)."""
    from search.jobs._registry import job_progress

    counts = store.counts(job.id, task=search_task(job))
    best = store.top_k(job.id, 1, task=search_task(job))
    looked_up = counts.evaluations + counts.cache_hits
    progress = job_progress(store, job)
    if progress["done"] is None and progress["method"] == "search":
        progress["done"] = counts.evaluations
    return {
        "name": job.name, "kind": job.kind, "method": progress["method"], "status": job.status, "seed": job.seed,
        "progress": progress,
        "created": job.created.isoformat(), "updated": job.updated.isoformat(),
        "candidates": counts.candidates, "evaluations": counts.evaluations, "ok": counts.ok, "failed": counts.failed,
        "cache_hits": counts.cache_hits, "pending": counts.pending,
        "cache_hit_rate": counts.cache_hits / looked_up if looked_up else None,
        "best_fitness": best[0].evaluation.fitness if best else None,
        "best_measure": best_measure(job.kind, progress["method"]),
    }


def best_measure(kind: str, method: str | None) -> str:
    """What a job's fitness measures: "adamw_ratio" (an optimizer search: normalised, AdamW = 1.0), "accuracy" (any
    architecture job) or "score" (another job's own figure, e.g. a validation's tuned task score)."""
    if kind == "architecture":
        return "accuracy"
    return "adamw_ratio" if kind == "optimizer" and method in ("search", None) else "score"


def progress_text(progress: dict[str, Any]) -> str:
    """``"3/50:epochs"``, ``"12:sweeps"`` or ``"-"`` (one word: listings split on spaces)."""
    done, total, unit = progress.get("done"), progress.get("total"), progress.get("unit") or "unit"
    if done is None:
        return "-"
    return f"{done}/{total}:{unit}s" if total else f"{done}:{unit}s"


def candidate_results(store: Store, candidate_ids: Sequence[int]) -> dict[int, CandidateResult]:
    """The ``CandidateResult`` of each of ``candidate_ids``."""
    by_candidate: dict[int, list[Any]] = {int(c): [] for c in candidate_ids}
    for evaluation in store.evaluations_of(list(by_candidate)):
        by_candidate[evaluation.candidate_id].append(evaluation)
    results = {}
    for candidate_id, evaluations in by_candidate.items():
        scored = [e for e in evaluations if e.status in ("ok", "cached") and e.fitness is not None]
        if scored:
            top = max(scored, key=lambda e: e.fitness)
            results[candidate_id] = CandidateResult(top.status, top.fitness, len(evaluations))
            continue
        statuses = {e.status for e in evaluations}  # a fitness-less cache hit repeats a failure
        status = "failed" if statuses & {"failed", "cached"} else "pending" if statuses else "unevaluated"
        results[candidate_id] = CandidateResult(status, None, len(evaluations))
    return results


def resolve_candidate(store: Store, job: JobRecord, ident: str) -> CandidateRecord:
    """The candidate of ``job`` named by ``ident``: a candidate id, else a unique functional-hash prefix.

    A number that is the id of one of the job's candidates is that candidate; otherwise ``ident`` is read as a hash
    prefix and names the first-born candidate with the one hash it matches. ``UsageError`` lists the matches when
    the prefix is ambiguous and says what to give when nothing matches.
    """
    from search.store import DamagedError, StoreError

    text = ident.strip()
    if text.isdigit():
        try:
            found = store.get_candidate(int(text))
        except DamagedError:
            raise
        except StoreError:
            found = None
        if found is not None and found.job_id == job.id:
            return found
    prefix = text.lower()
    if not prefix or not set(prefix) <= _HEX:
        raise UsageError(f"no candidate {ident!r} in run {job.name!r}: give a candidate id or a functional-hash "
                         f"prefix (hex digits); see 'autodisco runs top'")
    matches = store.first_by_hash(job.id, prefix, limit=_MATCHES_SHOWN + 1)
    if not matches:
        raise UsageError(f"no candidate with id or hash prefix {ident!r} in run {job.name!r}; "
                         "see 'autodisco runs top' for ids and hashes")
    if len(matches) > 1:
        listed = ", ".join(f"{m.hash[:HASH_SHOWN + 2]} (id {m.id})" for m in matches[:_MATCHES_SHOWN])
        more = ", ..." if len(matches) > _MATCHES_SHOWN else ""
        raise UsageError(f"hash prefix {ident!r} is ambiguous in run {job.name!r}: it matches {listed}{more}; "
                         "give more digits or the candidate id")
    return matches[0]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: columns padded to their widest cell, two spaces apart, no trailing blanks."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def fitness_text(value: float | None) -> str:
    """Four decimals (fitness is normalised: AdamW = 1.0); very large or small magnitudes in scientific form."""
    if value is None:
        return "-"
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e6 else f"{value:.4g}"


def plural(count: int, word: str, words: str | None = None) -> str:
    """``"1 ancestor"``, ``"2 ancestors"``: ``count`` with ``word``, or ``words`` (default ``word + "s"``) unless 1."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def percent_text(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def time_text(value: datetime | str) -> str:
    """A timestamp in the local time zone to the minute."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def clip(text: str | None, width: int) -> str:
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= width else line[:width - 3] + "..."


def indented(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.rstrip("\n").splitlines())
