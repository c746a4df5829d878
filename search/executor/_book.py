"""The bookkeeping every dispatcher shares: the futures of requests in flight, and a pool that breaks.

``LocalExecutor``'s ``Dispatcher`` and ``RayExecutor`` differ in how they run workers (processes vs actors) but not in
what they promise the caller: a request key is in flight at most once, ``submit`` on a broken or closed pool raises,
every future ends (a result, a cancellation, or ``ExecutorError`` when the pool breaks), and ``wait_ready`` returns
once every worker has started. ``TaskBook`` holds that promise once; a dispatcher subclasses it and says which tasks
it still holds (``_pending_tasks``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Callable

from search.executor._base import EvalOutcome, EvalRequest, ExecutorError


@dataclass(eq=False)
class Task:
    """One submitted request: its encoded message, its caller's future, and how often its worker crashed under it."""

    request: EvalRequest
    message: bytes
    future: Future[EvalOutcome]
    crashes: int = 0


class TaskBook(ABC):
    """In-flight keys, the broken state and the ready condition; thread-safe (``_lock`` guards the first two)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._broken: str | None = None
        self._ready = threading.Condition()

    @abstractmethod
    def _pending_tasks(self) -> list[Task]:
        """Take every task this dispatcher holds (queued or running) out of its hands; dispatch thread only."""

    def _admit(self, request: EvalRequest, *, closed: bool) -> Task:
        """A new task for ``request``; raises if the pool is broken or ``closed``, or the key is already in flight."""
        message = request.encode()
        with self._lock:
            if self._broken is not None:
                raise ExecutorError(self._broken)
            if closed:
                raise ExecutorError("the executor is shut down; create a new one")
            if request.key in self._in_flight:
                raise ValueError(f"request {request.key!r} is already in flight; keys must be unique")
            self._in_flight.add(request.key)
        return Task(request, message, Future())

    def _wait_ready(self, all_ready: Callable[[], bool], timeout_s: float | None, what: str) -> None:
        with self._ready:
            done = self._ready.wait_for(lambda: self._broken is not None or all_ready(), timeout_s)
        if self._broken is not None:
            raise ExecutorError(self._broken)
        if not done:
            raise ExecutorError(f"{what} not ready after {timeout_s:g}s")

    def _notify_ready(self) -> None:
        with self._ready:
            self._ready.notify_all()

    def _complete(self, task: Task, outcome: EvalOutcome) -> None:
        self._forget(task)
        try:
            task.future.set_result(outcome)
        except InvalidStateError:
            pass  # cancelled by its owner meanwhile: the result is dropped

    def _forget(self, task: Task) -> None:
        with self._lock:
            self._in_flight.discard(task.request.key)

    def _cancel_all(self) -> None:
        for task in self._pending_tasks():
            self._forget(task)
            task.future.cancel()

    def _break(self, reason: str) -> None:
        """The pool cannot go on: every held future ends with ``ExecutorError(reason)``, later submits raise it."""
        with self._lock:
            self._broken = reason
        for task in self._pending_tasks():
            self._forget(task)
            try:
                task.future.set_exception(ExecutorError(reason))
            except InvalidStateError:
                pass  # cancelled by its owner
        self._notify_ready()
