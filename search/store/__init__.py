"""The results store: jobs, candidates, evaluations, FEC cache entries and checkpoints in one SQL database.

``Store.for_run(run_dir)`` opens ``<run_dir>/results.db`` (SQLite, WAL mode); ``Store(url)`` takes any SQLAlchemy URL,
e.g. ``postgresql://user@host/db``. Only the driver writes, holding the job's lease; the CLI (``read_only=True``) and
plain SQL may read while a job runs.
"""

from __future__ import annotations

from search.store._records import (
    CandidateRecord,
    CheckpointRecord,
    ConnectionLostError,
    CurvePoint,
    DamagedError,
    EvaluationRecord,
    JobCounts,
    JobRecord,
    LeaseHeldError,
    LeaseLostError,
    Ranked,
    StorageError,
    StoreError,
)
from search.store._schema import SCHEMA_VERSION
from search.store._store import RESULTS_FILE, Store

__all__ = [
    "RESULTS_FILE",
    "SCHEMA_VERSION",
    "CandidateRecord",
    "CheckpointRecord",
    "ConnectionLostError",
    "CurvePoint",
    "DamagedError",
    "EvaluationRecord",
    "JobCounts",
    "JobRecord",
    "LeaseHeldError",
    "LeaseLostError",
    "Ranked",
    "StorageError",
    "Store",
    "StoreError",
]
