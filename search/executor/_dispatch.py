"""The driver thread of ``LocalExecutor``: hands queued requests to idle workers and watches every worker.

All worker state is owned by one thread (``Dispatcher._run``); other threads only put tasks in the inbox and wake
it through a socket. Each loop: take new tasks, give work to idle workers, wait for the first message / worker
death / deadline, handle it. Future callbacks therefore run on this thread: keep them short.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from search.executor._base import EvalOutcome, EvalRequest
from search.executor._book import Task, TaskBook
from search.executor._process import WorkerProcess, WorkerSpec, wait_all
from search.executor._worker import READY, one_line

if TYPE_CHECKING:
    from search.executor._local import LocalExecutorConfig

POLL_S = 0.5  # also how often worker exits are checked when no message arrives
START_FAILURE_LIMIT = 3  # consecutive workers dying before they are ready: the pool is broken
STOP_GRACE_S = 5.0


@dataclass(eq=False)
class _Slot:
    spec: WorkerSpec
    worker: WorkerProcess | None = None
    ready: bool = False
    task: Task | None = None
    since: float = 0.0  # when the worker was started (not ready) or the task was sent (busy)
    done: int = 0  # evaluations finished by the current worker
    retiring: list[WorkerProcess] = field(default_factory=list)


class Dispatcher(TaskBook):
    """Owns the worker processes of a ``LocalExecutor`` (see the module docstring)."""

    def __init__(self, specs: list[WorkerSpec], config: LocalExecutorConfig) -> None:
        super().__init__()
        self._config = config
        self._slots = [_Slot(spec) for spec in specs]
        self._inbox: queue.SimpleQueue[Task] = queue.SimpleQueue()
        self._queue: deque[Task] = deque()
        self._stop_mode: str | None = None  # None, "drain" or "cancel"
        self._start_failures = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        try:
            for slot in self._slots:
                self._spawn(slot)
        except BaseException:
            self._close_workers(graceful=False)  # no half-started pool left behind
            raise
        self._thread = threading.Thread(target=self._run, name="autodisco-dispatch", daemon=True)
        self._thread.start()

    # -- called from any thread -----------------------------------------------------------------------------------

    @property
    def num_workers(self) -> int:
        return len(self._slots)

    @property
    def devices(self) -> tuple[str | None, ...]:
        return tuple(slot.spec.device for slot in self._slots)

    def submit(self, request: EvalRequest) -> Future[EvalOutcome]:
        task = self._admit(request, closed=self._stop_mode is not None)
        self._inbox.put(task)
        self._wake()
        return task.future

    def wait_ready(self, timeout_s: float | None) -> None:
        self._wait_ready(lambda: all(s.ready for s in self._slots), timeout_s, "workers")

    def stop(self, *, cancel: bool) -> None:
        with self._lock:
            if self._stop_mode != "cancel":
                self._stop_mode = "cancel" if cancel else "drain"
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already woken (buffer full) or closed

    # -- the dispatch thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._step():
                pass
        except BaseException as error:  # noqa: BLE001 - a bug here must not leave futures hanging forever
            self._break(f"dispatcher failed: {one_line(error)}")
        finally:
            self._close_workers(graceful=self._stop_mode == "drain" and self._broken is None)
            self._wake_r.close()
            self._wake_w.close()

    def _step(self) -> bool:
        """One loop of the dispatcher; True when it is done."""
        self._take_inbox()
        if self._broken is not None:
            return True
        if self._stop_mode == "cancel":
            self._cancel_all()
            return True
        self._assign()
        if self._stop_mode == "drain" and not self._queue and all(s.task is None for s in self._slots):
            return True
        by_conn = {slot.worker.conn: slot for slot in self._slots if slot.worker is not None}
        for ready in wait([self._wake_r, *by_conn], self._next_timeout()):
            if self._broken is not None:
                return True
            if ready is self._wake_r:
                self._drain_wake()
            else:
                self._receive(by_conn[ready])  # type: ignore[index]
        if self._broken is not None:
            return True
        self._check_deadlines()
        self._check_exits()
        return False

    def _take_inbox(self) -> None:
        while True:
            try:
                task = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._queue.append(task)

    def _assign(self) -> None:
        for slot in self._slots:
            while slot.ready and slot.task is None and self._queue:
                task = self._queue.popleft()
                if task.future.cancelled():
                    self._forget(task)
                    continue
                assert slot.worker is not None
                try:
                    slot.worker.conn.send_bytes(task.message)
                except OSError:  # the worker died while idle: not the task's fault
                    self._queue.appendleft(task)
                    self._on_death(slot)
                    continue
                slot.task, slot.since = task, time.monotonic()

    def _next_timeout(self) -> float:
        now = time.monotonic()
        return max(0.0, min([POLL_S, *(deadline - now for deadline in self._deadlines())]))

    def _deadlines(self) -> list[float]:
        timeout, start = self._config.timeout_s, self._config.start_timeout_s
        found = []
        for slot in self._slots:
            if slot.task is not None and timeout is not None:
                found.append(slot.since + timeout)
            elif not slot.ready:
                found.append(slot.since + start)
        return found

    def _receive(self, slot: _Slot) -> None:
        assert slot.worker is not None
        try:
            data = slot.worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._on_death(slot)
            return
        if data == READY:
            self._on_ready(slot)
            return
        task, slot.task = slot.task, None
        assert task is not None, "a worker sent a result it was not asked for"
        slot.done += 1
        self._complete(task, self._outcome(task, json.loads(data), slot.worker.name))
        if self._config.recycle_every is not None and slot.done >= self._config.recycle_every:
            slot.worker.stop()
            slot.retiring.append(slot.worker)
            self._spawn(slot)

    @staticmethod
    def _outcome(task: Task, message: dict[str, Any], worker: str) -> EvalOutcome:
        return EvalOutcome(key=task.request.key, status=message["status"], result=message["result"],
                           error=message["error"], worker=worker, wall_time=message["wall_time"],
                           attempts=task.crashes + 1)

    def _on_ready(self, slot: _Slot) -> None:
        slot.ready = True
        self._start_failures = 0
        self._notify_ready()

    def _check_deadlines(self) -> None:
        now, timeout = time.monotonic(), self._config.timeout_s
        for slot in self._slots:
            if slot.task is not None and timeout is not None and now >= slot.since + timeout:
                assert slot.worker is not None
                task, slot.task, name, since = slot.task, None, slot.worker.name, slot.since
                slot.worker.kill()
                self._spawn(slot)
                self._complete(task, EvalOutcome(key=task.request.key, status="failed", result=None,
                                                 error=f"timeout after {timeout:g}s", worker=name,
                                                 wall_time=now - since, attempts=task.crashes + 1))
            elif not slot.ready and now >= slot.since + self._config.start_timeout_s:
                assert slot.worker is not None
                slot.worker.kill()
                self._on_death(slot)

    def _check_exits(self) -> None:
        """Catch deaths that closed no socket (an evaluation's own child processes may still hold it)."""
        for slot in self._slots:
            for old in [w for w in slot.retiring if w.exit_code() is not None]:
                old.reap()
                slot.retiring.remove(old)
            worker = slot.worker
            if worker is None or worker.exit_code() is None:
                continue
            while slot.worker is worker and worker.conn.poll(0):
                self._receive(slot)
            if slot.worker is worker:
                self._on_death(slot)

    def _on_death(self, slot: _Slot) -> None:
        """The slot's worker is gone: replace it, and retry or fail what it was running."""
        assert slot.worker is not None
        code, was_ready, name, since = slot.worker.reap(STOP_GRACE_S), slot.ready, slot.worker.name, slot.since
        task, slot.task = slot.task, None
        if not was_ready:
            self._start_failures += 1
            if self._start_failures >= START_FAILURE_LIMIT:
                slot.worker = None
                self._break(f"workers fail to start (exit code {describe_exit(code)}); see their error output above")
                return
        self._spawn(slot)
        if task is None:
            return
        task.crashes += 1
        if task.crashes <= self._config.max_retries:
            self._queue.appendleft(task)
            return
        self._complete(task, EvalOutcome(
            key=task.request.key, status="failed", result=None, worker=name, wall_time=time.monotonic() - since,
            error=f"worker crashed (exit code {describe_exit(code)}) {task.crashes} times", attempts=task.crashes))

    def _spawn(self, slot: _Slot) -> None:
        slot.worker, slot.ready, slot.done, slot.since = WorkerProcess(slot.spec), False, 0, time.monotonic()

    def _pending_tasks(self) -> list[Task]:
        self._take_inbox()
        tasks = list(self._queue) + [s.task for s in self._slots if s.task is not None]
        self._queue.clear()
        for slot in self._slots:
            slot.task = None
        return tasks

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _close_workers(self, *, graceful: bool) -> None:
        workers = [s.worker for s in self._slots if s.worker is not None]
        retiring = [w for s in self._slots for w in s.retiring]
        for slot in self._slots:
            slot.worker, slot.retiring = None, []
        if not graceful:
            for worker in workers + retiring:
                worker.kill()
            return
        for worker in workers:
            worker.stop()
        wait_all(workers + retiring, STOP_GRACE_S)


def describe_exit(code: int) -> str:
    """``"3"``, or ``"-9, SIGKILL"`` for a process killed by a signal."""
    if code < 0:
        try:
            return f"{code}, {signal.Signals(-code).name}"
        except ValueError:
            return str(code)
    return str(code)
