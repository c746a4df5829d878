"""``autodisco runs delete RUN [--yes]``: remove a run that is not running.

A run folder goes whole (its ``results.db`` with every job in it — the search and its ``NAME/validate`` — and the
files beside it). With ``--db URL`` the run is the job NAME of a shared database: its rows and those of its jobs
``NAME/...`` are deleted in one transaction (with the validation's Optuna studies), and the other jobs stay.
A job whose lease is alive (a driver runs it now) is refused: one line, exit status 2, nothing deleted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from search.cli._common import UsageError, open_run
from search.cli._report import add_run_arguments, plural

if TYPE_CHECKING:  # the store imports SQLAlchemy: only when a command runs
    from search.store import JobRecord, Store

_STUDY_PREFIX = "validate:"  # search.funnel names its Optuna studies validate:<job name>:<candidate>:<task>


def register(sub: argparse._SubParsersAction) -> None:
    delete = sub.add_parser("delete", help="delete a finished or interrupted run (asks first unless --yes)")
    add_run_arguments(delete, json_output=False)
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_delete)


def _delete(args: argparse.Namespace) -> int:
    from search.store import LeaseHeldError, Store

    if args.db is None and Path(args.run).is_symlink():
        raise UsageError(f"{args.run!r} is a symbolic link; delete the folder it points to (or the link) by hand")
    store, job = open_run(args.run, args.db)
    with store:
        doomed = _jobs_to_delete(store, job, whole_database=args.db is None)
        _refuse_running(doomed)
        what = _describe(args.run, args.db, doomed)
        if not args.yes and not _confirmed(what):
            print("nothing deleted")
            return 1
        if args.db is not None:
            try:
                deleted = store.delete_jobs(j.id for j in doomed)
            except LeaseHeldError as error:  # started while we asked
                raise UsageError(f"run {args.run!r}: {error}") from None
            studies = _delete_studies(store, doomed)
    if args.db is None:
        with Store.for_run(args.run, create=False) as again:  # started while we asked?
            _refuse_running(_jobs_to_delete(again, job, whole_database=True))
        _remove_folder(Path(args.run))
        print(f"deleted {what}")
    else:
        print(f"deleted {what}: {plural(deleted['candidates'], 'candidate')}, "
              f"{plural(deleted['evaluations'], 'evaluation')}"
              + (f", {plural(studies, 'Optuna study', 'Optuna studies')}" if studies else ""))
    return 0


def _remove_folder(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except OSError as error:
        raise UsageError(f"could not delete all of {str(path)!r} ({error}); its database may be gone already — "
                         "delete what is left by hand") from None


def _jobs_to_delete(store: Store, job: JobRecord, *, whole_database: bool) -> list[JobRecord]:
    """The run's job and its own jobs (``NAME/validate`` ...); for a run folder, every job in its database."""
    return [other for other in store.list_jobs()
            if whole_database or other.id == job.id or other.name.startswith(job.name + "/")]


def _refuse_running(doomed: list[JobRecord]) -> None:
    running = [j.name for j in doomed if j.status == "running"]
    if running:
        raise UsageError(f"{', '.join(map(repr, running))} is running now; stop it (Ctrl-C where it runs) or wait "
                         "for it to end, then delete the run")


def _describe(run: str, db: str | None, doomed: list[JobRecord]) -> str:
    jobs = ", ".join(f"{j.name!r} ({_method(j)}, {j.status})" for j in doomed)
    return f"run folder {run!r} with job {jobs}" if db is None else f"job {jobs} from the database"


def _method(job: JobRecord) -> str:
    return str(job.config.get("method", "search")) if isinstance(job.config, dict) else "?"


def _confirmed(what: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(f"not deleting {what} without confirmation: no terminal to ask on; add --yes")
    try:
        answer = input(f"delete {what}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _delete_studies(store: Store, doomed: list[JobRecord]) -> int:
    """Delete the Optuna studies of the deleted jobs' validation sweeps (kept in the same database); how many."""
    import sqlalchemy as sa

    from search.funnel import optuna_storage_url

    engine = sa.create_engine(optuna_storage_url(store))
    try:
        if not sa.inspect(engine).has_table("studies"):
            return 0
        prefixes = tuple(f"{_STUDY_PREFIX}{j.name}:" for j in doomed)
        with engine.connect() as conn:
            names = [n for (n,) in conn.execute(sa.text("SELECT study_name FROM studies")) if n.startswith(prefixes)]
    finally:
        engine.dispose()
    if not names:
        return 0
    import optuna

    storage = optuna.storages.RDBStorage(optuna_storage_url(store))
    try:
        for name in names:
            optuna.delete_study(study_name=name, storage=storage)
    finally:
        storage.engine.dispose()
    return len(names)
