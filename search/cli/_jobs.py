"""The one way every command starts, runs and resumes a job: the runner, the "how to continue" line, the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from search.cli._common import UsageError, executor_factory

if TYPE_CHECKING:
    from search.jobs import Job

EXIT_INTERRUPTED = 130


def context_options(args: argparse.Namespace, run: Path | None) -> dict[str, Any]:
    """The ``JobContext`` fields that come from the command line: run folder, executor, progress, messages."""
    return {
        "run_dir": run,
        "executor_factory": executors(args) if hasattr(args, "workers") else None,
        "show_progress": not getattr(args, "quiet", False),
        "say": (lambda line: None) if getattr(args, "quiet", False) else say,
        "options": {"threads": getattr(args, "threads", None), "db_wait_s": db_wait(args)},
    }


def db_wait(args: argparse.Namespace) -> float:
    """``--db-wait``: seconds a job waits for a database that dropped its connection (default ``DB_WAIT_S``)."""
    from search.jobs import DB_WAIT_S

    value = getattr(args, "db_wait", None)
    if value is None:
        return DB_WAIT_S
    if not value >= 0:
        raise UsageError(f"--db-wait must be >= 0 seconds (0: stop at once), got {value:g}")
    return float(value)


def executors(args: argparse.Namespace) -> Any:
    """``JobContext.executor_factory`` from ``--workers/--timeout/--threads`` (checked now, built when a job runs)."""
    executor_factory(args, preload=())  # validates the options before anything is recorded

    def build(*, preload: tuple[str, ...] = (), recycle_every: int | None = 500) -> Any:
        return executor_factory(args, preload=preload, recycle_every=recycle_every)()

    return build


def run_to_end(job: Job, run: str, report: Callable[[Any], None] | None = None) -> int:
    """Run ``job``; on Ctrl-C/SIGTERM say how to continue (exit 130); at the end print its report (``report``
    instead, e.g. JSON, when given) and return the job's exit status."""
    from search.jobs import run_until_done
    from search.store import StorageError

    try:
        job, result = run_until_done(job)
    except StorageError as error:  # the store cannot name the run: the command can
        raise StorageError(str(error).replace("autodisco resume RUN ", f"autodisco resume {run} ")) from None
    except KeyboardInterrupt:
        print(f"autodisco: interrupted; everything finished is recorded. Continue with: autodisco resume {run}"
              f"{job.db_option()}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if report is not None:
        report(result)
    else:  # the result goes to stdout even with --quiet, which silences only progress and messages (stderr)
        for line in job.report(result):
            print(line)
    return job.exit_status(result)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def refuse_finished(record: Any, run: str) -> None:
    if record.status == "finished":
        raise UsageError(f"job {record.name!r} already finished; start a new run to go further")
