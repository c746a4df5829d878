"""The registry of job types by ``method``, and the three ways into a job: create, open (to resume), run."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, TypeVar

from search.jobs._base import PROGRESS_KEY, Job, JobContext, JobError, checkpoint_state
from search.store import JobRecord, Store, StoreError

JOBS: dict[str, type[Job]] = {}
LEGACY_METHOD = "search"  # search jobs made before jobs stored their method had none
BUILTIN = {  # method -> the module that registers it, imported on first use (most import torch)
    "search": "search.jobs._search", "validate": "search.jobs._validate", "darts": "search.jobs._darts",
    "train": "search.jobs._train", "oneshot": "search.jobs._oneshot", "fewshot": "search.jobs._fewshot",
    "groundtruth": "search.jobs._groundtruth",
}

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
    config = record.config
    if not isinstance(config, Mapping):
        raise JobError(f"job {record.name!r}: its stored configuration is not an object; the database is damaged")
    method = config.get("method", LEGACY_METHOD)
    if isinstance(method, str) and method not in JOBS and method in BUILTIN:
        importlib.import_module(BUILTIN[method])
    if not isinstance(method, str) or method not in JOBS:
        known = ", ".join(sorted(set(JOBS) | set(BUILTIN)))
        raise JobError(f"job {record.name!r} has an unknown method {method!r}; known: {known}")
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
        store.save_checkpoint(record.id, checkpoint_state(job))
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
    """``{"method", "unit", "done", "total"}`` of a stored job from its latest checkpoint (the runner writes them
    there, so no job module — and no torch — is imported), or, for checkpoints older than that, from the job type's
    ``progress_of``; ``done``/``total`` are None where unknown or unreadable (a listing never fails on one job)."""
    method = record.config.get("method", LEGACY_METHOD) if isinstance(record.config, Mapping) else None
    unknown = {"method": method, "unit": None, "done": None, "total": None}
    try:
        checkpoint = store.latest_checkpoint(record.id)
        state = checkpoint.state if checkpoint is not None and isinstance(checkpoint.state, Mapping) else {}
        saved = state.get(PROGRESS_KEY)
        if isinstance(saved, Mapping):
            return {**unknown, **{k: saved.get(k) for k in ("unit", "done", "total")}}
        job_type = job_type_of(record)
        done, total = job_type.progress_of(record.config, state)
        return {"method": job_type.method, "unit": job_type.unit, "done": done, "total": total}
    except (JobError, KeyError, TypeError, ValueError, AttributeError):
        return unknown
