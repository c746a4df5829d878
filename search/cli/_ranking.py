"""``autodisco runs top|lineage|plot``: the best candidates of a run, where one came from, and the search curve."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cli._common import UsageError, open_run, print_json, search_task
from search.cli._report import (
    HASH_SHOWN, MUTATION_SHOWN, add_run_arguments, candidate_results, clip, fitness_text, indented, plural,
    resolve_candidate, table,
)
from search.epochs import is_nas_job, nas_figures

if TYPE_CHECKING:
    from search.store import CandidateRecord, JobRecord, Ranked, Store


def register(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("top", help="the k best candidates, one per functional hash, with their programs")
    add_run_arguments(top)
    top.add_argument("-k", type=int, default=10, help="how many (default 10)")
    top.add_argument("--task", help="rank by this task's evaluations only")
    top.add_argument("--raw", action="store_true", help="print programs as recorded, dead code included (default: "
                                                        "simplified, as export writes them)")
    top.add_argument("--pareto", action=argparse.BooleanOptionalAction, default=None,
                     help="optimizer runs: the Pareto front of fitness and optimizer state buffers instead of the k "
                          "best (default: on for --strategy nsga2 runs)")
    top.set_defaults(handler=_top)

    lineage = sub.add_parser("lineage", help="the ancestors of a candidate back to the warm start")
    add_run_arguments(lineage)
    lineage.add_argument("candidate", metavar="ID", help="candidate id or a unique prefix of its functional hash")
    lineage.add_argument("--programs", action="store_true", help="print each ancestor's program too")
    lineage.set_defaults(handler=_lineage)

    plot = sub.add_parser("plot", help="best-so-far and median fitness, and the cache hit rate, over the search")
    add_run_arguments(plot, json_output=False)
    plot.add_argument("-o", "--output", required=True, metavar="FILE", help="figure file (.png, .pdf, .svg ...)")
    plot.add_argument("--window", type=int, default=50, help="evaluations per rolling median / hit rate (default 50)")
    plot.add_argument("--task", help="plot this task's evaluations only")
    plot.set_defaults(handler=_plot)


# -- top ----------------------------------------------------------------------------------------------------------


def _top(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    store, job = open_run(args.run, args.db, read_only=True)
    pareto = args.pareto if args.pareto is not None else (job.config or {}).get("strategy") == "nsga2"
    if pareto and job.kind != "optimizer":
        raise UsageError(f"--pareto weighs optimizer state buffers; run {job.name!r} searched {job.kind}s")
    with store:
        task = args.task or search_task(job)
        ranked = store.top_k(job.id, store.counts(job.id, task=task).candidates + 1 if pareto else args.k, task=task)
    rows = [ranked_row(rank, entry) for rank, entry in enumerate(ranked, start=1)]
    for row in rows:
        row["simplified"] = simplified_program(row["program"]) if job.kind == "optimizer" else None
    if pareto:
        rows = pareto_front(rows)
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"no successful evaluations in run {job.name!r} yet")
    else:
        if pareto:
            print("Pareto front: no other candidate has a higher fitness with as few optimizer state buffers")
        print(_top_text(rows, raw=args.raw))
    return 0


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows (best fitness first) no other row beats on fitness without carrying more state buffers: walking down
    the ranking, a row joins when it needs fewer buffers than every row above it."""
    front, fewest = [], None
    for row in rows:
        buffers = row["simplified"]["buffers"] if row["simplified"] is not None else None
        if buffers is not None and (fewest is None or buffers < fewest):
            front.append(row)
            fewest = buffers
    for rank, row in enumerate(front, start=1):
        row["rank"] = rank
    return front


def simplified_program(text: str) -> dict[str, Any] | None:
    """The optimizer program ``text`` without its dead statements (``programs.simplify``, as ``export`` writes it):
    ``{"program", "statements", "removed"}`` (``removed``: 0-based indices of the dead statements of ``text``), or
    None when the text does not parse or check (a damaged database: it is then shown as recorded)."""
    from programs import ProgramError, parse, simplify_report  # torch (programs/): only for optimizer runs

    try:
        report = simplify_report(parse(text))
    except (ProgramError, ValueError, RecursionError):
        return None
    return {"program": report.program.to_text(), "statements": report.original_length,
            "removed": list(report.removed), "buffers": report.buffers}


def ranked_row(rank: int, entry: Ranked) -> dict[str, Any]:
    candidate, evaluation = entry.candidate, entry.evaluation
    return {"rank": rank, "id": candidate.id, "hash": candidate.hash, "fitness": evaluation.fitness,
            "status": evaluation.status, "task": evaluation.task, "birth": candidate.birth,
            "parent_ids": list(candidate.parent_ids), "mutation": candidate.mutation,
            "metrics": evaluation.metrics, "program": candidate.text}


def _top_text(rows: list[dict[str, Any]], *, raw: bool) -> str:
    optimizers = any(r["simplified"] is not None for r in rows)  # programs: their state buffers, the memory cost
    headers = ("RANK", "ID", "HASH", "FITNESS") + (("BUFFERS",) if optimizers else ()) + ("STATUS", "BIRTH",
                                                                                           "MUTATION")
    lines = [table(headers, [(r["rank"], r["id"], r["hash"][:HASH_SHOWN], fitness_text(r["fitness"]))
                             + ((r["simplified"]["buffers"] if r["simplified"] is not None else "-",) if optimizers
                                else ())
                             + (r["status"], r["birth"], clip(r["mutation"], MUTATION_SHOWN)) for r in rows])]
    for r in rows:
        heading = f"#{r['rank']}  candidate {r['id']}  fitness {fitness_text(r['fitness'])}"
        simple = r["simplified"]
        if raw or simple is None or not simple["removed"]:
            lines += ["", heading, indented(r["program"])]
            continue
        dead = len(simple["removed"])
        heading += (f"  (simplified: {plural(dead, 'dead statement')} of {simple['statements']} removed; --raw "
                    "shows the program as recorded)")
        lines += ["", heading, indented(simple["program"])]
    return "\n".join(lines)


# -- lineage ------------------------------------------------------------------------------------------------------


def _lineage(args: argparse.Namespace) -> int:
    store, job = open_run(args.run, args.db, read_only=True)
    with store:
        rows = lineage_rows(store, resolve_candidate(store, job, args.candidate))
    if args.json:
        print_json(rows)
    else:
        print(_lineage_text(job.name, rows, programs=args.programs))
    return 0


def lineage_rows(store: Store, target: CandidateRecord) -> list[dict[str, Any]]:
    """``target`` and its ancestors, breadth-first, each with its depth (0: ``target``) and how it fared."""
    ancestors = store.lineage(target.id)
    results = candidate_results(store, [c.id for c in ancestors])
    depth = {target.id: 0}
    for record in ancestors:  # breadth-first: a record's depth is known before its parents are reached
        for parent in record.parent_ids:
            depth.setdefault(parent, depth[record.id] + 1)
    return [{"depth": depth[c.id], "id": c.id, "hash": c.hash, "fitness": results[c.id].fitness,
             "status": results[c.id].status, "birth": c.birth, "parent_ids": list(c.parent_ids),
             "mutation": c.mutation, "program": c.text} for c in ancestors]


def _lineage_text(name: str, rows: list[dict[str, Any]], *, programs: bool) -> str:
    first = rows[0]
    roots = sum(1 for r in rows if not r["parent_ids"])
    lines = [f"lineage of candidate {first['id']} (hash {first['hash'][:HASH_SHOWN]}) in run {name!r}: "
             f"{plural(len(rows) - 1, 'ancestor')}, {roots} without parents (warm start or random)",
             table(("DEPTH", "ID", "HASH", "FITNESS", "STATUS", "BIRTH", "PARENTS", "MUTATION"), [
                 (r["depth"], r["id"], r["hash"][:HASH_SHOWN], fitness_text(r["fitness"]), r["status"], r["birth"],
                  ",".join(map(str, r["parent_ids"])) or "-", clip(r["mutation"], MUTATION_SHOWN)) for r in rows])]
    if programs:
        for r in rows:
            lines += ["", f"candidate {r['id']} (depth {r['depth']})", indented(r["program"])]
    return "\n".join(lines)


# -- plot ---------------------------------------------------------------------------------------------------------


def _plot(args: argparse.Namespace) -> int:
    from search.plot import PlotConfig, check_figure_path, plot_search  # matplotlib: only when plotting

    if args.window < 1:
        raise UsageError(f"--window must be at least 1, got {args.window}")
    output = Path(args.output)
    check_figure_path(output)
    store, job = open_run(args.run, args.db, read_only=True)
    with store:
        if is_nas_job(job):
            return _plot_nas(store, job, output)
        points = store.best_so_far(job.id, task=args.task or search_task(job))
    if not points:
        raise UsageError(f"run {job.name!r} has no finished evaluations yet; nothing to plot")
    plot_search(points, output, PlotConfig(window=args.window, title=f"{job.name} ({job.kind} search)"))
    failed = sum(p.status == "failed" for p in points)
    hits = sum(p.status == "cached" for p in points)
    print(f"wrote {output}: {plural(len(points) - hits, 'evaluation')} run ({failed} failed), "
          f"{plural(hits, 'cache hit')}, best fitness {fitness_text(points[-1].best)}")
    return 0


def _plot_nas(store: Store, job: JobRecord, output: Path) -> int:
    """A NAS job's per-epoch curves and ranking (``search.epochs``), not a search curve: its epochs and table
    architectures are not a search's evaluations."""
    from search.plot import PlotConfig, nas_panels, plot_nas, ranking_text

    figures = nas_figures(store, job)
    panels = nas_panels(figures)
    if not panels:
        raise UsageError(f"run {job.name!r} (a {figures['method']} job) has no epochs, ranking or table recorded "
                         "yet; nothing to plot")
    plot_nas(figures, output, PlotConfig(title=f"{job.name} ({figures['method']} job)"))
    epochs = figures["epochs"]
    parts = [f"a {figures['method']} job", f"panels {', '.join(panels)}"]
    if epochs is not None:
        parts.insert(1, plural(max(len(s["epochs"]) for s in epochs["series"]), "epoch"))
    ranking = ranking_text(figures["ranking"])
    print(f"wrote {output}: {'; '.join(parts)}" + (f"; {ranking}" if ranking else ""))
    return 0
