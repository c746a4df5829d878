"""``LocalExecutor``: a pool of worker processes on this machine, one per GPU or N on CPU."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

from search.executor._base import EvalOutcome, EvalRequest, Executor, ExecutorError
from search.executor._devices import visible_gpus
from search.executor._dispatch import Dispatcher
from search.executor._process import WorkerSpec


@dataclass(frozen=True)
class LocalExecutorConfig:
    """How to run the local pool.

    ``workers``: "auto" (one per device when there are GPUs, else one per CPU core) or a number (spread round-robin
    over ``devices``). ``devices``: GPU ids for ``CUDA_VISIBLE_DEVICES``; None finds them (see
    ``search.executor._devices``); () runs on CPU only. ``timeout_s``: per evaluation (None: no limit); the worker is
    killed and replaced. ``max_retries``: re-runs after a worker crash. ``recycle_every``: replace a worker after
    that many evaluations (None: never). ``torch_threads``: per worker ("auto": cores // workers, at least 1).
    ``preload``: modules each worker imports before it takes work (e.g. ("torch",)), so their import time never
    counts against ``timeout_s``. ``start_timeout_s``: a worker not ready by then counts as failing to start.
    """

    workers: int | Literal["auto"] = "auto"
    devices: tuple[str, ...] | None = None
    timeout_s: float | None = None
    max_retries: int = 2
    recycle_every: int | None = None
    torch_threads: int | Literal["auto"] = "auto"
    preload: tuple[str, ...] = ()
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.devices is not None:
            object.__setattr__(self, "devices", tuple(str(d) for d in self.devices))
        check_pool_settings(self)

    def worker_specs(self) -> list[WorkerSpec]:
        """One spec per worker: its device (None on CPU) and thread count."""
        devices = visible_gpus() if self.devices is None else self.devices
        cores = os.cpu_count() or 1
        count = self.workers if self.workers != "auto" else (len(devices) or cores)
        threads = self.torch_threads if self.torch_threads != "auto" else max(1, cores // count)
        return [WorkerSpec(device=devices[i % len(devices)] if devices else None, torch_threads=threads,
                           preload=self.preload) for i in range(count)]


def check_pool_settings(config: Any) -> None:
    """The settings every worker pool shares (local or Ray): ``preload`` as a tuple, ``workers`` and
    ``torch_threads`` positive or "auto", ``recycle_every`` positive or None, ``timeout_s`` positive or None,
    ``max_retries`` >= 0, ``start_timeout_s`` positive; ``ValueError`` naming the field otherwise."""
    object.__setattr__(config, "preload", tuple(config.preload))
    _positive_or(config.workers, "auto", "workers")
    _positive_or(config.torch_threads, "auto", "torch_threads")
    _positive_or(config.recycle_every, None, "recycle_every")
    if config.timeout_s is not None and config.timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive or None, got {config.timeout_s}")
    if config.max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, got {config.max_retries}")
    if config.start_timeout_s <= 0:
        raise ValueError(f"start_timeout_s must be positive, got {config.start_timeout_s}")


def _positive_or(value: object, special: object, name: str) -> None:
    if value != special and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"{name} must be a positive integer or {special!r}, got {value!r}")


class LocalExecutor(Executor):
    """Runs evaluations in worker processes on this machine (see ``Executor`` for the contract).

    Workers start when the executor is created (``wait_ready`` blocks until all have). A driver thread hands each
    request to an idle worker as soon as one is free, so all workers stay busy and a slow evaluation never stalls
    the others. A timeout kills and replaces the worker ("timeout after Xs", no retry); a crashed worker (segfault,
    ``os._exit``, OOM kill) is replaced and the evaluation re-run up to ``max_retries`` times, then reported as
    "worker crashed (exit code N) K times". Workers exit by themselves within a second if the driver dies.
    """

    def __init__(self, config: LocalExecutorConfig | None = None) -> None:
        self.config = config or LocalExecutorConfig()
        self._dispatcher = Dispatcher(self.config.worker_specs(), self.config)
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def num_workers(self) -> int:
        return self._dispatcher.num_workers

    @property
    def worker_devices(self) -> tuple[str | None, ...]:
        """The GPU id of each worker (None: CPU)."""
        return self._dispatcher.devices

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until every worker has started; ``ExecutorError`` if they cannot or ``timeout_s`` passes."""
        self._dispatcher.wait_ready(timeout_s)

    def submit(self, request: EvalRequest) -> Future[EvalOutcome]:
        if self._closed:
            raise ExecutorError("the executor is shut down; create a new one")
        return self._dispatcher.submit(request)

    def shutdown(self, wait: bool = True) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._dispatcher.stop(cancel=not wait)
