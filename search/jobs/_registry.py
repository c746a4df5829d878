"""The registry of job types by ``method``, and the three ways into a job: create, open (to resume), run."""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from search.jobs._base import Job, JobContext, JobError
from search.store import JobRecord, Store, StoreError

JOBS: dict[str, type[Job]] = {}
LEGACY_METHOD = "search"  # search jobs made before jobs stored their method had none

J = TypeVar("J", bound=type[Job])


def register_job(job_type: J) -> J:
    """Class decorator: make ``job_type`` known by its ``method`` (``autodisco resume`` finds it there)."""
    method = job_type.method
    if method in JOBS and JOBS[method] is not job_type:
        raise ValueError(f"two job types claim the method {method!r}: {JOBS[method].__name__}, {job_type.__name__}")
    JOBS[method] = job_type
    return job_type


def job_type_of(record: JobRecord) -> type[Job]:
    """The registered type of a stored job; ``JobError`` naming the known ones if there is none."""
    _load_builtin_jobs()
    config = record.config
    if not isinstance(config, Mapping):
        raise JobError(f"job {record.name!r}: its stored configuration is not an object; the database is damaged")
    method = config.get("method", LEGACY_METHOD)
    if not isinstance(method, str) or method not in JOBS:
        raise JobError(f"job {record.name!r} has an unknown method {method!r}; known: {', '.join(sorted(JOBS))}")
    return JOBS[method]


class JobExistsError(JobError):
    """The run already holds a job of that name."""


def create_job(store: Store, name: str, job_type: type[Job], config: Any, *, kind: str | None = None,
               factory: Callable[[Any, JobContext], Job] | None = None, **context: Any) -> Job:
    """A new job ``name`` of ``job_type``: its row and its first checkpoint in one transaction, so a kill can never
    leave a job that neither resumes nor starts again. ``JobExistsError`` (one line, with what to do) if the name is
    taken. ``context``: the other ``JobContext`` fields; ``factory`` builds the job (default ``job_type``)."""
    existing = store.get_job(name)
    if existing is not None:
        raise JobExistsError(exists_message(existing, context.get("run_dir")))
    build = factory or job_type
    with store.transaction():
        record = store.create_job(name, kind=kind or job_type.kind, config=job_type.config_to_dict(config),
                                  seed=job_type.seed_of(config))
        job = build(config, JobContext(store, record, **context))
        job.prepare()
        store.save_checkpoint(record.id, job.state_dict())
    return job


def open_job(store: Store, record: JobRecord, **context: Any) -> Job:
    """The stored job ``record`` rebuilt from its config and latest checkpoint, ready to ``run`` on (resume)."""
    job_type = job_type_of(record)
    try:
        config = job_type.config_from_dict(record.config)
    except (KeyError, TypeError, AttributeError) as error:
        raise JobError(f"job {record.name!r}: its stored configuration is malformed ({type(error).__name__}: "
                       f"{error}); the database was edited or damaged") from None
    job = job_type(config, JobContext(store, record, **context))
    job.prepare()
    checkpoint = store.latest_checkpoint(record.id)
    try:
        job.load_state_dict(None if checkpoint is None else checkpoint.state)
    except (JobError, StoreError):
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:  # an edited or damaged checkpoint
        seq = checkpoint.seq if checkpoint else "?"
        raise JobError(f"job {record.name!r}: its saved state (checkpoint {seq}, cache entries) is malformed "
                       f"({type(error).__name__}: {error}); the database was edited or damaged") from None
    return job


def exists_message(record: JobRecord, run_dir: Any) -> str:
    where = str(run_dir) if run_dir is not None else record.name
    method = record.config.get("method", LEGACY_METHOD) if isinstance(record.config, Mapping) else "?"
    if record.status == "finished":
        return f"run {where!r} already exists (a finished {method} job); choose another --run"
    return (f"run {where!r} already exists (a {method} job, {record.status}); continue it with: autodisco resume "
            f"{where}, or choose another --run")


def job_progress(store: Store, record: JobRecord) -> dict[str, Any]:
    """``{"method", "unit", "done", "total"}`` of a stored job from its config and latest checkpoint, for listings;
    ``done``/``total`` are None where unknown or unreadable (a listing never fails on one damaged job)."""
    try:
        job_type = job_type_of(record)
    except JobError:
        method = record.config.get("method") if isinstance(record.config, Mapping) else None
        return {"method": method, "unit": None, "done": None, "total": None}
    done = total = None
    try:
        checkpoint = store.latest_checkpoint(record.id)
        state = checkpoint.state if checkpoint is not None and isinstance(checkpoint.state, Mapping) else {}
        done, total = job_type.progress_of(record.config, state)
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    return {"method": job_type.method, "unit": job_type.unit, "done": done, "total": total}


def _load_builtin_jobs() -> None:
    """Import the job modules that register themselves (kept lazy: they import torch and nas)."""
    import search.jobs._builtin  # noqa: F401
