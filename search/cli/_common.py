"""Helpers shared by the command modules: opening a run's store, finding its job, printing JSON.

Every command module is imported to build the parser (``autodisco --help`` answers at once): at module level they
import only the standard library and each other. The store (SQLAlchemy), the executors, the jobs and everything
below them are imported inside the functions that use them (``tests/test_layout.py`` checks it).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from search.executor import Executor
    from search.store import JobRecord, Store

RESULTS_FILE = "results.db"  # search.store.RESULTS_FILE (a copy: the store imports SQLAlchemy; a test checks it)


class UsageError(ValueError):
    """Bad input on the command line; printed as one line, exit status 2."""


def open_run(run: str, db: str | None = None, *, read_only: bool = False) -> tuple[Store, JobRecord]:
    """The store and job of the run folder ``run`` (or of ``db``, a database URL, with the job named by ``run``).

    The job's name is the run folder's name. A missing folder or job is a ``UsageError`` naming what to do. Commands
    that only read open with ``read_only``: the database is left byte-identical and may be on read-only media.
    """
    from search.store import Store

    path = Path(run)
    name = path.name
    if db is None:
        if not path.is_dir():
            guess = Path("runs") / run  # a run named without its folder: "demo" for runs/demo
            if not path.is_absolute() and (guess / RESULTS_FILE).is_file():
                raise UsageError(f"no run folder {run!r}; did you mean {str(guess)!r}? (runs are named by folder)")
            raise UsageError(f"no run folder {run!r}; start one with 'autodisco search optimizer --run {run}'")
        if not (path / RESULTS_FILE).is_file():
            raise UsageError(f"{run!r} has no {RESULTS_FILE}; is it a run folder made by autodisco?")
        store = Store.for_run(path, create=False, read_only=read_only)
    else:
        store = Store(db, create=False, read_only=read_only)
    try:
        job = store.get_job(name)
        if job is None:
            known = ", ".join(j.name for j in store.list_jobs()) or "none"
            raise UsageError(f"no job {name!r} in the results database of {run!r} (jobs there: {known})")
    except BaseException:
        store.close()
        raise
    return store, job


def add_executor_options(parser: Any) -> None:
    """``--executor local|ray`` and ``--ray-address``, for every command that dispatches work to workers."""
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: worker processes on this machine (default); ray: actors on a Ray cluster")
    parser.add_argument("--ray-address", metavar="auto|HOST:PORT",
                        help="with --executor ray: join this cluster (default: start a Ray instance on this machine)")


DB_WAIT_S = 300.0  # search.jobs.DB_WAIT_S, copied: building the parser imports no SQLAlchemy (test_layout checks)


def add_db_wait_option(parser: Any) -> None:
    """``--db-wait SECONDS``, for every command that runs a job on a database given by URL."""
    parser.add_argument("--db-wait", type=float, metavar="SECONDS",
                        help="when the database drops the connection (a restart, a failover, a network failure), "
                             f"wait this long for it, then continue from the last checkpoint (default {DB_WAIT_S:g}; "
                             "0: stop at once)")


def executor_factory(args: Any, *, preload: tuple[str, ...],
                     recycle_every: int | None = 500) -> Callable[[], Executor]:
    """A factory of the executor from ``--executor``, ``--ray-address``, ``--workers``, ``--timeout`` and
    ``--threads`` (validated): the local worker pool, or actors on a Ray cluster."""
    from search.executor import LocalExecutor, LocalExecutorConfig, RayExecutor, RayExecutorConfig

    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout}")
    threads = _count_or_auto(getattr(args, "threads", "auto"), "--threads")
    workers = _count_or_auto(args.workers, "--workers")
    if getattr(args, "executor", "local") == "ray":
        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs Ray: pip install 'autodisco[distributed]'")
        ray_config = RayExecutorConfig(address=getattr(args, "ray_address", None), workers=workers,
                                       timeout_s=args.timeout, recycle_every=recycle_every, torch_threads=threads,
                                       preload=preload)
        return lambda: RayExecutor(ray_config)
    if getattr(args, "ray_address", None) is not None:
        raise UsageError("--ray-address needs --executor ray")
    config = LocalExecutorConfig(workers=workers, timeout_s=args.timeout, recycle_every=recycle_every,
                                 torch_threads=threads, preload=preload)
    return lambda: LocalExecutor(config)


def add_threads_option(parser: Any) -> None:
    """``--threads N`` of a command that trains in its own process (``nas darts|train|oneshot|score``)."""
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the networks are small, and more threads than free cores "
                             "slow them down many times over)")


def check_threads(threads: int) -> None:
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")


def _count_or_auto(value: Any, option: str) -> Any:
    if value == "auto":
        return value
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option} must be 'auto' or a number, got {value!r}") from None
    if count < 1:
        raise UsageError(f"{option} must be at least 1, got {count}")
    return count


def search_task(job: JobRecord) -> str | None:
    """The task string of the job's own search evaluations (others, e.g. ``validate``'s, use other tasks)."""
    tasks = job.config.get("tasks") if isinstance(job.config, dict) else None
    return "+".join(tasks) if tasks else None


def print_json(value: Any) -> None:
    """Strict JSON on stdout: NaN and infinities (which JSON has not) become null; times and the like, text."""
    json.dump(_strict(value), sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def new_run(run: str) -> Path:
    """The folder of a run that does not exist yet (``UsageError`` if it is a file or already holds that job), checked
    before a job loads its data; ``search.jobs.create_job`` checks again when it records the job."""
    from search.jobs._registry import exists_message
    from search.store import Store

    path = Path(run)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--run {run!r} is a file; give a folder")
    if (path / RESULTS_FILE).is_file():
        with Store.for_run(path, create=False, read_only=True) as store:
            record = store.get_job(path.name)
            if record is not None:
                raise UsageError(exists_message(record, run))
    return path


def device_option(device: str | None) -> str:
    """``--device``: None picks cuda when available; an unusable device is a ``UsageError``."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device must be cpu or cuda[:i], got {device!r}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda[:i], got {device!r}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r}: no CUDA device is available here; use --device cpu")
    return device
