"""Wall time of the commands a researcher expects to answer at once (target: 0.5 s each), as fresh processes:
``autodisco --help``, a typo'd command, ``runs list`` and ``runs show``, against the bare interpreter's start
(``python -c pass``, the floor) and ``python -c "import torch"`` (what building the parser used to cost), run
side by side: the commands are interleaved, ``--repeats`` rounds, median and min per command. With ``--baseline
CHECKOUT`` (another checkout of autodisco, e.g. ``git worktree add /tmp/base main``) the same commands also run from
that checkout's code in the same rounds, and the table shows this checkout's median over the baseline's.

The listed run is written with the Store API in a temporary folder (1,000 evaluations, and a checkpoint holding the
job's progress as the runner writes it), unless ``--root`` names a folder of real runs; ``runs show`` shows the
first run found there.

    python bench/bench_cli.py                  # 11 rounds
    python bench/bench_cli.py --repeats 21 --root runs
    python bench/bench_cli.py --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5
# As installed: Python caches the compiled modules (an environment that sets PYTHONDONTWRITEBYTECODE would compile
# every module of the checkout again on every command); the warm-up round writes the caches.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def make_run(folder: Path, evaluations: int = 1000) -> None:
    """A finished optimizer search of ``evaluations`` results (a tenth failed, a tenth cache hits)."""
    from programs import library
    from search.jobs._base import PROGRESS_KEY
    from search.store import Store

    texts = [library.get(name).to_text() for name in ("adamw", "lion", "momentum", "sgd", "signsgd", "rmsprop")]
    with Store.for_run(folder) as store:
        job = store.create_job(folder.name, kind="optimizer", config={"method": "search", "tasks": ["mnist1d-mlp"],
                                                                      "evaluations": evaluations}, seed=0)
        with store.transaction():
            previous: list[int] = []
            for i in range(evaluations):
                cid = store.add_candidate(job.id, kind="optimizer", text=texts[i % len(texts)],
                                          hash=f"{i % 997:032x}", parent_ids=previous[-1:], mutation=f"modify {i}",
                                          birth=i)
                ev = store.add_evaluation(job.id, cid, key=f"c{cid}", task="mnist1d-mlp", seed=0)
                if i % 10 == 3:
                    store.finish_evaluation(ev, status="failed", error=f"loss diverged at step {i % 50}")
                else:
                    store.finish_evaluation(ev, status="cached" if i % 10 == 7 else "ok", fitness=(i % 101) / 50)
                previous.append(cid)
            store.save_checkpoint(job.id, {PROGRESS_KEY: {"done": evaluations, "total": evaluations,
                                                          "unit": "eval"}})
        store.set_job_status(job.id, "finished")


def commands(root: Path) -> dict[str, list[str]]:
    """The timed command lines; each runs in a checkout's folder, whose ``search`` package it imports (the current
    folder comes first on ``sys.path`` with ``-c``, as an editable install's console script does)."""
    python = sys.executable
    cli = [python, "-c", "import sys; from search.cli import main; sys.exit(main())"]
    run = next(p for p in sorted(root.iterdir()) if (p / "results.db").is_file())
    return {
        "python -c pass (floor)": [python, "-c", "pass"],
        "python -c 'import torch'": [python, "-c", "import torch"],
        "autodisco --help": [*cli, "--help"],
        "autodisco serch (typo)": [*cli, "serch"],
        "autodisco runs list": [*cli, "runs", "list", "--root", str(root)],
        "autodisco runs show RUN": [*cli, "runs", "show", str(run)],
    }


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``argv``. On a shared machine the CPU time is the
    steadier figure: the wall time also counts the waits for a free core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--root", type=Path, help="a folder of run folders (default: one made-up run)")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT", help="another checkout to time side by side")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    checkouts = {"": here} if args.baseline is None else {"": here, "baseline ": args.baseline.resolve()}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root.resolve() if args.root is not None else Path(tmp) / "runs"
        if args.root is None:
            make_run(root / "bench")
        table = commands(root)
        walls: dict[tuple[str, str], list[float]] = {(c, n): [] for c in checkouts for n in table}
        cpus: dict[tuple[str, str], list[float]] = {(c, n): [] for c in checkouts for n in table}
        for label, cwd in checkouts.items():  # warm-up: the OS file cache, .pyc files
            for argv in table.values():
                timed(argv, cwd)
        load_before = os.getloadavg()[0]
        for _ in range(args.repeats):
            for label, cwd in checkouts.items():
                for name, argv in table.items():
                    elapsed, cpu = timed(argv, cwd)
                    walls[label, name].append(elapsed)
                    cpus[label, name].append(cpu)
    print(f"{args.repeats} rounds, {os.cpu_count()} CPUs, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    floor = statistics.median(walls["", "python -c pass (floor)"])
    vs = "  wall/base  cpu/base" if args.baseline is not None else ""
    print(f"{'command':<26} {'wall med':>8} {'wall min':>8} {'cpu med':>8} {'x floor':>7}{vs}  target {TARGET_S} s wall")
    for label in checkouts:
        for name in table:
            wall, cpu = statistics.median(walls[label, name]), statistics.median(cpus[label, name])
            if label:
                if "autodisco" in name:
                    print(f"{label + name[10:]:<26} {wall:>8.3f} {min(walls[label, name]):>8.3f} {cpu:>8.3f} "
                          f"{wall / floor:>7.2f}")
                continue
            ratio = ""
            if args.baseline is not None:
                ratio = (f"  {wall / statistics.median(walls['baseline ', name]):>9.2f} "
                         f"{cpu / statistics.median(cpus['baseline ', name]):>9.2f}")
            verdict = "" if "autodisco" not in name else ("ok" if wall <= TARGET_S else "SLOW")
            print(f"{name:<26} {wall:>8.3f} {min(walls[label, name]):>8.3f} {cpu:>8.3f} {wall / floor:>7.2f}{ratio}  "
                  f"{verdict}")


if __name__ == "__main__":
    main()
