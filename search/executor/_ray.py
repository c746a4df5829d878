"""``RayExecutor``: evaluations on a Ray cluster, one long-lived actor per GPU (or per CPU slot on CPU-only nodes).

Same contract and semantics as ``LocalExecutor`` (see ``Executor``): per-evaluation timeout (the actor is killed and
replaced), an actor or node that dies → the evaluation is retried on another actor up to ``max_retries`` times, then
failed with the reason; actors recycled every ``recycle_every`` evaluations; shutdown kills every actor it started.

With ``workers="auto"`` the pool follows the cluster: every ``RESCAN_S`` it counts the cluster's GPUs (or CPUs) and
starts actors on nodes that joined; actors of a node that left die with it, their evaluations are re-dispatched,
and the surplus of actors that cannot be placed any more is dropped. Ray is imported only when an executor is made
(it is an optional dependency: ``pip install 'autodisco[distributed]'``).

One thread (``_run``) owns the actors; ``submit`` and Ray's completion callbacks only put events in its queue.
"""

from __future__ import annotations

import json
import queue
import socket
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

from search.executor._base import EvalOutcome, EvalRequest, Executor, ExecutorError
from search.executor._book import Task, TaskBook
from search.executor._worker import one_line

RESCAN_S = 1.0  # how often the cluster's size is checked (workers="auto")
POLL_S = 0.5
START_FAILURE_LIMIT = 3  # consecutive actors failing in their constructor: the pool is broken
ACTOR_FN = "search.executor._ray_worker:EvalActor"


class RayUnavailableError(ExecutorError, ValueError):
    """Ray is not installed, or no cluster can be started or joined at the address given (bad user input: the CLI
    prints it as one line)."""


@dataclass(frozen=True)
class RayExecutorConfig:
    """How to run on Ray.

    ``address``: None starts a private local Ray instance (stopped again at shutdown); ``"auto"`` or
    ``"HOST:PORT"`` joins a running cluster (``ray start --head``). If Ray is already initialised in this process
    that connection is used as it is. ``workers``: "auto" (one actor per GPU of the cluster, or per ``cpus_per_actor``
    CPUs on a cluster without GPUs, following nodes as they join and leave) or a fixed number. ``timeout_s``,
    ``max_retries``, ``recycle_every``, ``torch_threads`` ("auto": ``cpus_per_actor``), ``preload`` and
    ``start_timeout_s`` mean what they mean for ``LocalExecutorConfig``; a node lost under an evaluation counts as a
    crash (retried).
    """

    address: str | None = None
    workers: int | Literal["auto"] = "auto"
    timeout_s: float | None = None
    max_retries: int = 2
    recycle_every: int | None = None
    torch_threads: int | Literal["auto"] = "auto"
    preload: tuple[str, ...] = ()
    start_timeout_s: float = 300.0
    cpus_per_actor: int = 1

    def __post_init__(self) -> None:
        from search.executor._local import _positive_or, check_pool_settings

        check_pool_settings(self)
        _positive_or(self.cpus_per_actor, None, "cpus_per_actor")
        if self.address is not None and not self.address:
            raise ValueError("address must be 'auto', HOST:PORT or None (a local Ray instance)")


@dataclass(eq=False)
class _Slot:
    actor: Any = None
    generation: int = 0
    ready: bool = False
    name: str = "ray:starting"
    node: str | None = None
    task: Task | None = None
    since: float = 0.0
    done: int = 0


def import_ray() -> Any:
    """The ``ray`` module, or ``ExecutorError`` with how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("the Ray executor needs Ray: pip install 'autodisco[distributed]'") from None
    return ray


class RayExecutor(Executor, TaskBook):
    """Runs evaluations in Ray actors (see the module docstring and ``Executor`` for the contract)."""

    def __init__(self, config: RayExecutorConfig | None = None) -> None:
        TaskBook.__init__(self)
        self.config = config or RayExecutorConfig()
        ray = self._ray = import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _check_reachable(self.config.address)
            try:
                ray.init(address=self.config.address, include_dashboard=False, configure_logging=False,
                         log_to_driver=True)
            except Exception as error:  # ConnectionError, RuntimeError, ValueError: no cluster there
                where = self.config.address or "a local instance"
                raise RayUnavailableError(f"cannot start or join Ray at {where}: {one_line(error)}; start it with "
                                          "'ray start --head' or check --ray-address") from None
        self._gpu = float(ray.cluster_resources().get("GPU", 0)) >= 1
        self._actor_class = ray.remote(_actor_class())
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._closed = False
        self._start_failures = 0
        self._slots: list[_Slot] = []
        self._queue: list[Task] = []
        self._stop_mode: str | None = None
        self._next_rescan = 0.0
        try:
            for _ in range(self._desired()):
                self._add_slot()
        except BaseException:
            self._kill_all()
            self._release_ray()
            raise
        self._thread = threading.Thread(target=self._run, name="autodisco-ray-dispatch", daemon=True)
        self._thread.start()

    # -- called from any thread -----------------------------------------------------------------------------------

    @property
    def num_workers(self) -> int:
        return max(1, len(self._slots))

    @property
    def worker_names(self) -> tuple[str, ...]:
        """``host:pid:device`` of each actor that has started."""
        return tuple(s.name for s in list(self._slots) if s.ready)

    @property
    def worker_nodes(self) -> tuple[str, ...]:
        """The Ray node id of each actor that has started."""
        return tuple(s.node for s in list(self._slots) if s.ready and s.node is not None)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until every actor has started; ``ExecutorError`` if they cannot or ``timeout_s`` passes."""
        self._wait_ready(lambda: all(s.ready for s in list(self._slots)), timeout_s, "Ray actors")

    def submit(self, request: EvalRequest) -> Future[EvalOutcome]:
        task = self._admit(request, closed=self._closed)
        self._events.put(("submit", task))
        return task.future

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._events.put(("stop", "drain" if wait else "cancel"))
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._release_ray()

    # -- the dispatch thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._step():
                pass
        except BaseException as error:  # noqa: BLE001 - a bug here must not leave futures hanging forever
            self._break(f"Ray dispatcher failed: {one_line(error)}")
        finally:
            self._kill_all()

    def _step(self) -> bool:
        """Handle one event (or a time-out), then assign work and check deadlines; True when done."""
        try:
            event = self._events.get(timeout=self._next_timeout())
        except queue.Empty:
            event = None
        while event is not None:
            self._handle(event)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                event = None
        if self._broken is not None:
            return True
        if self._stop_mode == "cancel":
            self._cancel_all()
            return True
        self._check_deadlines()
        self._rescan()
        self._assign()
        return self._stop_mode == "drain" and not self._queue and all(s.task is None for s in self._slots)

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "submit":
            self._queue.append(event[1])
        elif kind == "stop":
            if self._stop_mode != "cancel":
                self._stop_mode = event[1]
        elif kind == "ready":
            self._on_ready(*event[1:])
        elif kind == "done":
            self._on_done(*event[1:])

    def _next_timeout(self) -> float:
        now, found = time.monotonic(), [POLL_S, self._next_rescan - time.monotonic()]
        for slot in self._slots:
            if slot.task is not None and self.config.timeout_s is not None:
                found.append(slot.since + self.config.timeout_s - now)
        return max(0.0, min(found))

    def _assign(self) -> None:
        for slot in self._slots:
            while slot.ready and slot.task is None and self._queue:
                task = self._queue.pop(0)
                if task.future.cancelled():
                    self._forget(task)
                    continue
                slot.task, slot.since = task, time.monotonic()
                self._watch(slot, "done", slot.actor.run.remote(task.message))

    def _watch(self, slot: _Slot, kind: str, ref: Any) -> None:
        """Put ``(kind, slot, generation, concurrent future)`` in the event queue when ``ref`` resolves."""
        generation, events = slot.generation, self._events
        ref.future().add_done_callback(lambda done: events.put((kind, slot, generation, done)))

    def _on_ready(self, slot: _Slot, generation: int, done: Future[Any]) -> None:
        if slot.generation != generation or slot not in self._slots:
            return
        error = done.exception()
        if error is None:
            info = json.loads(done.result())
            slot.ready, slot.name, slot.node, self._start_failures = True, info["name"], info["node"], 0
            self._notify_ready()
            return
        self._start_failures += 1
        if self._start_failures >= START_FAILURE_LIMIT:
            self._break(f"Ray actors fail to start ({one_line(_cause(error))})")
            return
        self._respawn(slot)

    def _on_done(self, slot: _Slot, generation: int, done: Future[Any]) -> None:
        if slot.generation != generation or slot.task is None:
            return  # a result of an actor already killed (timeout) or replaced: dropped
        task, slot.task = slot.task, None
        error = done.exception()
        if error is not None:  # the actor or its node died under the evaluation
            self._crashed(task, slot, f"{type(error).__name__}: {_first_line(error)}")
            self._respawn(slot)
            return
        message = json.loads(done.result())
        slot.done += 1
        self._complete(task, EvalOutcome(key=task.request.key, status=message["status"], result=message["result"],
                                         error=message["error"], worker=slot.name, wall_time=message["wall_time"],
                                         attempts=task.crashes + 1))
        if self.config.recycle_every is not None and slot.done >= self.config.recycle_every:
            self._respawn(slot)

    def _crashed(self, task: Task, slot: _Slot, reason: str) -> None:
        task.crashes += 1
        if task.crashes <= self.config.max_retries:
            self._queue.insert(0, task)
            return
        self._complete(task, EvalOutcome(
            key=task.request.key, status="failed", result=None, worker=slot.name,
            wall_time=time.monotonic() - slot.since, attempts=task.crashes,
            error=f"worker crashed ({reason[:300]}) {task.crashes} times"))

    def _check_deadlines(self) -> None:
        now, timeout = time.monotonic(), self.config.timeout_s
        for slot in self._slots:
            if slot.task is not None and timeout is not None and now >= slot.since + timeout:
                task, slot.task = slot.task, None
                self._complete(task, EvalOutcome(key=task.request.key, status="failed", result=None,
                                                 error=f"timeout after {timeout:g}s", worker=slot.name,
                                                 wall_time=now - slot.since, attempts=task.crashes + 1))
                self._respawn(slot)
            elif not slot.ready and now >= slot.since + self.config.start_timeout_s:
                self._respawn(slot)  # not placed or not started in time (e.g. its node left): try again

    def _rescan(self) -> None:
        """Follow the cluster's size (``workers="auto"``): start actors for new capacity, drop what cannot run."""
        now = time.monotonic()
        if self.config.workers != "auto" or now < self._next_rescan:
            return
        self._next_rescan = now + RESCAN_S
        desired = self._desired()
        while len(self._slots) < desired:
            self._add_slot()
        surplus = len(self._slots) - desired
        for slot in sorted(self._slots, key=lambda s: (s.ready, s.task is not None)):
            if surplus <= 0 or slot.task is not None:
                break
            self._kill(slot)
            self._slots.remove(slot)
            surplus -= 1

    def _desired(self) -> int:
        if self.config.workers != "auto":
            return self.config.workers
        resources = self._ray.cluster_resources()
        if self._gpu:
            return max(1, int(resources.get("GPU", 0)))
        return max(1, int(resources.get("CPU", 0)) // self.config.cpus_per_actor)

    def _add_slot(self) -> None:
        slot = _Slot()
        self._slots.append(slot)
        self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        config = self.config
        threads = config.torch_threads if config.torch_threads != "auto" else config.cpus_per_actor
        spec = {"sys_path": list(sys.path), "torch_threads": threads, "preload": list(config.preload),
                "gpu": self._gpu}
        options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        options.update({"num_gpus": 1, "num_cpus": 0} if self._gpu else {"num_cpus": config.cpus_per_actor})
        slot.generation += 1
        slot.actor = self._actor_class.options(**options).remote(json.dumps(spec))
        slot.ready, slot.name, slot.done, slot.since = False, "ray:starting", 0, time.monotonic()
        self._watch(slot, "ready", slot.actor.ready.remote())

    def _respawn(self, slot: _Slot) -> None:
        self._kill(slot)
        if self._stop_mode is None or self._queue or slot.task is not None:
            self._spawn(slot)

    def _kill(self, slot: _Slot) -> None:
        if slot.actor is not None:
            try:
                self._ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead, or its node is gone
                pass
            slot.actor, slot.ready = None, False
            slot.generation += 1

    def _kill_all(self) -> None:
        for slot in self._slots:
            self._kill(slot)

    def _release_ray(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()

    # -- futures --------------------------------------------------------------------------------------------------

    def _pending_tasks(self) -> list[Task]:
        while True:
            try:
                self._handle(self._events.get_nowait())
            except queue.Empty:
                break
        tasks = self._queue + [s.task for s in self._slots if s.task is not None]
        self._queue = []
        for slot in self._slots:
            slot.task = None
        return tasks


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail fast, with one line, on a ``HOST:PORT`` nobody listens at (Ray itself would retry for minutes)."""
    if address is None or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailableError(f"--ray-address {address!r}: give 'auto' or HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise RayUnavailableError(f"no Ray cluster at {address} ({error.strerror or error}); start one with "
                                  "'ray start --head' or check --ray-address") from None


def _actor_class() -> type:
    from search.executor._ray_worker import EvalActor

    return EvalActor


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _cause(error: BaseException) -> BaseException:
    """The user's exception inside Ray's wrapper of a failed actor constructor, when there is one."""
    cause = getattr(error, "cause", None) or getattr(error, "__cause__", None)
    return cause if isinstance(cause, BaseException) else error
