"""The job lease: at most one driver runs a job. A row of ``leases`` names the driver (host, pid, a random token)
and its last heartbeat; it is stale once the heartbeat is older than its TTL, or at once when its driver was on this
host and its process is gone (a ``kill -9``). Times come from the database server where there is one (PostgreSQL's
``now()``), so that drivers and readers on several machines share one clock; SQLite files are local, Python's clock.

Every function takes a connection inside the caller's transaction. Acquisition is race-free on both backends: the
row is inserted if absent (``ON CONFLICT DO NOTHING``) and then read ``FOR UPDATE``, so two drivers started at once
serialise on it and exactly one finds itself the owner.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import sqlalchemy as sa

from search.store._records import LeaseHeldError
from search.store._schema import leases, now

DEFAULT_TTL_S = 30.0


@dataclass(frozen=True)
class Lease:
    """What this driver writes into the lease row of the job it runs."""

    job_id: int
    owner: str
    host: str
    pid: int
    ttl_s: float

    @classmethod
    def mine(cls, job_id: int, ttl_s: float) -> Lease:
        host, pid = socket.gethostname(), os.getpid()
        return cls(job_id=job_id, owner=f"{host}:{pid}:{uuid.uuid4().hex[:12]}", host=host, pid=pid, ttl_s=ttl_s)


def db_now(conn: sa.Connection) -> datetime:
    """The current time on the database's clock (the server's for PostgreSQL), timezone-aware UTC."""
    if conn.dialect.name == "postgresql":
        stamp = conn.execute(sa.select(sa.func.clock_timestamp())).scalar()
        if isinstance(stamp, datetime):
            return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=now().tzinfo)
    return now()


def acquire(conn: sa.Connection, lease: Lease, *, describe: Callable[[int], str]) -> None:
    """Take the job's lease for ``lease``'s owner, or raise ``LeaseHeldError`` naming the live holder."""
    stamp = db_now(conn)
    values = {"job_id": lease.job_id, "owner": lease.owner, "host": lease.host, "pid": lease.pid,
              "ttl_s": lease.ttl_s, "acquired_at": stamp, "heartbeat_at": stamp}
    conn.execute(_insert_if_absent(conn, values))
    row = conn.execute(sa.select(leases).where(leases.c.job_id == lease.job_id).with_for_update()).mappings().one()
    if row["owner"] == lease.owner:
        return
    if is_alive(row, stamp):
        age = (stamp - _aware(row["heartbeat_at"])).total_seconds()
        raise LeaseHeldError(
            f"{describe(lease.job_id)} is being run by another driver ({row['owner']}, pid {row['pid']} on "
            f"{row['host']}, last heartbeat {max(age, 0):.0f} s ago); wait for it to end or stop it — a lease left "
            f"by a killed driver is taken over once it is {row['ttl_s']:g} s old")
    conn.execute(sa.update(leases).where(leases.c.job_id == lease.job_id, leases.c.owner == row["owner"])
                 .values(**{k: v for k, v in values.items() if k != "job_id"}))


def renew(conn: sa.Connection, lease: Lease) -> bool:
    """The heartbeat: True if the lease is still ours (now renewed), False if another driver took it over."""
    done = conn.execute(sa.update(leases).where(leases.c.job_id == lease.job_id, leases.c.owner == lease.owner)
                        .values(heartbeat_at=db_now(conn)))
    return done.rowcount == 1


def holds(conn: sa.Connection, lease: Lease) -> bool:
    """Whether ``lease`` is still the job's, locking the row until the transaction ends (the fence every unit of
    work passes before it commits: a driver that lost its lease commits nothing more)."""
    owner = conn.execute(sa.select(leases.c.owner).where(leases.c.job_id == lease.job_id).with_for_update()).scalar()
    return owner == lease.owner


def release(conn: sa.Connection, lease: Lease) -> None:
    conn.execute(sa.delete(leases).where(leases.c.job_id == lease.job_id, leases.c.owner == lease.owner))


def live_jobs(conn: sa.Connection) -> set[int]:
    """The ids of jobs whose lease is alive (a driver runs them now)."""
    stamp = db_now(conn)
    return {int(row["job_id"]) for row in conn.execute(sa.select(leases)).mappings() if is_alive(row, stamp)}


def is_alive(row: Any, stamp: datetime) -> bool:
    """A lease is alive while its heartbeat is younger than its TTL and, when its driver ran on this host, while
    that process exists."""
    try:
        fresh = stamp - _aware(row["heartbeat_at"]) < timedelta(seconds=float(row["ttl_s"]))
        here = row["host"] == socket.gethostname()
        pid = int(row["pid"])
    except (TypeError, ValueError, AttributeError):
        return False  # a damaged lease row protects nothing
    return fresh and (not here or _process_exists(pid))


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that nobody reaped yet is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=now().tzinfo)


def _insert_if_absent(conn: sa.Connection, values: dict[str, Any]) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # other backends: a plain insert; a concurrent one then fails on the primary key instead
        exists = conn.execute(sa.select(leases.c.job_id).where(leases.c.job_id == values["job_id"])).first()
        return sa.select(sa.literal(1)) if exists is not None else sa.insert(leases).values(**values)
    return insert(leases).values(**values).on_conflict_do_nothing(index_elements=["job_id"])


class Heartbeat:
    """A daemon thread renewing a lease every ``ttl_s / 3`` seconds through ``beat`` (which returns False once the
    lease was lost). ``lost`` is set when that happens; failures of the storage itself are retried at the next beat."""

    def __init__(self, beat: Callable[[], bool], ttl_s: float) -> None:
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._beat, self._interval = beat, max(ttl_s / 3.0, 0.05)
        self._thread = threading.Thread(target=self._loop, name="autodisco-lease-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._beat():
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001 - a storage hiccup: the next beat tries again, the TTL has slack
                continue
