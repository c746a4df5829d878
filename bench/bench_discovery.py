"""Discovery that generalizes, measured: the README's discovery recipe vs the search as it was, side by side.

    python bench/bench_discovery.py [--evaluations 1000] [--workers 2] [--top 20] [--trials 6] [--seeds 3]
                                    [--arms before,after,cascade] [--out runs/bench-discovery] [--seed 0]

Each arm is a proxy search on ``mnist1d-mlp`` + ``digits-cnn`` with the same seed and evaluation budget, then the same
``autodisco validate`` of its top ``--top`` candidates (one per functional hash): an Optuna lr sweep of each entrant and
of AdamW at 10x (both tasks), and for those that beat a tuned AdamW there, on the four tasks the search never saw
(``markov-gru``, ``digits-autoencoder``, ``modadd-transformer``, ``quadratic``) at ``--seeds`` seeds.

- ``before``: the search as issue 11 found it — one warm start (AdamW), the plain mean of per-task ratios (a failure
  counting 0), programs whose update ignores lr allowed, one training per task at the base lr.
- ``after``: the README's recipe on its two small tasks — warm starts AdamW and Lion, the clipped geometric mean, lr-free programs rejected,
  every task scored at its best lr of ``0.25, 1, 4`` x base, and a hurdle (``--hurdle 0.9``: digits-cnn is trained
  only for candidates at >= 0.9x AdamW on mnist1d-mlp).
- ``cascade``: the README's recipe: ``after`` with ``digits-cnn@10x`` as a third, last stage of the cascade.

The arms run through the CLI, as a user would (the commands are printed). Printed side by side: the search's wall time
and best proxy fitness, the hurdle's savings, Kendall tau between proxy fitness and the 10x ratio over the top
candidates, how many passed 10x, and for every candidate that reached the unseen tasks its ratio to a tuned AdamW on
each (mean over seeds, 95 % interval) and its wins. The JSON of both validations and of the figures is written to
``OUT/discovery.json``. Runs already in ``OUT`` are reused (``resume`` finishes a stopped one), so the bench can be
interrupted and started again; an arm measured to the end is kept in ``OUT/ARM.json`` and reported from there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TASKS = ("mnist1d-mlp", "digits-cnn")
ARMS: dict[str, list[str]] = {
    "before": ["--warm-start", "adamw", "--aggregate", "mean", "--allow-lr-free"],
    "after": ["--warm-start", "adamw", "--warm-start", "lion", "--lr-grid", "0.25,1,4", "--hurdle", "0.9"],
}
# the recipe with the 10x task as the cascade's last stage (trained only for candidates past both hurdles)
ARMS["cascade"] = [*ARMS["after"], "--task", "digits-cnn@10x"]


def cli(*args: str, capture: bool = False) -> str:
    command = [sys.executable, "-m", "search.cli._main", *args]
    print("$ autodisco " + " ".join(args), flush=True)
    result = subprocess.run(command, check=False, text=True, stdout=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        raise SystemExit(f"autodisco {' '.join(args)} exited with {result.returncode}")
    return result.stdout or ""


def run_arm(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    run = Path(args.out) / arm
    saved = Path(args.out) / f"{arm}.json"
    if saved.exists():  # measured by an earlier invocation: its figures and timings as they were
        return json.loads(saved.read_text())
    common = ["--workers", str(args.workers), "--quiet"]
    started = time.perf_counter()
    if (run / "results.db").exists():
        show = json.loads(cli("runs", "show", str(run), "--json", capture=True))
        if show["status"] != "finished":
            cli("resume", str(run), *common)
    else:
        tasks = [x for task in TASKS for x in ("--task", task)]
        cli("search", "optimizer", "--run", str(run), *tasks, *ARMS[arm], "--evaluations", str(args.evaluations),
            "--seed", str(args.seed), *common)
    search_s = time.perf_counter() - started
    show = json.loads(cli("runs", "show", str(run), "--json", capture=True))
    started = time.perf_counter()
    validation = json.loads(cli("validate", str(run), "-k", str(args.top), "--stages", "10x,unseen", "--trials",
                                str(args.trials), "--seeds", str(args.seeds), "--json", *common, capture=True))
    validate_s = time.perf_counter() - started
    result = {"arm": arm, "search_s": search_s, "validate_s": validate_s, "show": show, "validation": validation,
              "figures": figures(show, validation)}
    saved.write_text(json.dumps(result, indent=2, default=str))
    return result


def figures(show: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    from nas.ranking import kendall_tau

    entrants = validation["candidates"]
    ten = [(c["proxy_fitness"], c["stages"][0]["ratio"]) for c in entrants if c["stages"] and
           c["stages"][0]["stage"] == "10x" and c["stages"][0]["ratio"] is not None]
    unseen = []
    for c in entrants:
        stage = next((s for s in c["stages"] if s["stage"] == "unseen"), None)
        if stage is not None:
            unseen.append({"id": c["candidate_id"], "proxy": c["proxy_fitness"], "ratio_10x": c["stages"][0]["ratio"],
                           "wins": stage["wins"], "of": len(stage["tasks"]), "verdict": c["verdict"],
                           "tasks": {t["task"]: [t["ratio"], t["low"], t["high"]] for t in stage["tasks"]}})
    return {
        "evaluations": show["evaluations"], "best_proxy": (show.get("best") or {}).get("fitness"),
        "hurdles": show.get("hurdles"),
        "tau_proxy_vs_10x": kendall_tau([p for p, _ in ten], [r for _, r in ten]) if len(ten) >= 2 else None,
        "entrants": len(entrants),
        "passed_10x": sum(1 for c in entrants if c["stages"] and c["stages"][0]["passed"]),
        "unseen": unseen,
        "best_unseen_wins": max((u["wins"] for u in unseen), default=0),
        "unseen_tasks": validation.get("unseen", []),
    }


def report(results: list[dict[str, Any]]) -> None:
    print("\n# discovery, side by side (" + ", ".join(r["arm"] for r in results) + ")")
    rows = [
        ("search wall time (s)", lambda r: f"{r['search_s']:.0f}"),
        ("validation wall time (s)", lambda r: f"{r['validate_s']:.0f}"),
        ("evaluations", lambda r: str(r["figures"]["evaluations"])),
        ("best proxy fitness", lambda r: _num(r["figures"]["best_proxy"])),
        ("hurdle: evaluations stopped / task trainings skipped", lambda r: _hurdles(r["figures"]["hurdles"])),
        ("Kendall tau, proxy vs 10x ratio (top entrants)", lambda r: _num(r["figures"]["tau_proxy_vs_10x"])),
        ("entrants passing 10x (> tuned AdamW)", lambda r: f"{r['figures']['passed_10x']} of "
                                                           f"{r['figures']['entrants']}"),
        ("most unseen tasks won by one candidate", lambda r: f"{r['figures']['best_unseen_wins']} of "
                                                             f"{len(r['figures']['unseen_tasks'])}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'':<{width}}  " + "  ".join(f"{r['arm']:>14}" for r in results))
    for name, value in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{value(r):>14}" for r in results))
    for r in results:
        print(f"\n## {r['arm']}: candidates on the unseen tasks (ratio to a tuned AdamW, mean over seeds [95 %])")
        for u in r["figures"]["unseen"]:
            tasks = ", ".join(f"{t} {_num(v[0])} [{_num(v[1])}, {_num(v[2])}]" for t, v in u["tasks"].items())
            print(f"#{u['id']} proxy {u['proxy']:.3f}, 10x {_num(u['ratio_10x'])}: wins {u['wins']} of {u['of']} "
                  f"({u['verdict']}): {tasks}")
        if not r["figures"]["unseen"]:
            print("(no candidate beat a tuned AdamW at 10x)")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _hurdles(hurdles: dict[str, Any] | None) -> str:
    if not hurdles:
        return "-"
    return f"{sum(hurdles['stopped'].values())} / {hurdles['tasks_skipped']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", default="before,after,cascade")
    parser.add_argument("--out", default="runs/bench-discovery")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm {unknown[0]!r}; arms are {', '.join(ARMS)}")
    os.makedirs(args.out, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    results = [run_arm(arm, args) for arm in arms]
    Path(args.out, "discovery.json").write_text(json.dumps(results, indent=2, default=str))
    report(results)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
