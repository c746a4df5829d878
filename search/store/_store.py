"""``Store``: the results database of search jobs (SQLAlchemy Core; SQLite in WAL mode, or PostgreSQL by URL)."""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import sqlalchemy as sa

from search.store import _queries
from search.store._open import describe, open_engine
from search.store._records import (
    CandidateRecord, CheckpointRecord, CurvePoint, EvaluationRecord, JobCounts, JobRecord, Ranked, StoreError,
    candidate_record, checkpoint_record, evaluation_record, job_record,
)
from search.store._schema import (
    EVALUATION_STATUSES, FINISHED_STATUSES, JOB_KINDS, JOB_STATUSES, cache_entries, candidates, checkpoints,
    evaluations, jobs, logbook, now,
)

RESULTS_FILE = "results.db"


class Store:
    """The results database. One process (the driver) writes; any number of readers may read meanwhile.

    Contract:
      * Every method runs in a transaction of its own, unless called inside ``with store.transaction():``, in which
        case all writes of the block commit together or not at all (an exception inside rolls everything back and
        is re-raised). A job records a finished evaluation and its checkpoint in one such block, so a kill -9 at
        any moment leaves the database consistent.
      * Thread-safe: calls from several threads of the writing process are serialised by a re-entrant lock; a
        ``transaction()`` block belongs to the thread that opened it.
      * Evaluations are keyed by ``(job_id, key)``: adding one twice returns the first; finishing one twice
        records nothing the second time.
      * JSON values (config, metrics, states, cache payloads) must be ``json``-serialisable; non-finite floats
        round-trip.
    """

    def __init__(self, url: str, *, create: bool = True, keep_checkpoints: int = 3, busy_timeout_s: float = 30.0):
        """Open (with ``create``, create if absent) the database at SQLAlchemy ``url``; ``StoreError`` if unusable."""
        if keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be at least 1, got {keep_checkpoints}")
        try:
            self.url = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise StoreError(f"{url!r} is not a database URL; use e.g. sqlite:///runs/job/results.db or "
                             "postgresql://user@host/db") from None
        self.keep_checkpoints = keep_checkpoints
        self._engine = open_engine(self.url, create=create, busy_timeout_s=busy_timeout_s)
        self._lock = threading.RLock()
        self._local = threading.local()

    @classmethod
    def for_run(cls, run_dir: str | Path, *, create: bool = True, keep_checkpoints: int = 3) -> Store:
        """The SQLite store ``<run_dir>/results.db`` (the folder is created with ``create``)."""
        path = Path(run_dir)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path / RESULTS_FILE}", create=create, keep_checkpoints=keep_checkpoints)

    def __repr__(self) -> str:
        return f"Store({describe(self.url)!r})"

    def close(self) -> None:
        """Release all connections (the database stays as it is)."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All store calls in the block commit together, or none does. Nested blocks join the outer one."""
        with self._connection():
            yield

    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self._lock, self._engine.begin() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    # -- jobs -----------------------------------------------------------------------------------------------------

    def create_job(self, name: str, *, kind: str, config: Any, seed: int) -> JobRecord:
        """A new job in status "running"; ``StoreError`` if ``name`` is taken."""
        _check(kind, JOB_KINDS, "job kind")
        with self._connection() as conn:
            if conn.execute(sa.select(jobs.c.id).where(jobs.c.name == name)).first() is not None:
                raise StoreError(f"job {name!r} already exists in {describe(self.url)}; resume it or choose another name")
            stamp = now()
            conn.execute(sa.insert(jobs).values(name=name, kind=kind, status="running", config=config, seed=seed,
                                                created_at=stamp, updated_at=stamp))
            return job_record(conn.execute(sa.select(jobs).where(jobs.c.name == name)).mappings().one())

    def get_job(self, name: str) -> JobRecord | None:
        """The job called ``name``, or None."""
        with self._connection() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.name == name)).mappings().first()
        return None if row is None else job_record(row)

    def list_jobs(self) -> list[JobRecord]:
        """All jobs, oldest first."""
        with self._connection() as conn:
            return [job_record(r) for r in conn.execute(sa.select(jobs).order_by(jobs.c.id)).mappings()]

    def set_job_status(self, job_id: int, status: str) -> None:
        """Set a job's status (running/finished/interrupted/failed) and its ``updated_at``."""
        _check(status, JOB_STATUSES, "job status")
        with self._connection() as conn:
            done = conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(status=status, updated_at=now()))
            if done.rowcount == 0:
                raise StoreError(f"no job with id {job_id} in {describe(self.url)}")

    @contextmanager
    def job_running(self, job_id: int) -> Iterator[None]:
        """Mark the job "running" for the block, then "finished"; "interrupted" on Ctrl-C and "failed" on any other
        exception, which is re-raised. Every long-running job (search, DARTS, training, one-shot, few-shot) uses it."""
        self.set_job_status(job_id, "running")
        try:
            yield
        except KeyboardInterrupt:
            self.set_job_status(job_id, "interrupted")
            raise
        except BaseException:
            self.set_job_status(job_id, "failed")
            raise
        self.set_job_status(job_id, "finished")

    # -- candidates -----------------------------------------------------------------------------------------------

    def add_candidate(self, job_id: int, *, kind: str, text: str, hash: str, parent_ids: Iterable[int] = (),
                      mutation: str | None = None, birth: int | None = None) -> int:
        """Record a candidate and return its id. ``birth`` (order within the job) defaults to the next one.

        Re-adding the same ``text`` at an existing ``birth`` returns the existing id (replay after a resume); a
        different text at a taken ``birth`` raises ``StoreError``.
        """
        _check(kind, JOB_KINDS, "candidate kind")
        with self._connection() as conn:
            if birth is None:
                birth = _next(conn, candidates.c.birth, candidates.c.job_id == job_id, start=0)
            else:
                existing = conn.execute(sa.select(candidates.c.id, candidates.c.text).where(
                    candidates.c.job_id == job_id, candidates.c.birth == birth)).first()
                if existing is not None and existing.text == text:
                    return int(existing.id)
                if existing is not None:
                    raise StoreError(f"job {job_id}: birth {birth} is already a different candidate (id {existing.id})")
            result = conn.execute(sa.insert(candidates).values(
                job_id=job_id, kind=kind, text=text, hash=hash, parent_ids=[int(p) for p in parent_ids],
                mutation=mutation, birth=birth, created_at=now()))
            return int(result.inserted_primary_key[0])

    def get_candidate(self, candidate_id: int) -> CandidateRecord:
        """The candidate with this id; ``StoreError`` if there is none."""
        with self._connection() as conn:
            row = conn.execute(sa.select(candidates).where(candidates.c.id == candidate_id)).mappings().first()
        if row is None:
            raise StoreError(f"no candidate with id {candidate_id} in {describe(self.url)}")
        return candidate_record(row)

    def list_candidates(self, job_id: int) -> list[CandidateRecord]:
        """The job's candidates in birth order."""
        with self._connection() as conn:
            query = sa.select(candidates).where(candidates.c.job_id == job_id).order_by(candidates.c.birth)
            return [candidate_record(r) for r in conn.execute(query).mappings()]

    # -- evaluations ----------------------------------------------------------------------------------------------

    def add_evaluation(self, job_id: int, candidate_id: int, *, key: str, task: str, seed: int) -> int:
        """Record an evaluation as "pending" (dispatched) and return its id; an existing ``key`` returns its id."""
        with self._connection() as conn:
            found = conn.execute(sa.select(evaluations.c.id).where(
                evaluations.c.job_id == job_id, evaluations.c.key == key)).scalar()
            if found is not None:
                return int(found)
            result = conn.execute(sa.insert(evaluations).values(
                job_id=job_id, candidate_id=candidate_id, key=key, task=task, seed=seed, status="pending",
                attempts=0, cache_hit=False, created_at=now()))
            return int(result.inserted_primary_key[0])

    def mark_running(self, evaluation_id: int, *, worker: str | None = None) -> None:
        """A pending evaluation has started on ``worker`` (optional: the store works without it)."""
        with self._connection() as conn:
            conn.execute(sa.update(evaluations).where(
                evaluations.c.id == evaluation_id, evaluations.c.status == "pending").values(
                status="running", worker=worker))

    def finish_evaluation(self, evaluation_id: int, *, status: str, fitness: float | None = None,
                          metrics: Any = None, error: str | None = None, worker: str | None = None,
                          wall_time: float | None = None, attempts: int = 0) -> bool:
        """Record the result of an unfinished evaluation: status "ok", "failed" or "cached" (a cache hit).

        Assigns the next ``finished_order``. A NaN ``fitness`` is stored as NULL. Returns False, recording nothing,
        if the evaluation was already finished; ``StoreError`` if there is no such evaluation.
        """
        _check(status, FINISHED_STATUSES, "finished status")
        with self._connection() as conn:
            row = conn.execute(sa.select(evaluations.c.job_id, evaluations.c.status).where(
                evaluations.c.id == evaluation_id)).first()
            if row is None:
                raise StoreError(f"no evaluation with id {evaluation_id} in {describe(self.url)}")
            if row.status in FINISHED_STATUSES:
                return False
            order = _next(conn, evaluations.c.finished_order, evaluations.c.job_id == row.job_id, start=1)
            conn.execute(sa.update(evaluations).where(evaluations.c.id == evaluation_id).values(
                status=status, fitness=_finite_or_none(fitness), metrics=metrics, error=error, worker=worker,
                wall_time=wall_time, attempts=attempts, cache_hit=status == "cached", finished_order=order,
                finished_at=now()))
            return True

    def get_evaluation(self, job_id: int, key: str) -> EvaluationRecord | None:
        """The evaluation recorded under ``key``, or None."""
        with self._connection() as conn:
            row = conn.execute(sa.select(evaluations).where(
                evaluations.c.job_id == job_id, evaluations.c.key == key)).mappings().first()
        return None if row is None else evaluation_record(row)

    def list_evaluations(self, job_id: int, *, status: str | None = None) -> list[EvaluationRecord]:
        """The job's evaluations in the order they were added, optionally only those with ``status``."""
        query = sa.select(evaluations).where(evaluations.c.job_id == job_id).order_by(evaluations.c.id)
        if status is not None:
            _check(status, EVALUATION_STATUSES, "evaluation status")
            query = query.where(evaluations.c.status == status)
        with self._connection() as conn:
            return [evaluation_record(r) for r in conn.execute(query).mappings()]

    def unfinished_evaluations(self, job_id: int) -> list[EvaluationRecord]:
        """Evaluations dispatched but without a result ("pending" or "running"): what a resumed job re-dispatches."""
        query = sa.select(evaluations).where(
            evaluations.c.job_id == job_id, evaluations.c.status.in_(("pending", "running"))).order_by(evaluations.c.id)
        with self._connection() as conn:
            return [evaluation_record(r) for r in conn.execute(query).mappings()]

    # -- bulk writes (one statement for many rows: a driver recording results that arrive together) -------------

    def add_candidates(self, job_id: int, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Record new candidates (each row: ``kind, text, hash, parent_ids, mutation, birth``) in one statement and
        return their ids in order. Unlike ``add_candidate`` the births must be new (``StoreError`` otherwise)."""
        if not rows:
            return []
        stamp = now()
        values = []
        for row in rows:
            _check(row["kind"], JOB_KINDS, "candidate kind")
            values.append({"job_id": job_id, "kind": row["kind"], "text": row["text"], "hash": row["hash"],
                           "parent_ids": [int(p) for p in row["parent_ids"]], "mutation": row.get("mutation"),
                           "birth": int(row["birth"]), "created_at": stamp})
        query = sa.insert(candidates).returning(candidates.c.id, sort_by_parameter_order=True)
        with self._connection() as conn:
            try:
                return [int(r.id) for r in conn.execute(query, values)]
            except sa.exc.IntegrityError:
                raise StoreError(f"job {job_id}: a birth among {[v['birth'] for v in values][:5]} is taken") from None

    def add_evaluations(self, job_id: int, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Record new "pending" evaluations (each row: ``candidate_id, key, task, seed``) in one statement; their
        ids in order. Unlike ``add_evaluation`` the keys must be new (``StoreError`` otherwise)."""
        if not rows:
            return []
        stamp = now()
        values = [{"job_id": job_id, "candidate_id": int(r["candidate_id"]), "key": r["key"], "task": r["task"],
                   "seed": int(r["seed"]), "status": "pending", "attempts": 0, "cache_hit": False,
                   "created_at": stamp} for r in rows]
        query = sa.insert(evaluations).returning(evaluations.c.id, sort_by_parameter_order=True)
        with self._connection() as conn:
            try:
                return [int(r.id) for r in conn.execute(query, values)]
            except sa.exc.IntegrityError:
                raise StoreError(f"job {job_id}: an evaluation key among {[v['key'] for v in values][:5]} is "
                                 "taken") from None

    def finish_evaluations(self, job_id: int, rows: Sequence[Mapping[str, Any]]) -> list[bool]:
        """``finish_evaluation`` for many evaluations of one job at once, in order (each row: ``evaluation_id`` and
        the keyword arguments of ``finish_evaluation``); for each, whether it was recorded (False: already
        finished). ``StoreError`` if one does not exist in the job."""
        if not rows:
            return []
        ids = [int(r["evaluation_id"]) for r in rows]
        for row in rows:
            _check(row["status"], FINISHED_STATUSES, "finished status")
        with self._connection() as conn:
            found = dict(conn.execute(sa.select(evaluations.c.id, evaluations.c.status).where(
                evaluations.c.job_id == job_id, evaluations.c.id.in_(set(ids)))).all())
            missing = [i for i in ids if i not in found]
            if missing:
                raise StoreError(f"no evaluation with id {missing[0]} in job {job_id} of {describe(self.url)}")
            order = _next(conn, evaluations.c.finished_order, evaluations.c.job_id == job_id, start=1)
            recorded, values, stamp = [], [], now()
            for evaluation_id, row in zip(ids, rows):
                fresh = found[evaluation_id] not in FINISHED_STATUSES
                recorded.append(fresh)
                if not fresh:
                    continue
                found[evaluation_id] = row["status"]  # the same id twice in ``rows``: the second is not recorded
                values.append({
                    "b_id": evaluation_id, "status": row["status"], "fitness": _finite_or_none(row.get("fitness")),
                    "metrics": row.get("metrics"), "error": row.get("error"), "worker": row.get("worker"),
                    "wall_time": row.get("wall_time"), "attempts": row.get("attempts", 0),
                    "cache_hit": row["status"] == "cached", "finished_order": order, "finished_at": stamp})
                order += 1
            if values:
                conn.execute(sa.update(evaluations).where(evaluations.c.id == sa.bindparam("b_id")), values)
            return recorded

    # -- checkpoints and the FEC cache ----------------------------------------------------------------------------

    def save_checkpoint(self, job_id: int, state: Any) -> int:
        """Save ``state`` as the job's newest checkpoint and return its ``seq``; only the newest few are kept."""
        with self._connection() as conn:
            seq = _next(conn, checkpoints.c.seq, checkpoints.c.job_id == job_id, start=1)
            conn.execute(sa.insert(checkpoints).values(job_id=job_id, seq=seq, state=state, created_at=now()))
            conn.execute(sa.delete(checkpoints).where(
                checkpoints.c.job_id == job_id, checkpoints.c.seq <= seq - self.keep_checkpoints))
            return seq

    def latest_checkpoint(self, job_id: int) -> CheckpointRecord | None:
        """The job's newest checkpoint, or None."""
        query = sa.select(checkpoints).where(checkpoints.c.job_id == job_id).order_by(checkpoints.c.seq.desc())
        with self._connection() as conn:
            row = conn.execute(query.limit(1)).mappings().first()
        return None if row is None else checkpoint_record(row)

    def save_cache_entries(self, job_id: int, entries: Mapping[str, Any]) -> None:
        """Insert or replace FEC cache entries ``{hash: payload}`` of the job (one statement each for the updated
        and the new ones)."""
        if not entries:
            return
        stamp = now()
        with self._connection() as conn:
            existing = set(conn.execute(sa.select(cache_entries.c.hash).where(
                cache_entries.c.job_id == job_id, cache_entries.c.hash.in_(list(entries)))).scalars())
            updates = [{"b_hash": h, "payload": p, "updated_at": stamp} for h, p in entries.items() if h in existing]
            inserts = [{"job_id": job_id, "hash": h, "payload": p, "updated_at": stamp}
                       for h, p in entries.items() if h not in existing]
            if updates:
                conn.execute(sa.update(cache_entries).where(
                    cache_entries.c.job_id == job_id, cache_entries.c.hash == sa.bindparam("b_hash")), updates)
            if inserts:
                conn.execute(sa.insert(cache_entries), inserts)

    def delete_cache_entries(self, job_id: int, hashes: Iterable[str]) -> None:
        """Remove FEC cache entries of the job (evicted from the cache)."""
        hashes = list(hashes)
        if not hashes:
            return
        with self._connection() as conn:
            conn.execute(sa.delete(cache_entries).where(cache_entries.c.job_id == job_id,
                                                        cache_entries.c.hash.in_(hashes)))

    def load_cache_entries(self, job_id: int) -> dict[str, Any]:
        """The job's FEC cache entries ``{hash: payload}``."""
        query = sa.select(cache_entries.c.hash, cache_entries.c.payload).where(cache_entries.c.job_id == job_id)
        with self._connection() as conn:
            return {digest: payload for digest, payload in conn.execute(query)}

    def append_logbook(self, job_id: int, first_seq: int, entries: Iterable[Mapping[str, Any]]) -> None:
        """Append the job's strategy logbook records ``first_seq``, ``first_seq + 1``, ... (written once each)."""
        rows = [{"job_id": job_id, "seq": first_seq + i, "entry": dict(e)} for i, e in enumerate(entries)]
        if rows:
            with self._connection() as conn:
                conn.execute(sa.insert(logbook), rows)

    def load_logbook(self, job_id: int) -> list[Any]:
        """The job's strategy logbook records in order."""
        query = sa.select(logbook.c.entry).where(logbook.c.job_id == job_id).order_by(logbook.c.seq)
        with self._connection() as conn:
            return [entry for (entry,) in conn.execute(query)]

    # -- reports --------------------------------------------------------------------------------------------------

    def counts(self, job_id: int, *, task: str | None = None) -> JobCounts:
        """Candidates, evaluations run (ok + failed), ok, failed, cache hits and still pending (only of ``task``)."""
        with self._connection() as conn:
            return _queries.counts(conn, job_id, task=task)

    def top_k(self, job_id: int, k: int = 10, *, task: str | None = None, unique_hash: bool = True) -> list[Ranked]:
        """The ``k`` best ok/cached evaluations by fitness (ties: earliest first); one per functional hash by default."""
        with self._connection() as conn:
            return _queries.top_k(conn, job_id, k, task=task, unique_hash=unique_hash)

    def lineage(self, candidate_id: int) -> list[CandidateRecord]:
        """The candidate, then its ancestors breadth-first; each record's ``mutation`` made it from its parents."""
        with self._connection() as conn:
            return _queries.lineage(conn, candidate_id)

    def best_so_far(self, job_id: int, *, task: str | None = None) -> list[CurvePoint]:
        """Every finished evaluation in ``finished_order`` with the best fitness so far: the data of a search curve."""
        with self._connection() as conn:
            return _queries.best_so_far(conn, job_id, task=task)

    def first_by_hash(self, job_id: int, hash_prefix: str, *, limit: int = 10) -> list[CandidateRecord]:
        """For each distinct functional hash of the job starting with ``hash_prefix``, its first-born candidate.

        At most ``limit`` hashes, in hash order; the prefix is matched literally (``%`` and ``_`` are not wildcards).
        """
        with self._connection() as conn:
            return _queries.first_by_hash(conn, job_id, hash_prefix, limit)

    def evaluations_of(self, candidate_ids: Iterable[int]) -> list[EvaluationRecord]:
        """Every evaluation of these candidates, in the order they were added."""
        with self._connection() as conn:
            return _queries.evaluations_of(conn, {int(c) for c in candidate_ids})


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def _next(conn: sa.Connection, column: sa.Column[Any], where: sa.ColumnElement[bool], *, start: int) -> int:
    """max(column) + 1 over the rows matching ``where`` (``start`` when there is none). Safe: one writer."""
    current = conn.execute(sa.select(sa.func.max(column)).where(where)).scalar()
    return start if current is None else int(current) + 1


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
