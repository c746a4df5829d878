"""Jobs: every long-lived piece of work autodisco does, run the same way.

A ``Job`` (``_base.py``) is configured by one frozen dataclass, does one unit of work at a time and exposes its state;
the ``Runner`` (``_runner.py``) owns what is the same for all of them — status, one transaction per unit with the
checkpoint, atomic file saves, progress, Ctrl-C and SIGTERM. Job types register by name (``JOBS``), so
``open_job`` (``autodisco resume``) continues any stored run, and ``run_until_done`` does the same in-process when the
database drops the connection mid-run. Built-in types: ``search`` (optimizer and architecture
search), ``validate`` (the meta-validation funnel), ``darts``, ``train``, ``oneshot``, ``fewshot``, ``groundtruth``.
"""

from __future__ import annotations

from search.jobs._base import Job, JobContext, JobError
from search.jobs._registry import JOBS, JobExistsError, create_job, job_type_of, open_job, register_job
from search.jobs._runner import DB_WAIT_S, Runner, run_until_done

__all__ = [
    "DB_WAIT_S",
    "JOBS",
    "Job",
    "JobContext",
    "JobError",
    "JobExistsError",
    "Runner",
    "create_job",
    "job_type_of",
    "open_job",
    "register_job",
    "run_job",
    "run_until_done",
]


def run_job(job: Job) -> object:
    """Run ``job`` to its end and return its result (``run_until_done``: a lost database connection is waited out)."""
    return run_until_done(job)[1]
