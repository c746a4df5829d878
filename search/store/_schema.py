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

SCHEMA_VERSION = 1
CREATED_BY = "autodisco"

JOB_KINDS = ("optimizer", "architecture")
JOB_STATUSES = ("running", "finished", "interrupted", "failed")
EVALUATION_STATUSES = ("pending", "running", "ok", "failed", "cached")
FINISHED_STATUSES = ("ok", "failed", "cached")


class JSONText(sa.types.TypeDecorator[Any]):
    """Any JSON value stored as text; SQL NULL stands for Python ``None``."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> Any:
        return None if value is None else json.loads(value)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it as naive ISO text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
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
    sa.Column("config", JSONText, nullable=True),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
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
    sa.Column("parent_ids", JSONText, nullable=False),
    sa.Column("mutation", sa.Text, nullable=True),
    sa.Column("birth", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
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
    sa.Column("metrics", JSONText, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("wall_time", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("cache_hit", sa.Boolean, nullable=False, default=False),
    sa.Column("finished_order", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
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
    sa.Column("payload", JSONText, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("state", JSONText, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

logbook = sa.Table(
    "logbook",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),  # 0, 1, 2, ...: the strategy's logbook, append-only
    sa.Column("entry", JSONText, nullable=False),
)

TABLE_NAMES = frozenset(metadata.tables)

# Optuna's RDB storage may share the database (lr tuning studies); its tables are not foreign to us.
OPTUNA_TABLES = frozenset(
    {
        "alembic_version", "version_info", "studies", "study_directions", "study_user_attributes",
        "study_system_attributes", "trials", "trial_user_attributes", "trial_system_attributes", "trial_params",
        "trial_values", "trial_intermediate_values", "trial_heartbeats",
    }
)
