"""Immutable records read back from the results store, checked as they are read (a database is untrusted input), and
the store's exceptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping


class StoreError(ValueError):
    """The database cannot be used as a results store (not a database, foreign, newer schema, missing job ...).

    The message is one line: what is wrong, where, and how to fix it. Nothing was modified when it is raised.
    """


class DamagedError(StoreError):
    """A value read from the database is not what the schema says (bad JSON, a wrong type, NULL, unreadable pages)."""


class StorageError(StoreError):
    """Writing failed for a reason of the storage (disk full, a lock held past the busy timeout, I/O error, lost
    connection). The transaction was rolled back: everything committed before is kept, and ``resume`` continues."""


class ConnectionLostError(StorageError):
    """The database server dropped this process's connection or could not be reached (a restart, a failover, a
    network failure, a terminated backend). The transaction was rolled back; the job runner waits for the database
    and continues from the last checkpoint (``search.jobs.run_until_done``, ``--db-wait``). ``reason``: the
    database driver's own words."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class LeaseHeldError(StoreError):
    """Another driver holds the job's lease (it is running the job now)."""


class LeaseLostError(StoreError):
    """This driver's lease was taken over (its heartbeat stopped for longer than the lease's TTL): it must stop."""


class DamagedValue(ValueError):
    """Internal: one value of one row is damaged; the store turns it into a ``DamagedError`` naming the database."""


@dataclass(frozen=True)
class JobRecord:
    """A row of ``jobs``."""

    id: int
    name: str
    kind: str
    status: str
    config: Any
    seed: int
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class CandidateRecord:
    """A row of ``candidates``: ``text`` is the canonical text, ``hash`` the functional hash."""

    id: int
    job_id: int
    kind: str
    text: str
    hash: str
    parent_ids: tuple[int, ...]
    mutation: str | None
    birth: int
    created: datetime


@dataclass(frozen=True)
class EvaluationRecord:
    """A row of ``evaluations``. ``finished_order`` is 1, 2, ... in the order results were recorded (None: unfinished)."""

    id: int
    job_id: int
    candidate_id: int
    key: str
    task: str
    seed: int
    status: str
    fitness: float | None
    metrics: Any
    error: str | None
    worker: str | None
    wall_time: float | None
    attempts: int
    cache_hit: bool
    finished_order: int | None
    created: datetime
    finished: datetime | None


@dataclass(frozen=True)
class CheckpointRecord:
    """A row of ``checkpoints``: ``state`` is the JSON the job saved (strategy state and all RNG states)."""

    job_id: int
    seq: int
    state: Any
    created: datetime


@dataclass(frozen=True)
class JobCounts:
    """How far a job has got. ``evaluations`` counts evaluations actually run (ok + failed), not cache hits."""

    candidates: int
    evaluations: int
    ok: int
    failed: int
    cache_hits: int
    pending: int


@dataclass(frozen=True)
class Ranked:
    """One entry of ``Store.top_k``: a candidate and the evaluation that ranked it."""

    candidate: CandidateRecord
    evaluation: EvaluationRecord


@dataclass(frozen=True)
class CurvePoint:
    """One finished evaluation on the best-so-far curve (``fitness`` None when failed; ``best`` None until an ok)."""

    order: int
    evaluation_id: int
    candidate_id: int
    status: str
    fitness: float | None
    best: float | None


def job_record(row: Mapping[str, Any]) -> JobRecord:
    check = _Row(row, "jobs")
    return JobRecord(
        id=check.int("id"), name=check.str("name"), kind=check.str("kind"), status=check.str("status"),
        config=row["config"], seed=check.int("seed"), created=check.time("created_at"),
        updated=check.time("updated_at"),
    )


def candidate_record(row: Mapping[str, Any]) -> CandidateRecord:
    check = _Row(row, "candidates")
    return CandidateRecord(
        id=check.int("id"), job_id=check.int("job_id"), kind=check.str("kind"), text=check.str("text"),
        hash=check.str("hash"), parent_ids=check.ids("parent_ids"), mutation=check.str("mutation", null=True),
        birth=check.int("birth"), created=check.time("created_at"),
    )


def evaluation_record(row: Mapping[str, Any]) -> EvaluationRecord:
    check = _Row(row, "evaluations")
    return EvaluationRecord(
        id=check.int("id"), job_id=check.int("job_id"), candidate_id=check.int("candidate_id"), key=check.str("key"),
        task=check.str("task"), seed=check.int("seed"), status=check.str("status"),
        fitness=check.float("fitness", null=True), metrics=row["metrics"], error=check.str("error", null=True),
        worker=check.str("worker", null=True), wall_time=check.float("wall_time", null=True),
        attempts=check.int("attempts"), cache_hit=check.bool("cache_hit"),
        finished_order=check.int("finished_order", null=True), created=check.time("created_at"),
        finished=check.time("finished_at", null=True),
    )


def checkpoint_record(row: Mapping[str, Any]) -> CheckpointRecord:
    check = _Row(row, "checkpoints")
    return CheckpointRecord(job_id=check.int("job_id"), seq=check.int("seq"), state=row["state"],
                            created=check.time("created_at"))


class _Row:
    """Type checks of one row's values: ``DamagedValue`` naming the table, the column and the row's id."""

    def __init__(self, row: Mapping[str, Any], table: str) -> None:
        self.row, self.table = row, table

    def _value(self, column: str, null: bool) -> Any:
        value = self.row[column]
        if value is None and not null:
            raise self.damaged(column, "is NULL")
        return value

    def damaged(self, column: str, what: str) -> DamagedValue:
        ident = self.row.get("id", self.row.get("job_id"))
        return DamagedValue(f"{self.table}.{column} of row {ident!r} {what}")

    def int(self, column: str, *, null: bool = False) -> Any:
        value = self._value(column, null)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.damaged(column, f"is {_shown(value)}, not an integer")
        return value

    def bool(self, column: str) -> bool:
        value = self._value(column, False)
        if value not in (0, 1):  # True/False from the driver, or SQLite's 0/1
            raise self.damaged(column, f"is {_shown(value)}, not a boolean")
        return bool(value)

    def str(self, column: str, *, null: bool = False) -> Any:
        value = self._value(column, null)
        if value is not None and not isinstance(value, str):
            raise self.damaged(column, f"is {_shown(value)}, not text")
        return value

    def float(self, column: str, *, null: bool = False) -> Any:
        value = self._value(column, null)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.damaged(column, f"is {_shown(value)}, not a number")
        return float(value)

    def time(self, column: str, *, null: bool = False) -> Any:
        value = self._value(column, null)
        if value is not None and not isinstance(value, datetime):
            raise self.damaged(column, f"is {_shown(value)}, not a time")
        return value

    def ids(self, column: str) -> tuple[int, ...]:
        value = self._value(column, False)
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise self.damaged(column, f"is {_shown(value)}, not a list of candidate ids")
        return tuple(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
