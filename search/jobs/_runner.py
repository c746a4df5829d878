"""The runner: what is the same for every job — status, one transaction per unit with the checkpoint, atomic file
saves, progress, Ctrl-C and SIGTERM."""

from __future__ import annotations

import gc
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from search.jobs._base import Job, JobError, checkpoint_state
from search.progress import Progress


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
