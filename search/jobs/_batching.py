"""Batched dispatch for the search job: pending evaluations grouped into batch requests, batch outcomes split back.

With ``--batch K`` the job asks the strategy for candidates (after the FEC lookup: a cache hit is recorded at once and
never evaluated) until K evaluations are pending, then sends them to the executor as one request to the kind's batch
worker function (``search.kinds.workers:evaluate_optimizer_batch``), which trains requests of the same tasks and seed
together. Each worker gets a batch while there are candidates to ask for, so every worker's batch is full. When the
batch's outcome arrives it is split into one outcome per candidate, recorded in request order. A batch that was in
flight when the job stopped is pending in the store; resume re-dispatches the pending evaluations in batches again.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from search.executor import EvalOutcome, EvalRequest, Executor

# Worker functions that evaluate one candidate -> the function that evaluates a batch of their payloads.
BATCH_FUNCTIONS = {"search.kinds.workers:evaluate_optimizer": "search.kinds.workers:evaluate_optimizer_batch"}
AUTO = "auto"


class _Job(Protocol):
    """What batching needs from the search job."""

    inflight: dict[Future[EvalOutcome], Any]



def batch_function(worker_fn: str) -> str | None:
    """The batch worker function of a kind's ``worker_fn`` (None: that kind is evaluated one at a time)."""
    return BATCH_FUNCTIONS.get(worker_fn)


def check_batch(value: Any) -> int | str:
    """``value`` as a batch setting (a positive integer or ``"auto"``); ``ValueError`` (one line) otherwise."""
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"--batch must be a positive integer or 'auto', got {value!r}")
    return value


def auto_batch(tasks: Sequence[str], population: int, workers: int) -> int:
    """``--batch auto``: the largest batch every task fits in memory (``evaluators.max_batch``), and at most the
    population shared among the workers, so that evolution still sees results while the population turns over."""
    from evaluators import max_batch

    fits = min(max_batch(task) for task in tasks)
    return max(1, min(fits, population // max(1, workers)))


@dataclass
class Batcher:
    """The evaluations waiting to be sent in a batch; ``size`` is K, ``fn`` the batch worker function."""

    size: int
    fn: str
    pending: list[tuple[Any, dict[str, Any], str]] = field(default_factory=list)  # (flight, payload, key)

    def add(self, flight: Any, payload: dict[str, Any], key: str) -> None:
        self.pending.append((flight, payload, key))

    def dispatch(self, job: _Job, executor: Executor, *, final: bool) -> None:
        """Send full batches while a worker is free; a short batch too when ``final`` (nothing more will be asked)."""
        while self.pending and len(job.inflight) < executor.num_workers and (final or len(self.pending) >= self.size):
            chunk, self.pending = self.pending[: self.size], self.pending[self.size :]
            self._send(job, executor, chunk)

    def flush(self, job: _Job, executor: Executor) -> None:
        """Send everything pending, in batches of at most ``size`` (in order: a re-dispatched batch stays whole)."""
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), self.size):
            self._send(job, executor, pending[start : start + self.size])

    def _send(self, job: _Job, executor: Executor, chunk: list[tuple[Any, dict[str, Any], str]]) -> None:
        request = EvalRequest(key=f"batch:{chunk[0][2]}", fn=self.fn,
                              payload={"requests": [payload for _, payload, _ in chunk]})
        job.inflight[executor.submit(request)] = [flight for flight, _, _ in chunk]

    @staticmethod
    def split(outcome: EvalOutcome, flights: list[Any], keys: list[str] | None = None) -> list[EvalOutcome]:
        """One outcome per candidate of a batch: its own result, or the batch's failure (timeout, crash) for all."""
        results = (outcome.result or {}).get("results") if outcome.ok else None
        share = outcome.wall_time / max(1, len(flights))
        keys = keys or [outcome.key] * len(flights)
        if not isinstance(results, list) or len(results) != len(flights):
            error = outcome.error or "the batch worker returned a malformed result"
            return [EvalOutcome(key, "failed", None, error, outcome.worker, share, outcome.attempts) for key in keys]
        return [EvalOutcome(key, "ok", result, None, outcome.worker, share, outcome.attempts)
                for key, result in zip(keys, results)]
