"""Read-only reports over one job: counts, top-k, lineage, the best-so-far curve, look-ups for the CLI."""

from __future__ import annotations

from collections import deque

import sqlalchemy as sa

from search.store._records import (
    CandidateRecord, CurvePoint, EvaluationRecord, JobCounts, Ranked, StoreError, _Row, candidate_record,
    evaluation_record,
)
from search.store._schema import candidates, evaluations


def counts(conn: sa.Connection, job_id: int, *, task: str | None = None) -> JobCounts:
    n_candidates = conn.execute(sa.select(sa.func.count()).where(candidates.c.job_id == job_id)).scalar() or 0
    query = sa.select(evaluations.c.status, sa.func.count()).where(evaluations.c.job_id == job_id)
    if task is not None:
        query = query.where(evaluations.c.task == task)
    query = query.group_by(evaluations.c.status)
    by_status = dict(conn.execute(query).all())
    ok, failed = by_status.get("ok", 0), by_status.get("failed", 0)
    return JobCounts(candidates=n_candidates, evaluations=ok + failed, ok=ok, failed=failed,
                     cache_hits=by_status.get("cached", 0),
                     pending=by_status.get("pending", 0) + by_status.get("running", 0))


def top_k(conn: sa.Connection, job_id: int, k: int, *, task: str | None, unique_hash: bool) -> list[Ranked]:
    query = (sa.select(evaluations, candidates.c.hash.label("candidate_hash"))
             .join(candidates, candidates.c.id == evaluations.c.candidate_id)
             .where(evaluations.c.job_id == job_id, evaluations.c.status.in_(("ok", "cached")),
                    evaluations.c.fitness.is_not(None))
             .order_by(evaluations.c.fitness.desc(), evaluations.c.id))
    if task is not None:
        query = query.where(evaluations.c.task == task)
    if not unique_hash:
        query = query.limit(k)
    chosen, seen = [], set()
    for row in conn.execute(query).mappings():
        if len(chosen) == k:
            break
        if unique_hash and row["candidate_hash"] in seen:
            continue
        seen.add(row["candidate_hash"])
        chosen.append(evaluation_record(row))
    found = _candidates(conn, {e.candidate_id for e in chosen})
    return [Ranked(candidate=found[e.candidate_id], evaluation=e) for e in chosen]


def lineage(conn: sa.Connection, candidate_id: int) -> list[CandidateRecord]:
    order: list[CandidateRecord] = []
    queue, seen = deque([candidate_id]), {candidate_id}
    while queue:
        found = _candidates(conn, {queue.popleft()})
        if not found:
            if not order:
                raise StoreError(f"no candidate with id {candidate_id}")
            continue  # a parent id that was never recorded: the lineage stops there
        record = next(iter(found.values()))
        order.append(record)
        for parent in record.parent_ids:
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return order


def best_so_far(conn: sa.Connection, job_id: int, *, task: str | None) -> list[CurvePoint]:
    query = (sa.select(evaluations.c.id, evaluations.c.candidate_id, evaluations.c.status, evaluations.c.fitness,
                       evaluations.c.finished_order)
             .where(evaluations.c.job_id == job_id, evaluations.c.finished_order.is_not(None))
             .order_by(evaluations.c.finished_order))
    if task is not None:
        query = query.where(evaluations.c.task == task)
    points, best = [], None
    for row in conn.execute(query):
        check = _Row(row._mapping, "evaluations")
        fitness = check.float("fitness", null=True) if check.str("status") in ("ok", "cached") else None
        check.int("finished_order"), check.int("candidate_id")
        if fitness is not None and (best is None or fitness > best):
            best = fitness
        points.append(CurvePoint(order=row.finished_order, evaluation_id=row.id, candidate_id=row.candidate_id,
                                 status=row.status, fitness=fitness, best=best))
    return points


def first_by_hash(conn: sa.Connection, job_id: int, hash_prefix: str, limit: int) -> list[CandidateRecord]:
    matching = (candidates.c.job_id == job_id) & candidates.c.hash.startswith(hash_prefix, autoescape=True)
    first = (sa.select(candidates.c.hash, sa.func.min(candidates.c.birth).label("birth")).where(matching)
             .group_by(candidates.c.hash).order_by(candidates.c.hash).limit(limit).subquery())
    query = (sa.select(candidates)
             .join(first, (candidates.c.hash == first.c.hash) & (candidates.c.birth == first.c.birth))
             .where(candidates.c.job_id == job_id).order_by(candidates.c.hash))
    return [candidate_record(r) for r in conn.execute(query).mappings()]


def evaluations_of(conn: sa.Connection, candidate_ids: set[int]) -> list[EvaluationRecord]:
    if not candidate_ids:
        return []
    query = (sa.select(evaluations).where(evaluations.c.candidate_id.in_(sorted(candidate_ids)))
             .order_by(evaluations.c.id))
    return [evaluation_record(r) for r in conn.execute(query).mappings()]


def _candidates(conn: sa.Connection, ids: set[int]) -> dict[int, CandidateRecord]:
    if not ids:
        return {}
    rows = conn.execute(sa.select(candidates).where(candidates.c.id.in_(sorted(ids)))).mappings()
    return {r["id"]: candidate_record(r) for r in rows}
