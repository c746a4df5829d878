"""Executors for the in-flight dedup tests (tests/search/test_inflight_dedup.py), importable in a subprocess.

``LaggedExecutor`` keeps ``num_workers`` evaluations in flight for real: each submit that fills the last free worker
answers the oldest held request (first in, first out), so results arrive while other requests are still out, always
in the same order; requests left when the job stops submitting (its budget is spent) are answered after a short pause.
``HeldExecutor`` answers the baseline at once and holds every other request forever (a driver then killed with
``kill -9`` leaves them in flight). Fitness is drawn from the program text, so nothing here imports torch.

``python _held_executor.py RUN_DIR`` runs a search on a ``HeldExecutor`` until it is killed.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import xxhash

from search.executor import EvalOutcome, EvalRequest, Executor


def answer(request: EvalRequest) -> EvalOutcome:
    """An instant outcome: fitness in [0, 2) from the program text; a batch request gets one result per program."""
    def result(payload: dict[str, Any]) -> dict[str, Any]:
        text = str(payload.get("program", ""))
        fitness = (xxhash.xxh64_intdigest(text.encode()) % 10_000) / 5_000
        return {"status": "ok", "fitness": fitness, "metrics": {}, "scores": {}}

    payload = request.payload
    body = {"results": [result(p) for p in payload["requests"]]} if "requests" in payload else result(payload)
    return EvalOutcome(request.key, "ok", body, None, "test", 0.0, 1)


class LaggedExecutor(Executor):
    def __init__(self, workers: int = 4, pause_s: float = 0.05) -> None:
        self.workers = workers
        self.pause_s = pause_s
        self.held: list[tuple[EvalRequest, Future[EvalOutcome]]] = []
        self.submitted: list[EvalRequest] = []
        self.lock = threading.Lock()
        self.last_submit = time.monotonic()
        self.closed = False
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def num_workers(self) -> int:
        return self.workers

    def submit(self, request: EvalRequest) -> Future[EvalOutcome]:
        future: Future[EvalOutcome] = Future()
        if request.key.startswith("baseline"):
            future.set_result(answer(request))
            return future
        with self.lock:
            self.submitted.append(request)
            self.last_submit = time.monotonic()
            self.held.append((request, future))
            if len(self.held) >= self.workers:
                held, done = self.held.pop(0)
                done.set_result(answer(held))
        return future

    def _drain(self) -> None:
        while not self.closed:
            time.sleep(self.pause_s / 5)
            with self.lock:
                if self.held and time.monotonic() - self.last_submit > self.pause_s:
                    request, future = self.held.pop(0)
                    future.set_result(answer(request))

    def shutdown(self, wait: bool = True) -> None:
        self.closed = True


class _Scrambled(Future):  # type: ignore[type-arg]
    """A future hashed against its submission order, so a set of them iterates out of that order."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self._number = number

    def __hash__(self) -> int:
        return (self._number * 7919) % 1009


class TogetherExecutor(Executor):
    """Holds requests until every worker has one, then answers them all at once: results arrive together, as
    futures whose set order is not their submission order."""

    def __init__(self, workers: int = 4) -> None:
        self.workers = workers
        self.held: list[tuple[EvalRequest, Future[EvalOutcome]]] = []
        self.count = 0

    @property
    def num_workers(self) -> int:
        return self.workers

    def submit(self, request: EvalRequest) -> Future[EvalOutcome]:
        self.count += 1
        future: Future[EvalOutcome] = _Scrambled(self.count)
        if request.key.startswith("baseline"):
            future.set_result(answer(request))
            return future
        self.held.append((request, future))
        if len(self.held) >= self.workers:
            for held, done in self.held:
                done.set_result(answer(held))
            self.held = []
        return future

    def shutdown(self, wait: bool = True) -> None:
        for held, done in self.held:
            done.set_result(answer(held))


class HeldExecutor(Executor):
    def __init__(self, workers: int = 4) -> None:
        self.workers = workers
        self.held: list[Future[EvalOutcome]] = []

    @property
    def num_workers(self) -> int:
        return self.workers

    def submit(self, request: EvalRequest) -> Future[EvalOutcome]:
        future: Future[EvalOutcome] = Future()
        if request.key.startswith("baseline"):
            future.set_result(answer(request))
        else:
            self.held.append(future)  # never answered
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


def search_config(**overrides: Any) -> Any:
    """A small search whose children often equal their parents functionally (no FCM), so duplicates fly together."""
    from programs import library
    from search.jobs._search import SearchConfig

    settings: dict[str, Any] = dict(tasks=("quadratic",), population=6, tournament=2, evaluations=24, seed=1,
                                    fcm=False, warm_start=(library.get("adamw").to_text(),))
    settings.update(overrides)
    return SearchConfig(**settings)


def main(run_dir: str, batch: int) -> None:
    from search.jobs import run_job
    from search.jobs._search import SearchJob
    from search.kinds import OptimizerKind
    from search.store import Store

    store = Store.for_run(Path(run_dir))
    job = SearchJob.create(store, "held", OptimizerKind(fcm=False), search_config(batch=batch),
                           executor_factory=lambda **_: HeldExecutor(), show_progress=False)
    run_job(job)  # waits forever for the held evaluations: the test kills it with kill -9


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
