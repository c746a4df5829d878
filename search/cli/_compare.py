"""``autodisco runs compare RUN RUN... [--plot FILE]``: runs side by side, and their best fitness overlaid.

One row per run: method, task(s), evaluations (as ``runs show`` counts them; a NAS job's progress in epochs or
architectures instead), best fitness, the best candidate's ratio to AdamW (optimizer searches), the best accuracy
(architecture jobs), cache hit rate, failures and wall time. ``--plot`` draws best-so-far against evaluations run for
the searches and a table's architectures, and accuracy per epoch for NAS training jobs (``.png``, ``.svg``, ``.pdf``
..., or ``.html``: a self-contained page with the table and the figure, nothing fetched). Only reads.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cli._common import UsageError, open_run, print_json, search_task
from search.cli._report import fitness_text, job_summary, percent_text, progress_text, table
from search.epochs import epoch_curves, is_nas_job

if TYPE_CHECKING:  # the store imports SQLAlchemy: only when a command runs
    from search.store import JobRecord, Store

EPOCH_ACCURACY = ("val_accuracy", "val_acc", "valid_acc", "train_accuracy", "train_acc")  # first present is drawn


def register(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser("compare", help="runs side by side (method, tasks, evaluations, best, AdamW ratio, cache "
                                             "hits, failures, wall time) and an overlay of their best fitness")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders (with --db: job names); two or more")
    compare.add_argument("--db", metavar="URL", help="read the jobs from this database instead of <run>/results.db")
    compare.add_argument("--plot", metavar="FILE", help="also draw best fitness vs evaluations of every run "
                                                        "(.png, .svg, .pdf ..., or .html with the table)")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        raise UsageError("give two or more runs to compare, e.g. autodisco runs compare runs/a runs/b")
    plot = Path(args.plot) if args.plot else None
    if plot is not None:
        _check_plot_path(plot)
    rows, curves = [], []
    for run in args.runs:
        store, job = open_run(run, args.db, read_only=True)
        with store:
            rows.append(compare_row(store, job, run))
            if plot is not None:
                curves.append(compare_curve(store, job, run))
    if args.json:
        print_json(rows)
    else:
        print(compare_table(rows))
    if plot is not None:
        _write_plot(plot, rows, curves)
        print(f"wrote {plot}", file=sys.stderr if args.json else sys.stdout)  # stdout stays JSON
    return 0


def compare_row(store: Store, job: JobRecord, label: str) -> dict[str, Any]:
    """One run's row (JSON-ready); fields that do not apply to the job are None."""
    summary = job_summary(store, job)
    nas = is_nas_job(job)
    best = summary["best_fitness"]
    ratio = adamw_ratio(store, job, best) if job.kind == "optimizer" and summary["method"] == "search" else None
    return {
        "run": label, "name": job.name, "kind": job.kind, "method": summary["method"], "status": job.status,
        "tasks": search_task(job), "evaluations": summary["evaluations"], "progress": summary["progress"],
        "best_fitness": best, "best_adamw_ratio": ratio,
        "best_accuracy": best if job.kind == "architecture" else None,
        "cache_hit_rate": None if nas else summary["cache_hit_rate"], "failed": summary["failed"],
        "wall_time_s": wall_time(store, job),
    }


def adamw_ratio(store: Store, job: JobRecord, best: float | None) -> float | None:
    """The best fitness over AdamW's in the same run (AdamW's candidate found by its functional hash); where the
    run has no scored AdamW, the fitness itself, which the optimizer searches normalise to AdamW = 1.0."""
    from search.funnel import baseline_of  # torch (the hash of AdamW): only for optimizer searches

    if best is None:
        return None
    baseline = baseline_of(store, job)
    if baseline is not None:
        task = search_task(job)
        scores = [e.fitness for e in store.evaluations_of([baseline.id])
                  if e.status in ("ok", "cached") and e.fitness is not None and (task is None or e.task == task)]
        if scores and scores[0] > 0:
            return best / scores[0]
    return best


def wall_time(store: Store, job: JobRecord) -> float | None:
    """The job's own running time as recorded, in seconds: a search's elapsed time over all its sessions (its
    checkpoint), a ground-truth table's training time, else the recorded epochs' (one-shot history, or the
    evaluations' wall times); None if nothing says."""
    checkpoint = store.latest_checkpoint(job.id)
    state = checkpoint.state if checkpoint is not None and isinstance(checkpoint.state, dict) else {}
    for key in ("elapsed_s", "seconds"):
        if _finite(state.get(key)):
            return float(state[key])
    history = state.get("history")
    if isinstance(history, list):
        seconds = [r["seconds"] for r in history if isinstance(r, dict) and _finite(r.get("seconds"))]
        if seconds:
            return float(sum(seconds))
    times = [e.wall_time for e in store.list_evaluations(job.id) if _finite(e.wall_time)]
    return float(sum(times)) if times else None


def compare_curve(store: Store, job: JobRecord, label: str) -> dict[str, Any]:
    """What the overlay draws for one run: ``{"run", "panel", "x", "y"}`` — for a search or a table, best fitness so
    far against evaluations run (cache hits not counted, as ``runs show`` counts them); for a NAS training job, its
    accuracy per epoch."""
    if is_nas_job(job) and job.config.get("method") != "groundtruth":
        curves = epoch_curves(store, job, store.list_evaluations(job.id))
        for series in (curves or {}).get("series", []):
            metric = next((m for m in EPOCH_ACCURACY if m in series["metrics"]), None)
            if metric is not None:
                name = f"{label} {series['name']}".strip()
                return {"run": name, "panel": "epochs", "x": series["epochs"], "y": series["metrics"][metric],
                        "metric": metric}
        return {"run": label, "panel": "epochs", "x": [], "y": [], "metric": None}
    x, y, done = [], [], 0
    for point in store.best_so_far(job.id, task=search_task(job)):
        done += point.status != "cached"
        x.append(done)
        y.append(point.best)
    panel = "adamw" if job.kind == "optimizer" and job.config.get("method", "search") == "search" else (
        "accuracy" if job.kind == "architecture" else "fitness")
    return {"run": label, "panel": panel, "x": x, "y": y, "metric": None}


def compare_table(rows: list[dict[str, Any]]) -> str:
    headers = ("RUN", "METHOD", "TASKS", "EVALUATIONS", "BEST", "×ADAMW", "BEST-ACC", "CACHE HITS", "FAILED",
               "WALL TIME", "STATUS")
    return table(headers, [
        (r["run"], f"{r['method']} ({r['kind']})", r["tasks"] or "-",
         progress_text(r["progress"]) if r["method"] not in ("search", None) else r["evaluations"],
         fitness_text(r["best_fitness"]), _ratio_text(r["best_adamw_ratio"]), fitness_text(r["best_accuracy"]),
         percent_text(r["cache_hit_rate"]), r["failed"], _duration(r["wall_time_s"]), r["status"]) for r in rows])


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}x"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_plot_path(path: Path) -> None:
    from search.plot import check_figure_path

    if path.suffix.lower() == ".html":
        check_figure_path(path.with_suffix(".svg"))  # the same checks of the folder; the page holds an SVG
    else:
        check_figure_path(path)


def _write_plot(path: Path, rows: list[dict[str, Any]], curves: list[dict[str, Any]]) -> None:
    from evaluators.files import write_text
    from search.plot import plot_compare

    if path.suffix.lower() != ".html":
        plot_compare(curves, path)
        return
    svg = plot_compare(curves, None)
    page = ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>autodisco runs compare</title>"
            "<style>body{font-family:sans-serif;margin:2em}pre{font-size:13px}</style></head><body>\n"
            "<h1>autodisco runs compare</h1>\n<pre>" + html.escape(compare_table(rows)) + "</pre>\n"
            + svg + "\n</body></html>\n")
    write_text(path, page)
