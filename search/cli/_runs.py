"""``autodisco runs list|show|top|lineage|plot|compare|delete``: inspection of runs and their results database.

Every command but ``delete`` only reads. A run is a folder ``runs/NAME`` holding ``results.db`` with a job called
NAME, or (with ``--db URL``) the job NAME in any results database.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cli import _compare, _delete, _ranking
from search.cli._common import RESULTS_FILE, UsageError, open_run, print_json, search_task
from search.cli._report import (
    HASH_SHOWN, add_run_arguments, clip, fitness_text, indented, job_summary, percent_text, progress_text, table,
    time_text,
)

if TYPE_CHECKING:
    from search.store import JobRecord, Store

FAILURE_REASONS_SHOWN = 5
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")  # not in names
CONFIG_VALUE_SHOWN = 72


def register(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="inspect and manage runs: list, show, top, lineage, plot, compare, delete")
    sub = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")

    listing = sub.add_parser("list", help="every run folder under --root with its status, counts and best fitness")
    listing.add_argument("--root", default="runs", help="folder holding the run folders (default runs)")
    listing.add_argument("--db", metavar="URL", help="list the jobs of this database instead of run folders")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)

    show = sub.add_parser("show", help="status, configuration, counts and the best candidate of a run")
    add_run_arguments(show)
    show.set_defaults(handler=_show)

    _ranking.register(sub)
    _compare.register(sub)
    _delete.register(sub)


# -- list ---------------------------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    rows = _jobs_of_database(args.db) if args.db is not None else _jobs_under(Path(args.root))
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"no runs under {args.root}" if args.db is None else "no jobs in that database")
    else:
        print(_list_table(rows))
    return 0


def _jobs_of_database(url: str) -> list[dict[str, Any]]:
    from search.store import Store

    with Store(url, create=False, read_only=True) as store:
        return [_summary_row(store, job, None) for job in store.list_jobs()]


def _summary_row(store: Store, job: JobRecord, path: str | None) -> dict[str, Any]:
    """The job's summary, or its name with the one-line reason it cannot be read (a damaged row, say)."""
    try:
        return {"path": path, **job_summary(store, job), "error": None}
    except ValueError as error:
        return {"path": path, "name": job.name, "error": " ".join(str(error).split())}


def _jobs_under(root: Path) -> list[dict[str, Any]]:
    if not root.is_dir():
        raise UsageError(f"no folder {str(root)!r} to list runs from; give --root or start a search first")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / RESULTS_FILE).is_file())
    return [_folder_row(folder) for folder in folders]


def _folder_row(folder: Path) -> dict[str, Any]:
    """The summary of the run in ``folder``, or its name with the one-line reason it cannot be read."""
    try:
        store, job = open_run(str(folder), read_only=True)
    except (ValueError, OSError) as error:  # a corrupt, foreign or unreadable database: list it, go on
        return {"path": str(folder), "name": folder.name, "error": " ".join(str(error).split())}
    with store:
        return _summary_row(store, job, str(folder))


def _list_table(rows: list[dict[str, Any]]) -> str:
    good = [r for r in rows if r["error"] is None]
    lines = []
    if good:
        headers = ("NAME", "KIND", "JOB", "STATUS", "PROGRESS", "CANDIDATES", "EVALUATIONS", "FAILED", "CACHE HITS",
                   "BEST×ADAMW", "BEST-ACC", "CREATED")  # one meaning per column: ratios and accuracies apart
        lines.append(table(headers, [
            (r["name"], r["kind"], r["method"], r["status"], progress_text(r["progress"]), r["candidates"],
             r["evaluations"], r["failed"], f"{r['cache_hits']} ({percent_text(r['cache_hit_rate'])})",
             _best_as(r, "adamw_ratio"), _best_as(r, "accuracy"), time_text(r["created"])) for r in good]))
    lines += [f"{r['name']}: unreadable: {r['error']}" for r in rows if r["error"] is not None]
    return "\n".join(lines)


def _best_as(row: dict[str, Any], measure: str) -> str:
    return fitness_text(row["best_fitness"]) if row["best_measure"] == measure else "-"


# -- show ---------------------------------------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    store, job = open_run(args.run, args.db, read_only=True)
    with store:
        summary = job_summary(store, job)
        top = store.top_k(job.id, 1, task=search_task(job))
        failures = failure_reasons([e.error for e in store.list_evaluations(job.id, status="failed")])
        others = [job_summary(store, other) for other in store.list_jobs()
                  if other.name.startswith(job.name + "/")]  # e.g. its validation
        hurdles = _hurdles(store, job)
    best = None
    if top:
        candidate, evaluation = top[0].candidate, top[0].evaluation
        best = {"id": candidate.id, "hash": candidate.hash, "fitness": evaluation.fitness, "program": candidate.text,
                "birth": candidate.birth, "mutation": candidate.mutation, "status": evaluation.status}
    report = {**summary, "config": job.config, "failures": failures, "best": best, "other_jobs": others,
              "hurdles": hurdles}
    if args.json:
        print_json(report)
    else:
        print(_show_text(args.run, report))
    return 0


def _show_text(run: str, report: dict[str, Any]) -> str:
    lines = [
        f"run          {report['name']} ({run})",
        f"job          {report['method']} ({report['kind']}), {progress_text(report['progress'])}",
        f"status       {report['status']}",
        f"seed         {report['seed']}",
        f"created      {time_text(report['created'])}   updated {time_text(report['updated'])}",
        *_config_lines(report["config"]),
        f"candidates   {report['candidates']}",
        f"evaluations  {report['evaluations']} run ({report['ok']} ok, {report['failed']} failed), "
        f"{report['pending']} pending",
        f"cache hits   {report['cache_hits']} ({percent_text(report['cache_hit_rate'])} of lookups)",
    ]
    if report.get("hurdles") is not None:
        lines.append(_hurdles_text(report["hurdles"]))
    reasons = report["failures"][:FAILURE_REASONS_SHOWN]
    lines += [f"{'failures' if i == 0 else '':<12} {r['count']} x {clip(r['reason'], 96)}"
              for i, r in enumerate(reasons)]
    if len(report["failures"]) > FAILURE_REASONS_SHOWN:
        lines.append(f"{'':<12} ... {len(report['failures']) - FAILURE_REASONS_SHOWN} more reasons (--json lists all)")
    lines += [f"{'also' if i == 0 else '':<12} {o['name']}: a {o['method']} job, {o['status']}, "
              f"{progress_text(o['progress'])}" for i, o in enumerate(report["other_jobs"])]
    best = report["best"]
    if best is None:
        lines.append("best         none yet (no successful evaluation)")
    else:
        lines.append(f"best         candidate {best['id']}  hash {best['hash'][:HASH_SHOWN]}  fitness "
                     f"{fitness_text(best['fitness'])}  (birth {best['birth']}, {best['status']})")
        lines += ["", indented(best["program"])]
    return "\n".join(lines)


def _hurdles(store: Any, job: Any) -> dict[str, Any] | None:
    """A cascaded optimizer search's hurdle figures (``--hurdle``): the evaluations that stopped after each task and
    the task trainings that saved; None for other runs."""
    config = job.config if isinstance(job.config, dict) else {}
    options = config.get("kind_options") if isinstance(config.get("kind_options"), dict) else {}
    tasks = config.get("tasks")
    if options.get("hurdle") is None or not isinstance(tasks, list) or len(tasks) < 2:
        return None
    stopped: dict[str, int] = {}
    ran, own = 0, search_task(job)
    for evaluation in store.list_evaluations(job.id, status="ok"):
        hurdle = (evaluation.metrics or {}).get("hurdle") if isinstance(evaluation.metrics, dict) else None
        if not isinstance(hurdle, dict) or evaluation.task != own:
            continue
        ran += 1
        after = hurdle.get("stopped_after")
        if isinstance(after, str) and after in tasks:
            stopped[after] = stopped.get(after, 0) + 1
    skipped = sum(count * (len(tasks) - 1 - tasks.index(task)) for task, count in stopped.items())
    return {"threshold": options["hurdle"], "evaluations": ran, "stopped": stopped, "tasks_skipped": skipped,
            "tasks_total": ran * len(tasks)}


def _hurdles_text(hurdles: dict[str, Any]) -> str:
    stopped = sum(hurdles["stopped"].values())
    where = ", ".join(f"after {task}: {count}" for task, count in hurdles["stopped"].items())
    return (f"hurdles      {stopped} of {hurdles['evaluations']} evaluations stopped early at hurdle "
            f"{hurdles['threshold']:g}{f' ({where})' if where else ''}; {hurdles['tasks_skipped']} of "
            f"{hurdles['tasks_total']} task trainings skipped")


def failure_reasons(errors: list[str | None]) -> list[dict[str, Any]]:
    """Failure messages grouped by their wording with the numbers set aside ("loss diverged at step N"), most
    frequent first: ``[{"reason", "count", "example"}]``. The reason keeps the numbers: one the whole group shares
    as it is, one that varies as its range ("loss diverged at step 3–41: 2.1e+05–7.4e+09 > 100 × first-step loss
    2.30–2.31")."""
    groups: dict[str, list[str]] = {}
    for error in errors:
        text = " ".join((error or "no reason recorded").split())
        groups.setdefault(_NUMBER.sub("N", text), []).append(text)
    ranked = sorted(groups.values(), key=len, reverse=True)  # stable: ties keep the order first seen
    return [{"reason": _with_ranges(texts), "count": len(texts), "example": texts[0]} for texts in ranked]


def _with_ranges(texts: list[str]) -> str:
    """The wording the ``texts`` share, each number as the one value it always has, or its range ``low–high``."""
    pieces = _NUMBER.split(texts[0])
    columns = zip(*(_NUMBER.findall(text) for text in texts))
    shown = []
    for values in columns:
        distinct = set(values)
        if len(distinct) == 1:
            shown.append(values[0])
        else:
            ordered = sorted(distinct, key=float)
            shown.append(f"{ordered[0]}–{ordered[-1]}")
    return "".join(piece + number for piece, number in zip(pieces, [*shown, ""]))


def _config_lines(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return [f"config       {clip(json.dumps(config), CONFIG_VALUE_SHOWN)}"]
    if not config:
        return ["config       (empty)"]
    return [f"{'config' if i == 0 else '':<12} {key}: {clip(json.dumps(value), CONFIG_VALUE_SHOWN)}"
            for i, (key, value) in enumerate(config.items())]
