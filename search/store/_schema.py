"""The tables of the results database (SQLAlchemy Core), portable across SQLite and PostgreSQL.

JSON columns are stored as text (``JSONText``) written by Python's ``json`` module, so they read the same on every
backend; non-finite floats are written as the JSON5 tokens ``NaN`` / ``Infinity`` / ``-Infinity`` so that checkpoint
states round-trip exactly. Timestamps are UTC.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from search.store._records import DamagedValue

SCHEMA_VERSION = 3  # 2: the leases table (one driver per job); 3: the logbook table (append-only strategy logbook)
LEASES_SINCE = 2
LOGBOOK_SINCE = 3
CREATED_BY = "autodisco"

JOB_KINDS = ("optimizer", "architecture")
JOB_STATUSES = ("running", "finished", "interrupted", "failed")
EVALUATION_STATUSES = ("pending", "running", "ok", "failed", "cached")
FINISHED_STATUSES = ("ok", "failed", "cached")


# One encoder for every JSON value written: keys sorted (equal values, equal text), compact separators (a checkpoint
# is written every unit: fewer bytes to encode and to write), no circularity check (values are plain JSON data; a
# cycle still fails, as RecursionError). json.dumps with options builds a new encoder on every call.
encode_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False).encode


class JSONText(sa.types.TypeDecorator[Any]):
    """Any JSON value stored as text; SQL NULL stands for Python ``None``. ``where`` ("table.column") names the column
    in the ``DamagedValue`` raised for text that is not JSON."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, where: str = "a JSON column") -> None:
        super().__init__()
        self.where = where

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else encode_json(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise DamagedValue(f"{self.where} holds {type(value).__name__}, not JSON text")
        try:
            return json.loads(value)
        except (ValueError, RecursionError) as error:
            reason = error.msg if isinstance(error, json.JSONDecodeError) else type(error).__name__
            raise DamagedValue(f"{self.where} holds text that is not JSON ({reason})") from None


class _SQLiteDateTimeText(sqlite.DATETIME):
    """SQLite's DATETIME (ISO text) whose values come back as the stored text, parsed by ``UTCDateTime`` itself so
    that a damaged value names its column."""

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> None:
        return None


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it as naive ISO text). ``where`` names the
    column in the ``DamagedValue`` raised for a value that is not a time."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def __init__(self, where: str = "a time column") -> None:
        super().__init__()
        self.where = where

    def load_dialect_impl(self, dialect: sa.Dialect) -> Any:
        if dialect.name == "sqlite":
            return _SQLiteDateTimeText()
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.astimezone(timezone.utc)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise DamagedValue(f"{self.where} holds {value[:40]!r}, not a time") from None
        if not isinstance(value, datetime):
            raise DamagedValue(f"{self.where} holds {type(value).__name__}, not a time")
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)


def _one_of(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=name)


metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("config", JSONText("jobs.config"), nullable=True),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime("jobs.created_at"), nullable=False),
    sa.Column("updated_at", UTCDateTime("jobs.updated_at"), nullable=False),
    _one_of("kind", JOB_KINDS, "ck_jobs_kind"),
    _one_of("status", JOB_STATUSES, "ck_jobs_status"),
)

candidates = sa.Table(
    "candidates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("hash", sa.String(128), nullable=False),
    sa.Column("parent_ids", JSONText("candidates.parent_ids"), nullable=False),
    sa.Column("mutation", sa.Text, nullable=True),
    sa.Column("birth", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime("candidates.created_at"), nullable=False),
    sa.UniqueConstraint("job_id", "birth", name="uq_candidates_job_birth"),
    sa.Index("ix_candidates_job_hash", "job_id", "hash"),
    _one_of("kind", JOB_KINDS, "ck_candidates_kind"),
)

evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("candidate_id", sa.Integer, sa.ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("task", sa.String(255), nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("fitness", sa.Float, nullable=True),
    sa.Column("metrics", JSONText("evaluations.metrics"), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("wall_time", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("cache_hit", sa.Boolean, nullable=False, default=False),
    sa.Column("finished_order", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime("evaluations.created_at"), nullable=False),
    sa.Column("finished_at", UTCDateTime("evaluations.finished_at"), nullable=True),
    sa.UniqueConstraint("job_id", "key", name="uq_evaluations_job_key"),
    sa.UniqueConstraint("job_id", "finished_order", name="uq_evaluations_job_order"),
    sa.Index("ix_evaluations_job_status", "job_id", "status"),
    sa.Index("ix_evaluations_candidate", "candidate_id"),
    _one_of("status", EVALUATION_STATUSES, "ck_evaluations_status"),
)

cache_entries = sa.Table(
    "cache_entries",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("hash", sa.String(128), primary_key=True),
    sa.Column("payload", JSONText("cache_entries.payload"), nullable=False),
    sa.Column("updated_at", UTCDateTime("cache_entries.updated_at"), nullable=False),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("state", JSONText("checkpoints.state"), nullable=False),
    sa.Column("created_at", UTCDateTime("checkpoints.created_at"), nullable=False),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),  # host:pid:token of the driver that holds the job
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.BigInteger, nullable=False),
    sa.Column("ttl_s", sa.Float, nullable=False),  # stale once heartbeat_at is older than this
    sa.Column("acquired_at", UTCDateTime("leases.acquired_at"), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime("leases.heartbeat_at"), nullable=False),
)

logbook = sa.Table(
    "logbook",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),  # 0, 1, 2, ...: the strategy's logbook, append-only
    sa.Column("entry", JSONText("logbook.entry"), nullable=False),
)

TABLE_NAMES = frozenset(metadata.tables)
V2_TABLE_NAMES = TABLE_NAMES - {"logbook"}
V1_TABLE_NAMES = V2_TABLE_NAMES - {"leases"}


def tables_of(version: int) -> frozenset[str]:
    """The tables a database of schema ``version`` has."""
    return TABLE_NAMES if version >= LOGBOOK_SINCE else V2_TABLE_NAMES if version >= LEASES_SINCE else V1_TABLE_NAMES

# Optuna's RDB storage may share the database (lr tuning studies); its tables are not foreign to us.
OPTUNA_TABLES = frozenset(
    {
        "alembic_version", "version_info", "studies", "study_directions", "study_user_attributes",
        "study_system_attributes", "trials", "trial_user_attributes", "trial_system_attributes", "trial_params",
        "trial_values", "trial_intermediate_values", "trial_heartbeats",
    }
)
