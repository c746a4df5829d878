"""``Store``: the results database of search jobs (SQLAlchemy Core; SQLite in WAL mode, or PostgreSQL by URL)."""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import sqlalchemy as sa

from search.store import _lease, _queries
from search.store._hot import HotStatements
from search.store._lease import DEFAULT_TTL_S, Heartbeat, Lease
from search.store._open import checkpoint_wal, describe, first_line, is_memory, is_sqlite, open_engine
from search.store._records import (
    CandidateRecord, CheckpointRecord, ConnectionLostError, CurvePoint, DamagedError, DamagedValue, EvaluationRecord,
    JobCounts, JobRecord, LeaseLostError, Ranked, StorageError, StoreError, candidate_record, checkpoint_record,
    evaluation_record, job_record,
)
from search.store._schema import (
    EVALUATION_STATUSES, FINISHED_STATUSES, JOB_KINDS, JOB_STATUSES, cache_entries, candidates, checkpoints,
    evaluations, jobs, leases, logbook, now,
)

RESULTS_FILE = "results.db"
_DAMAGE_MARKS = ("malformed", "not a database", "decode", "no such column", "no such table", "corrupt", "invalid")

F = TypeVar("F", bound=Callable[..., Any])


def _reads(table: str) -> Callable[[F], F]:
    """A read method: a damaged value or an unreadable page becomes one ``StoreError`` line naming the database and
    ``table`` (values are untrusted: a database may have been edited, truncated or damaged)."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except StoreError:
                raise
            except DamagedValue as error:
                raise DamagedError(f"{describe(self.url)}: damaged value: {error}; the database was edited or "
                                   "damaged — restore it from a copy or start a new run") from None
            except sa.exc.DBAPIError as error:
                raise self._database_error(error, f"reading {table}: ") from None
            except (ValueError, TypeError, KeyError, OverflowError, UnicodeDecodeError) as error:
                raise DamagedError(f"{describe(self.url)}: damaged value in table {table} ({type(error).__name__}: "
                                   f"{' '.join(str(error).split())[:120]}); restore it from a copy or start a new "
                                   "run") from None

        return wrapper  # type: ignore[return-value]

    return decorate


class Store:
    """The results database. One process (the driver) writes; any number of readers may read meanwhile.

    Contract:
      * Every method runs in a transaction of its own, unless called inside ``with store.transaction():``, in which
        case all writes of the block commit together or not at all (an exception inside rolls everything back and
        is re-raised). A job records a finished evaluation and its checkpoint in one such block, so a kill -9 at
        any moment leaves the database consistent.
      * Thread-safe: calls from several threads of the writing process are serialised by a re-entrant lock; a
        ``transaction()`` block belongs to the thread that opened it.
      * One driver per job: ``job_running`` holds the job's lease (a row of ``leases``, renewed by a heartbeat
        thread) for the whole run; a second driver gets ``LeaseHeldError``. While a lease is held, every checkpoint
        is fenced by it: a driver whose lease was taken over commits nothing more (``LeaseLostError``).
      * Evaluations are keyed by ``(job_id, key)``: adding one twice returns the first; finishing one twice
        records nothing the second time.
      * JSON values (config, metrics, states, cache payloads) must be ``json``-serialisable; non-finite floats
        round-trip.
      * Values read back are checked: a damaged database gives ``DamagedError`` (one line naming the database and
        the table), a failing disk, lock or server ``StorageError``; both are ``StoreError`` (a ``ValueError``).
      * ``read_only=True`` writes nothing, ever: the SQLite file stays byte-identical and may be on read-only media.
    """

    def __init__(self, url: str, *, create: bool = True, read_only: bool = False, keep_checkpoints: int = 3,
                 busy_timeout_s: float = 30.0, lease_ttl_s: float = DEFAULT_TTL_S, lock_retries: int = 2):
        """Open (with ``create``, create if absent) the database at SQLAlchemy ``url``; ``StoreError`` if unusable.

        ``busy_timeout_s``: how long SQLite waits for another process's write lock, ``lock_retries`` times over
        before a write fails. ``lease_ttl_s``: how long a job's lease outlives its driver's last heartbeat."""
        if keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be at least 1, got {keep_checkpoints}")
        if not lease_ttl_s > 0:
            raise ValueError(f"lease_ttl_s must be positive, got {lease_ttl_s}")
        try:
            self.url = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise StoreError(f"{url!r} is not a database URL; use e.g. sqlite:///runs/job/results.db or "
                             "postgresql://user@host/db") from None
        self.keep_checkpoints = keep_checkpoints
        self.read_only = read_only
        self.lease_ttl_s = lease_ttl_s
        self._busy_timeout_s, self._lock_retries = busy_timeout_s, lock_retries
        opened = open_engine(self.url, create=create, read_only=read_only, busy_timeout_s=busy_timeout_s)
        self._engine, self._has_leases = opened.engine, opened.has_leases
        self._hot = HotStatements(self._engine.dialect)  # the driver's per-unit writes, as plain SQL (see _hot)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._leases: dict[int, Lease] = {}
        self._abandoned: dict[int, Lease] = {}  # leases this store could not release (the database was unreachable)
        self._seen_checkpoint: dict[int, int] = {}  # job id -> seq of the checkpoint this store read or wrote last

    @classmethod
    def for_run(cls, run_dir: str | Path, *, create: bool = True, read_only: bool = False,
                keep_checkpoints: int = 3) -> Store:
        """The SQLite store ``<run_dir>/results.db`` (the folder is created with ``create``)."""
        path = Path(run_dir)
        if create and not read_only:
            path.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path / RESULTS_FILE}", create=create, read_only=read_only,
                   keep_checkpoints=keep_checkpoints)

    def __repr__(self) -> str:
        return f"Store({describe(self.url)!r}{', read_only=True' if self.read_only else ''})"

    def close(self) -> None:
        """Release all connections (the database stays as it is; a writer folds SQLite's WAL into the file)."""
        if not self.read_only and is_sqlite(self.url) and not is_memory(self.url):
            checkpoint_wal(self._engine)
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
        with self._lock:
            try:
                with self._begin() as conn:
                    self._local.conn = conn
                    self._local.orders = {}  # job id -> next finished_order, known within this transaction
                    try:
                        yield conn
                    finally:
                        self._local.conn = None
            except sa.exc.DBAPIError as error:
                raise self._database_error(error) from None

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        """A connection in a new transaction. Starting one is retried while the database is locked or unreachable:
        nothing has happened yet, so that is always safe (SQLite already waited ``busy_timeout_s`` each time)."""
        attempt = 0
        while True:
            try:
                conn = self._engine.connect()
            except sa.exc.DBAPIError as error:  # the server is unreachable (SQLite: the file cannot be opened)
                if is_sqlite(self.url):
                    raise
                raise self._connection_lost(error) from None
            try:
                transaction = conn.begin()
                break
            except sa.exc.OperationalError:
                conn.close()
                if attempt >= self._lock_retries:
                    raise
                time.sleep(min(0.25 * 2 ** attempt, 2.0))
                attempt += 1
        try:
            yield conn
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise
        else:
            transaction.commit()
        finally:
            conn.close()

    def _insert_ids(self, conn: sa.Connection, table: sa.Table, values: list[dict[str, Any]], key: sa.Column[Any],
                    job_id: int) -> list[int]:
        """Insert ``values`` (rows of one job, ``key`` unique within the job) and return their ids in row order: one
        statement (``INSERT ... RETURNING``, see ``HotStatements.insert_ids``), two without RETURNING."""
        if self._hot.has_returning:
            return self._hot.insert_ids(conn, table, values, key.name)
        return _insert_ids(conn, table, values, key, job_id)

    def _take_orders(self, conn: sa.Connection, job_id: int, count: int) -> int:
        """The first of ``count`` consecutive ``finished_order`` values for the job's next finished evaluations. The
        next free value is read once per transaction, then kept: a driver that finishes results and writes cache
        hits in one unit asks the database once."""
        orders: dict[int, int] = self._local.orders
        order = orders.get(job_id)
        if order is None:
            order = self._hot.next_order(conn, job_id)
        orders[job_id] = order + count
        return order

    def _database_error(self, error: sa.exc.DBAPIError, doing: str = "") -> StoreError:
        """One line for an error of the database itself: damage, or a failure of the storage (then: how to go on)."""
        where, first = describe(self.url), first_line(error)
        if not is_sqlite(self.url) and (error.connection_invalidated
                                        or self._engine.dialect.is_disconnect(error.orig, None, None)):
            return self._connection_lost(error)
        lowered = first.lower()
        if any(mark in lowered for mark in _DAMAGE_MARKS) or isinstance(error, sa.exc.IntegrityError):
            return DamagedError(f"{where}: damaged or foreign database ({doing}{first}); restore it from a copy "
                                "or start a new run")
        if self.read_only:
            return StorageError(f"{where}: cannot be read ({first}); check the disk or the server and try again")
        if "locked" in lowered or "busy" in lowered:
            fix = (f"another process held the database's write lock for over {self._busy_timeout_s:g} s (a VACUUM "
                   "or an open transaction in a sqlite3 shell?); end it")
        elif "full" in lowered:
            fix = "free disk space"
        elif "readonly" in lowered or "read-only" in lowered:
            fix = "make the database writable"
        else:
            fix = "check the disk or the database server"
        if is_sqlite(self.url) and not is_memory(self.url):
            resume = f"autodisco resume {Path(where).parent}"
        else:
            resume = f"autodisco resume RUN --db {where}"
        return StorageError(f"{where}: storage error ({doing}{first}); the last write was rolled back and "
                            f"everything recorded before it is kept — {fix}, then continue with: {resume}")

    def _connection_lost(self, error: sa.exc.DBAPIError) -> ConnectionLostError:
        """A lost or refused connection to the database server: one line, and how to go on."""
        where, reason = describe(self.url), first_line(error)
        if self.read_only:
            return ConnectionLostError(f"{where}: lost the connection to the database ({reason}); check the "
                                       "database server and the network and try again", reason)
        return ConnectionLostError(f"{where}: lost the connection to the database ({reason}); the last write was "
                                   "rolled back and everything recorded before it is kept — check the database "
                                   f"server and the network, then continue with: autodisco resume RUN --db {where}",
                                   reason)

    def reachable(self) -> bool:
        """Whether a new transaction can start now (a connection and a round trip to the server)."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.select(sa.literal(1)))
        except sa.exc.DBAPIError:
            return False
        return True

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{describe(self.url)}: opened read-only; this command cannot write to it")

    # -- jobs -----------------------------------------------------------------------------------------------------

    def create_job(self, name: str, *, kind: str, config: Any, seed: int) -> JobRecord:
        """A new job, stored as "running" (it reads as "interrupted" until a driver holds its lease in
        ``job_running``); ``StoreError`` if ``name`` is taken."""
        _check(kind, JOB_KINDS, "job kind")
        self._writable()
        taken = f"job {name!r} already exists in {describe(self.url)}; resume it or choose another name"
        with self._connection() as conn:
            if conn.execute(sa.select(jobs.c.id).where(jobs.c.name == name)).first() is not None:
                raise StoreError(taken)
            stamp = now()
            try:
                with conn.begin_nested():  # PostgreSQL: two drivers may pass the check at once; one insert fails
                    conn.execute(sa.insert(jobs).values(name=name, kind=kind, status="running", config=config,
                                                        seed=seed, created_at=stamp, updated_at=stamp))
            except sa.exc.IntegrityError:
                raise StoreError(taken) from None
            created = job_record(conn.execute(sa.select(jobs).where(jobs.c.name == name)).mappings().one())
            return self._with_liveness(conn, [created])[0]

    @_reads("jobs")
    def get_job(self, name: str) -> JobRecord | None:
        """The job called ``name``, or None. A "running" job whose driver is gone (no live lease) reads as
        "interrupted"."""
        with self._connection() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.name == name)).mappings().first()
            return None if row is None else self._with_liveness(conn, [job_record(row)])[0]

    @_reads("jobs")
    def list_jobs(self) -> list[JobRecord]:
        """All jobs, oldest first (statuses as ``get_job`` gives them)."""
        with self._connection() as conn:
            records = [job_record(r) for r in conn.execute(sa.select(jobs).order_by(jobs.c.id)).mappings()]
            return self._with_liveness(conn, records)

    def _with_liveness(self, conn: sa.Connection, records: list[JobRecord]) -> list[JobRecord]:
        if not self._has_leases or not any(r.status == "running" for r in records):
            return records
        live = _lease.live_jobs(conn)
        return [dataclasses.replace(r, status="interrupted") if r.status == "running" and r.id not in live else r
                for r in records]

    def set_job_status(self, job_id: int, status: str) -> None:
        """Set a job's status (running/finished/interrupted/failed) and its ``updated_at``."""
        _check(status, JOB_STATUSES, "job status")
        self._writable()
        with self._connection() as conn:
            self._fence(conn, job_id)
            done = conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(status=status, updated_at=now()))
            if done.rowcount == 0:
                raise StoreError(f"no job with id {job_id} in {describe(self.url)}")

    def set_job_config(self, job_id: int, config: Any) -> None:
        """Replace a job's stored configuration (``autodisco resume RUN --evaluations N`` extends a budget); the
        caller checks that no driver runs the job."""
        self._writable()
        with self._connection() as conn:
            done = conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(config=config, updated_at=now()))
            if done.rowcount == 0:
                raise StoreError(f"no job with id {job_id} in {describe(self.url)}")

    def delete_jobs(self, job_ids: Iterable[int]) -> dict[str, int]:
        """Delete these jobs and every row that belongs to them (candidates, evaluations, cache entries, checkpoints,
        logbook, lease) in one transaction; how many rows of each table went. ``LeaseHeldError`` (nothing deleted)
        if a driver runs one of them now: the check and the deletion are one transaction."""
        ids = sorted({int(i) for i in job_ids})
        self._writable()  # a writable store has the current schema (opening migrated it): leases and logbook exist
        with self._connection() as conn:
            running = set(ids) & _lease.live_jobs(conn)
            if running:
                names = conn.execute(sa.select(jobs.c.name).where(jobs.c.id.in_(running))).scalars().all()
                raise _lease.LeaseHeldError(f"{', '.join(map(repr, sorted(names)))} is running now; stop it (Ctrl-C "
                                            "where it runs) or wait for it to end, then delete it")
            deleted = {}
            # children first: SQLite enforces no ON DELETE CASCADE unless asked to
            for table in (leases, logbook, cache_entries, checkpoints, evaluations, candidates, jobs):
                column = table.c.id if table is jobs else table.c.job_id
                deleted[table.name] = conn.execute(sa.delete(table).where(column.in_(ids))).rowcount
        for job_id in ids:
            self._seen_checkpoint.pop(job_id, None)
        return deleted

    @contextmanager
    def job_running(self, job_id: int) -> Iterator[None]:
        """Run the block as the job's only driver: take its lease (``LeaseHeldError`` if another driver holds it),
        renew it from a heartbeat thread, and mark the job "running"; then "finished", "interrupted" on Ctrl-C or a
        storage error (resumable), "failed" on any other exception (re-raised). If the lease is lost (taken over
        after the heartbeat stalled past the TTL) the next checkpoint raises ``LeaseLostError`` and the job's row is
        left to the new driver. Every long-running job uses it, through the job runner."""
        lease = self.acquire_lease(job_id)
        heartbeat = Heartbeat(lambda: self.renew_lease(lease), lease.ttl_s).start()
        outcome: str | None = "failed"
        try:
            self.set_job_status(job_id, "running")
            yield
            outcome = "finished"
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        except LeaseLostError:
            outcome = None
            raise
        except StorageError:
            outcome = "interrupted"
            raise
        finally:
            heartbeat.stop()
            self._end_run(job_id, lease, outcome, quiet=outcome != "finished")

    def _end_run(self, job_id: int, lease: Lease, outcome: str | None, *, quiet: bool) -> None:
        """Record the outcome (while the lease is still ours) and release the lease. ``quiet``: an exception is on
        its way already; a failure here must not replace it (the lease then dies with this process)."""
        try:
            with self._connection() as conn:
                if outcome is not None and _lease.holds(conn, lease):
                    conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(status=outcome, updated_at=now()))
                _lease.release(conn, lease)
        except StoreError:
            if outcome is not None:  # this process still holds the lease: the next acquire_lease releases it
                self._abandoned[job_id] = lease
            if not quiet:
                raise
        finally:
            self._leases.pop(job_id, None)

    # -- the lease ------------------------------------------------------------------------------------------------

    def acquire_lease(self, job_id: int) -> Lease:
        """Take the job's lease for this process (see ``_lease``); ``LeaseHeldError`` if a live driver holds it, or
        if another driver moved the job on since this store read its checkpoint (the state loaded here is out of
        date: open the job again)."""
        self._writable()
        if not self._has_leases:
            raise StoreError(f"{describe(self.url)}: schema without leases (opened read-only?)")
        lease = Lease.mine(job_id, self.lease_ttl_s)
        with self._connection() as conn:
            status = conn.execute(sa.select(jobs.c.status, jobs.c.name).where(jobs.c.id == job_id)).first()
            if status is None:
                raise StoreError(f"no job with id {job_id} in {describe(self.url)}")
            abandoned = self._abandoned.get(job_id)
            if abandoned is not None:  # left by this process when the database went away: still ours, if unstolen
                _lease.release(conn, abandoned)
            _lease.acquire(conn, lease, describe=lambda _: f"job {status.name!r}")
            seen = self._seen_checkpoint.get(job_id)
            latest = _latest_seq(conn, job_id)
            if seen is not None and latest > seen:
                raise _lease.LeaseHeldError(
                    f"job {status.name!r} was advanced by another driver since this one read it (checkpoint {seen} "
                    f"-> {latest}); run the command again to continue from the newest state")
        self._abandoned.pop(job_id, None)
        self._leases[job_id] = lease
        return lease

    def renew_lease(self, lease: Lease) -> bool:
        """The heartbeat: True while ``lease`` is still this driver's. A beat is skipped while another thread of this
        process keeps the store busy for long (it cannot commit a unit without passing the fence anyway)."""
        if not self._lock.acquire(timeout=lease.ttl_s / 3):
            return True
        try:
            with self._connection() as conn:
                return _lease.renew(conn, lease)
        finally:
            self._lock.release()

    def release_lease(self, lease: Lease) -> None:
        with self._connection() as conn:
            _lease.release(conn, lease)
        self._leases.pop(lease.job_id, None)

    def _fence(self, conn: sa.Connection, job_id: int) -> None:
        lease = self._leases.get(job_id)
        if lease is not None and not _lease.holds(conn, lease):
            raise self._lost(lease)

    def _lost(self, lease: Lease) -> LeaseLostError:
        return LeaseLostError(f"{describe(self.url)}: another driver took over job {lease.job_id} (this driver's "
                              f"heartbeat stalled for over {lease.ttl_s:g} s); this driver stopped without recording "
                              "its last unit")

    # -- candidates -----------------------------------------------------------------------------------------------

    def add_candidate(self, job_id: int, *, kind: str, text: str, hash: str, parent_ids: Iterable[int] = (),
                      mutation: str | None = None, birth: int | None = None) -> int:
        """Record a candidate and return its id. ``birth`` (order within the job) defaults to the next one.

        Re-adding the same ``text`` at an existing ``birth`` returns the existing id (replay after a resume); a
        different text at a taken ``birth`` raises ``StoreError``.
        """
        _check(kind, JOB_KINDS, "candidate kind")
        self._writable()
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

    @_reads("candidates")
    def get_candidate(self, candidate_id: int) -> CandidateRecord:
        """The candidate with this id; ``StoreError`` if there is none."""
        with self._connection() as conn:
            row = conn.execute(sa.select(candidates).where(candidates.c.id == candidate_id)).mappings().first()
        if row is None:
            raise StoreError(f"no candidate with id {candidate_id} in {describe(self.url)}")
        return candidate_record(row)

    @_reads("candidates")
    def list_candidates(self, job_id: int) -> list[CandidateRecord]:
        """The job's candidates in birth order."""
        with self._connection() as conn:
            query = sa.select(candidates).where(candidates.c.job_id == job_id).order_by(candidates.c.birth)
            return [candidate_record(r) for r in conn.execute(query).mappings()]

    # -- evaluations ----------------------------------------------------------------------------------------------

    def add_evaluation(self, job_id: int, candidate_id: int, *, key: str, task: str, seed: int) -> int:
        """Record an evaluation as "pending" (dispatched) and return its id; an existing ``key`` returns its id."""
        self._writable()
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
        self._writable()
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
        self._writable()
        with self._connection() as conn:
            row = conn.execute(sa.select(evaluations.c.job_id, evaluations.c.status).where(
                evaluations.c.id == evaluation_id)).first()
            if row is None:
                raise StoreError(f"no evaluation with id {evaluation_id} in {describe(self.url)}")
            if row.status in FINISHED_STATUSES:
                return False
            order = self._take_orders(conn, row.job_id, 1)
            conn.execute(sa.update(evaluations).where(evaluations.c.id == evaluation_id).values(
                status=status, fitness=_finite_or_none(fitness), metrics=metrics, error=error, worker=worker,
                wall_time=wall_time, attempts=attempts, cache_hit=status == "cached", finished_order=order,
                finished_at=now()))
            return True

    @_reads("evaluations")
    def get_evaluation(self, job_id: int, key: str) -> EvaluationRecord | None:
        """The evaluation recorded under ``key``, or None."""
        with self._connection() as conn:
            row = conn.execute(sa.select(evaluations).where(
                evaluations.c.job_id == job_id, evaluations.c.key == key)).mappings().first()
        return None if row is None else evaluation_record(row)

    @_reads("evaluations")
    def list_evaluations(self, job_id: int, *, status: str | None = None) -> list[EvaluationRecord]:
        """The job's evaluations in the order they were added, optionally only those with ``status``."""
        query = sa.select(evaluations).where(evaluations.c.job_id == job_id).order_by(evaluations.c.id)
        if status is not None:
            _check(status, EVALUATION_STATUSES, "evaluation status")
            query = query.where(evaluations.c.status == status)
        with self._connection() as conn:
            return [evaluation_record(r) for r in conn.execute(query).mappings()]

    @_reads("evaluations")
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
        self._writable()
        if not rows:
            return []
        stamp = now()
        values = []
        for row in rows:
            _check(row["kind"], JOB_KINDS, "candidate kind")
            values.append({"job_id": job_id, "kind": row["kind"], "text": row["text"], "hash": row["hash"],
                           "parent_ids": [int(p) for p in row["parent_ids"]], "mutation": row.get("mutation"),
                           "birth": int(row["birth"]), "created_at": stamp})
        with self._connection() as conn:
            try:
                return self._insert_ids(conn, candidates, values, candidates.c.birth, job_id)
            except sa.exc.IntegrityError:
                raise StoreError(f"job {job_id}: a birth among {[v['birth'] for v in values][:5]} is taken") from None

    def add_evaluations(self, job_id: int, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Record new evaluations (each row: ``candidate_id, key, task, seed``) in one statement; their ids in order.
        Unlike ``add_evaluation`` the keys must be new (``StoreError`` otherwise).

        A row is "pending" (dispatched) unless it carries a finished ``status`` ("cached": a cache hit) with the other
        keyword arguments of ``finish_evaluation``: then it is recorded finished at once, taking the next
        ``finished_order`` in row order, as if added pending and finished right after (one statement, not three)."""
        self._writable()
        if not rows:
            return []
        stamp = now()
        values = []
        for r in rows:
            status = r.get("status", "pending")
            value = {"job_id": job_id, "candidate_id": int(r["candidate_id"]), "key": r["key"], "task": r["task"],
                     "seed": int(r["seed"]), "status": "pending", "fitness": None, "metrics": None, "error": None,
                     "worker": None, "wall_time": None, "attempts": 0, "cache_hit": False, "finished_order": None,
                     "created_at": stamp, "finished_at": None}
            if status != "pending":
                _check(status, FINISHED_STATUSES, "finished status")
                value.update(status=status, fitness=_finite_or_none(r.get("fitness")), metrics=r.get("metrics"),
                             error=r.get("error"), worker=r.get("worker"), wall_time=r.get("wall_time"),
                             attempts=r.get("attempts", 0), cache_hit=status == "cached", finished_at=stamp)
            values.append(value)
        with self._connection() as conn:
            finished = [v for v in values if v["status"] != "pending"]
            if finished:
                order = self._take_orders(conn, job_id, len(finished))
                for offset, value in enumerate(finished):
                    value["finished_order"] = order + offset
            try:
                return self._insert_ids(conn, evaluations, values, evaluations.c.key, job_id)
            except sa.exc.IntegrityError:
                raise StoreError(f"job {job_id}: an evaluation key among {[v['key'] for v in values][:5]} is "
                                 "taken") from None

    def finish_evaluations(self, job_id: int, rows: Sequence[Mapping[str, Any]]) -> list[bool]:
        """``finish_evaluation`` for many evaluations of one job at once, in order (each row: ``evaluation_id`` and
        the keyword arguments of ``finish_evaluation``); for each, whether it was recorded (False: already
        finished). ``StoreError`` if one does not exist in the job."""
        self._writable()
        if not rows:
            return []
        ids = [int(r["evaluation_id"]) for r in rows]
        for row in rows:
            _check(row["status"], FINISHED_STATUSES, "finished status")
        with self._connection() as conn:
            found = self._hot.statuses(conn, job_id, list(dict.fromkeys(ids)))
            missing = [i for i in ids if i not in found]
            if missing:
                raise StoreError(f"no evaluation with id {missing[0]} in job {job_id} of {describe(self.url)}")
            fresh = sum(1 for i in set(ids) if found[i] not in FINISHED_STATUSES)
            order = self._take_orders(conn, job_id, fresh)
            recorded, values, stamp = [], [], now()
            for evaluation_id, row in zip(ids, rows):
                fresh = found[evaluation_id] not in FINISHED_STATUSES
                recorded.append(fresh)
                if not fresh:
                    continue
                found[evaluation_id] = row["status"]  # the same id twice in ``rows``: the second is not recorded
                values.append({
                    "id": evaluation_id, "status": row["status"], "fitness": _finite_or_none(row.get("fitness")),
                    "metrics": row.get("metrics"), "error": row.get("error"), "worker": row.get("worker"),
                    "wall_time": row.get("wall_time"), "attempts": row.get("attempts", 0),
                    "cache_hit": row["status"] == "cached", "finished_order": order, "finished_at": stamp})
                order += 1
            if values:
                self._hot.finish(conn, values)
            return recorded

    # -- checkpoints and the FEC cache ----------------------------------------------------------------------------

    def save_checkpoint(self, job_id: int, state: Any) -> int:
        """Save ``state`` as the job's newest checkpoint and return its ``seq``; only the newest few are kept. While
        this store holds the job's lease, ``LeaseLostError`` if another driver took it over (nothing is committed).

        Two statements once the job has its full set of checkpoints: the fence and the newest and oldest ``seq``
        read together, then the oldest checkpoint's row rewritten as the new one (else an insert and a delete)."""
        self._writable()
        lease = self._leases.get(job_id)
        with self._connection() as conn:
            owner, newest, oldest, count = self._hot.checkpoint_slots(conn, job_id, lease and lease.owner)
            if lease is not None and owner != lease.owner:
                raise self._lost(lease)
            seq, keep = newest + 1, self.keep_checkpoints
            full = count == keep and oldest == seq - keep  # exactly the window seq - keep .. seq - 1
            self._hot.write_checkpoint(conn, job_id, seq, state, now(), replace=oldest if full else None,
                                       drop_upto=seq - keep)
        self._seen_checkpoint[job_id] = seq
        return seq

    @_reads("checkpoints")
    def latest_checkpoint(self, job_id: int) -> CheckpointRecord | None:
        """The job's newest checkpoint, or None."""
        query = sa.select(checkpoints).where(checkpoints.c.job_id == job_id).order_by(checkpoints.c.seq.desc())
        with self._connection() as conn:
            row = conn.execute(query.limit(1)).mappings().first()
        record = None if row is None else checkpoint_record(row)
        self._seen_checkpoint[job_id] = 0 if record is None else record.seq
        return record

    def save_cache_entries(self, job_id: int, entries: Mapping[str, Any]) -> None:
        """Insert or replace FEC cache entries ``{hash: payload}`` of the job: one upsert statement on SQLite and
        PostgreSQL (``INSERT ... ON CONFLICT DO UPDATE``, see ``HotStatements.upsert``), elsewhere one statement
        each for the updated and the new ones."""
        if not entries:
            return
        stamp = now()
        self._writable()
        rows = [{"job_id": job_id, "hash": h, "payload": p, "updated_at": stamp} for h, p in entries.items()]
        with self._connection() as conn:
            if self._hot.has_upsert:
                self._hot.upsert(conn, cache_entries, rows, ("job_id", "hash"), ("payload", "updated_at"))
                return
            existing = set(conn.execute(sa.select(cache_entries.c.hash).where(
                cache_entries.c.job_id == job_id, cache_entries.c.hash.in_(list(entries)))).scalars())
            updates = [{"b_hash": r["hash"], "payload": r["payload"], "updated_at": stamp} for r in rows
                       if r["hash"] in existing]
            inserts = [r for r in rows if r["hash"] not in existing]
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
        self._writable()
        with self._connection() as conn:
            conn.execute(sa.delete(cache_entries).where(cache_entries.c.job_id == job_id,
                                                        cache_entries.c.hash.in_(hashes)))

    @_reads("cache_entries")
    def load_cache_entries(self, job_id: int) -> dict[str, Any]:
        """The job's FEC cache entries ``{hash: payload}``."""
        query = sa.select(cache_entries.c.hash, cache_entries.c.payload).where(cache_entries.c.job_id == job_id)
        with self._connection() as conn:
            return {digest: payload for digest, payload in conn.execute(query)}

    def append_logbook(self, job_id: int, first_seq: int, entries: Iterable[Mapping[str, Any]]) -> None:
        """Append the job's strategy logbook records ``first_seq``, ``first_seq + 1``, ... (written once each)."""
        self._writable()
        rows = [{"job_id": job_id, "seq": first_seq + i, "entry": dict(e)} for i, e in enumerate(entries)]
        if rows:
            with self._connection() as conn:
                conn.execute(sa.insert(logbook), rows)

    @_reads("logbook")
    def load_logbook(self, job_id: int) -> list[Any]:
        """The job's strategy logbook records in order."""
        query = sa.select(logbook.c.entry).where(logbook.c.job_id == job_id).order_by(logbook.c.seq)
        with self._connection() as conn:
            return [entry for (entry,) in conn.execute(query)]

    # -- reports --------------------------------------------------------------------------------------------------

    @_reads("candidates and evaluations")
    def counts(self, job_id: int, *, task: str | None = None) -> JobCounts:
        """Candidates, evaluations run (ok + failed), ok, failed, cache hits and still pending (only of ``task``)."""
        with self._connection() as conn:
            return _queries.counts(conn, job_id, task=task)

    @_reads("evaluations")
    def top_k(self, job_id: int, k: int = 10, *, task: str | None = None, unique_hash: bool = True) -> list[Ranked]:
        """The ``k`` best ok/cached evaluations by fitness (ties: earliest first); one per functional hash by default."""
        with self._connection() as conn:
            return _queries.top_k(conn, job_id, k, task=task, unique_hash=unique_hash)

    @_reads("candidates")
    def lineage(self, candidate_id: int) -> list[CandidateRecord]:
        """The candidate, then its ancestors breadth-first; each record's ``mutation`` made it from its parents."""
        with self._connection() as conn:
            return _queries.lineage(conn, candidate_id)

    @_reads("evaluations")
    def best_so_far(self, job_id: int, *, task: str | None = None) -> list[CurvePoint]:
        """Every finished evaluation in ``finished_order`` with the best fitness so far: the data of a search curve."""
        with self._connection() as conn:
            return _queries.best_so_far(conn, job_id, task=task)

    @_reads("candidates")
    def first_by_hash(self, job_id: int, hash_prefix: str, *, limit: int = 10) -> list[CandidateRecord]:
        """For each distinct functional hash of the job starting with ``hash_prefix``, its first-born candidate.

        At most ``limit`` hashes, in hash order; the prefix is matched literally (``%`` and ``_`` are not wildcards).
        """
        with self._connection() as conn:
            return _queries.first_by_hash(conn, job_id, hash_prefix, limit)

    @_reads("evaluations")
    def evaluations_of(self, candidate_ids: Iterable[int]) -> list[EvaluationRecord]:
        """Every evaluation of these candidates, in the order they were added."""
        with self._connection() as conn:
            return _queries.evaluations_of(conn, {int(c) for c in candidate_ids})


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def _next(conn: sa.Connection, column: sa.Column[Any], where: sa.ColumnElement[bool], *, start: int) -> int:
    """max(column) + 1 over the rows matching ``where`` (``start`` when there is none). Safe: one writer.

    Written as the first row in descending order so that an index on (job_id, column) answers it in one step;
    SQLite evaluates ``max(column) ... WHERE job_id = ?`` by scanning every row of the job."""
    current = conn.execute(sa.select(column).where(where, column.is_not(None)).order_by(column.desc())
                           .limit(1)).scalar()
    return start if current is None else int(current) + 1


def _insert_ids(conn: sa.Connection, table: sa.Table, values: list[dict[str, Any]], key: sa.Column[Any],
                job_id: int) -> list[int]:
    """Insert ``values`` (rows of one job, ``key`` unique within the job) and return their ids in order, where the
    database has no ``INSERT ... RETURNING`` (SQLite before 3.35): the rows go in one executemany and their ids come
    back in one ``SELECT`` by their keys (two statements however many rows)."""
    conn.execute(sa.insert(table), values)
    keys = [v[key.name] for v in values]
    ids: dict[Any, int] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start:start + _IN_CHUNK]
        ids.update(conn.execute(sa.select(key, table.c.id).where(table.c.job_id == job_id, key.in_(chunk))).all())
    return [int(ids[k]) for k in keys]


_IN_CHUNK = 500  # keys per IN (...) list: far below SQLite's limit of bound parameters


def _latest_seq(conn: sa.Connection, job_id: int) -> int:
    """The newest checkpoint's ``seq`` of the job (0: none yet)."""
    return _next(conn, checkpoints.c.seq, checkpoints.c.job_id == job_id, start=1) - 1


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
