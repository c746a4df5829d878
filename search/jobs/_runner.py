"""The runner: what is the same for every job — status, one transaction per unit with the checkpoint, atomic file
saves, progress, Ctrl-C and SIGTERM."""

from __future__ import annotations

import gc
import signal
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterator

from search.jobs._base import Job, JobError, checkpoint_state
from search.jobs._registry import open_job
from search.progress import Progress
from search.store import ConnectionLostError

DB_WAIT_S = 300.0  # how long a job waits for a database that dropped its connection (``--db-wait``)
_RECONNECTS_WITHOUT_PROGRESS = 5  # a database that drops every connection before a unit commits: stop


class Runner:
    """Drives one ``Job`` (see its contract). Not thread-safe: one runner, one job, one thread."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.context = job.context
        self._progress: Progress | None = None

    # -- what jobs call ---------------------------------------------------------------------------------------------

    @contextmanager
    def unit(self) -> Iterator[None]:
        """One unit of work: the rows written in the block and the job's checkpoint commit together, or not at all."""
        store = self.context.store
        with store.transaction():
            yield
            store.save_checkpoint(self.context.record.id, checkpoint_state(self.job))
        self.show_progress()

    def checkpoint(self) -> None:
        """A unit without rows of its own: the job's checkpoint alone (e.g. after state saved to a file)."""
        with self.unit():
            pass

    def save_file(self, name: str, state: Any) -> Path:
        """Save ``state`` (tensors allowed) as ``<run>/<name>`` atomically; the path."""
        from evaluators.files import save_torch  # torch: only for jobs that keep files

        path = self.file(name)
        save_torch(path, state)
        return path

    def load_file(self, name: str) -> Any | None:
        """What ``save_file(name, ...)`` saved last, or None; ``JobError`` for a damaged file."""
        from evaluators.files import load_torch

        path = self.file(name)
        try:
            return load_torch(path)
        except Exception as error:  # torch raises many kinds for a damaged or foreign file
            raise JobError(f"{path}: unreadable job state ({type(error).__name__}); delete the run folder to start "
                           "again") from None

    def file(self, name: str) -> Path:
        if self.context.run_dir is None:
            raise JobError(f"a {self.job.method} job keeps state in files of its run folder; run it with a run folder, "
                           "not --db")
        return self.context.run_dir / name

    def say(self, line: str) -> None:
        self.context.say(line)

    def status(self, text: str) -> None:
        """One status line at once: what a silence is spent on (workers starting, a baseline, a table being ranked).
        Silent with ``--quiet``; see ``Progress.status``."""
        if self._progress is not None:
            self._progress.status(text)

    def heartbeat(self, text: Callable[[], str]) -> None:
        """Inside a long unit (the batches of an epoch): ``text()`` as a status line every ``Progress.interval_s``
        (``text`` is only called then); see ``Progress.heartbeat``."""
        if self._progress is not None:
            self._progress.heartbeat(text)

    def show_progress(self) -> None:
        if self._progress is not None:
            done, _, fields = self.job.progress()
            self._progress.update(done, fields)

    # -- running ----------------------------------------------------------------------------------------------------

    def run(self) -> Any:
        """Run the job to its end and return its result. The job's status is "running" meanwhile, then "finished";
        Ctrl-C or SIGTERM mark it "interrupted" (resumable) and raise ``KeyboardInterrupt``; any other exception
        marks it "failed" and is re-raised."""
        store, record = self.context.store, self.context.record
        with _terminate_as_interrupt(), _collector_thresholds(self.job.gc_thresholds), store.job_running(record.id):
            done, total, _ = self.job.progress()
            enabled = self.context.show_progress and not self.job.own_progress_lines
            self._progress = Progress(total, enabled=enabled, done=done, unit=self.job.unit,
                                      status_lines=self.context.show_progress)
            try:
                result = self.job.run(self)
                self.show_progress()
            finally:
                self._progress.close()
                self._progress = None
        return result


def run_until_done(job: Job) -> tuple[Job, Any]:
    """Run ``job`` to its end (``Runner.run``) and return the job that finished with its result.

    When the database drops the connection or cannot be reached (``ConnectionLostError``: a server restart, a
    failover, a network failure, a killed backend), the job is not lost: the failed unit was rolled back, the job
    waits for the database (up to ``job.context.options["db_wait_s"]`` seconds, default ``DB_WAIT_S``; 0: stop at
    once), then continues in this process exactly as ``autodisco resume`` would — a new job object from the last
    checkpoint, its unfinished evaluations dispatched again — and the finished one is returned. Evaluations that
    completed while the database was away are evaluated again (they were never recorded): nothing is lost and
    nothing is recorded twice. It stops with the ``ConnectionLostError`` when the database stays away longer, or
    drops the connection again ``_RECONNECTS_WITHOUT_PROGRESS`` times without a unit committed in between."""
    context = job.context
    options = context.options or {}
    wait_s = float(options.get("db_wait_s", DB_WAIT_S))
    fruitless, last = 0, None  # reconnects in a row that found the same checkpoint; the last one's
    while True:
        try:
            return job, Runner(job).run()
        except ConnectionLostError as error:
            if wait_s <= 0 or fruitless >= _RECONNECTS_WITHOUT_PROGRESS:
                raise
            context.say(f"lost the connection to the database ({error.reason}); waiting up to {wait_s:g} s for it")
            job, seq = _reopen(job, error, wait_s)
            fruitless, last = (fruitless + 1 if seq == last else 0), seq


def _reopen(job: Job, error: ConnectionLostError, wait_s: float) -> tuple[Job, int | None]:
    """``job`` anew from the database's last checkpoint once the database answers again (within ``wait_s``), and
    that checkpoint's number."""
    context, store = job.context, job.context.store
    started = time.monotonic()
    deadline, pause = started + wait_s, 0.25
    while True:
        if store.reachable():
            with suppress(ConnectionLostError):  # dropped again at once: wait, then try again
                record = store.get_job(context.record.name)
                if record is None:
                    raise JobError(f"job {context.record.name!r} is gone from {store!r} after the database came back")
                kept = {f.name: getattr(context, f.name) for f in fields(context) if f.name not in ("store", "record")}
                reopened = open_job(store, record, **kept)
                checkpoint = store.latest_checkpoint(record.id)
                context.say(f"database back after {time.monotonic() - started:.1f} s; continuing from the last "
                            "checkpoint")
                return reopened, None if checkpoint is None else checkpoint.seq
        if time.monotonic() >= deadline:
            raise error
        time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
        pause = min(pause * 2, 1.0)  # a connection attempt a second: cheap, and back within a second


@contextmanager
def _collector_thresholds(thresholds: tuple[int, int, int] | None) -> Iterator[None]:
    """The cyclic collector's ``thresholds`` while the job runs (``Job.gc_thresholds``), the caller's after; None:
    the process's own, untouched."""
    if thresholds is None:
        yield
        return
    previous = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``) stops the job like Ctrl-C does: the job is marked interrupted and resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
