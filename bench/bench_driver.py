"""The driver's own CPU cost per recorded result, before (a baseline commit) vs after (this tree), side by side.

    python bench/bench_driver.py [--population 1000] [--marks 1000 10000 100000] [--baseline-rev d8e02ea]
                                 [--baseline-marks 1000] [--baseline REV:N,N ...] [--workers 8] [--db sqlite|URL]

A search job (regularized evolution of optimizer programs, plain FEC cache, FCM on) runs with an executor that
answers every evaluation at once (fitness drawn from the program text), so what is measured is the driver alone:
strategy ask/tell, functional hashes, the store's transactions and the checkpoints. For each mark N it prints the
driver's CPU time (``time.process_time``) per recorded result over the results N - N/10 .. N, for the baseline source
tree (``git archive`` of ``--baseline-rev``, run in its own process) and for this tree, and the ratio. The baseline is
slow (tens of ms per result at P = 1000), so it runs only up to ``--baseline-marks``; marks it does not reach are
shown as "-". ``--baseline REV:N,N`` (repeatable) measures several baseline commits, each up to its own marks, instead.
``--together`` runs every tree at the same time (on a shared machine the load then falls on all alike);
``--repeats R`` measures every tree R times, alternated, and prints the median of each figure with every run's CPU
per result (on a shared 2-core virtual machine one run's figure moves by ±30 %). Beside the
CPU per result each mark reports proposals per result (a cache hit is one more), statements sent to the database
per transaction and results recorded per transaction, over the same window; and, in trees that have the functions
it counts (``programs.mutation.mutate_with_info``, ``programs.probe._run_lanes``), the mutations the driver drew and
the probes it ran per result, with the CPU outside the store per probe.

With ``--workers W`` the driver records about W results per transaction and asks for W candidates at once, so a
mark's window (its last tenth) must span several such units: with ``--workers 256``, marks of 5,000 and more.

``--fitness text`` (the default, as in the earlier figures) draws a result's fitness from the program text. Such a
search degenerates after a few thousand results: programs whose probe updates are NaN (which a real task fails) win
tournaments, the population fills with near-duplicates, and proposals per recorded result climb (seed 0: 1.3 at 1,000
results, 2.7 at 5,000, 4.0 at 8,000, 16 at 10,000), so the figures then measure the search, not the driver.
``--fitness behaviour`` draws it from the program's probe outputs (equal behaviour, equal fitness) and fails the
evaluation of a program whose outputs are not finite, as a real task would; the executor's own CPU time is left out.
With a PostgreSQL ``--db`` URL every measured tree gets a database of its own, created empty on that server and
dropped afterwards (trees of different commits may have different schemas).

``--store`` adds the store's share of the CPU per result, over the same window: the time inside the store methods a
unit calls (outermost calls, driver thread), its BEGIN and COMMIT, and the building of the checkpoint's state (the
runner's ``checkpoint_state``). It times the same public methods in every tree, so baselines compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent


def child(args: argparse.Namespace) -> None:
    """Runs in a subprocess whose ``sys.path`` starts with the source tree under test; prints JSON."""
    from concurrent.futures import Future

    import numpy as np
    import xxhash

    from hashing import fingerprint
    from hashing._fingerprint import DEFAULT_CONFIG
    from programs import library, parse
    from programs.probe import run_program_probe
    from search.executor import EvalOutcome, EvalRequest, Executor
    from search.jobs import run_job
    from search.jobs._search import SearchConfig, SearchJob
    from search.kinds import OptimizerKind
    from search.store import Store

    marks = sorted(args.marks)
    boundaries = sorted({b for n in marks for b in (n - max(n // 10, 1), n)})
    seen: dict[int, float] = {}
    sampled: dict[int, tuple[int, int, int]] = {}  # boundary -> (proposals, statements, transactions) so far
    holder: dict[str, Any] = {"executor_s": 0.0, "store_s": 0.0, "in_executor": False}
    store_seen: dict[int, float] = {}  # boundary -> the store's CPU so far (--store)
    if args.store:
        _time_store(holder)
    work = _count_work(holder)  # mutations drawn and probes run by the driver (not the executor), where they exist
    worked: dict[int, tuple[int, int]] = {}  # boundary -> (mutations, probes) so far
    children_seen: dict[int, float] = {}  # boundary -> the CPU of making children so far (see _time_children)
    _time_children(holder)

    def window(n: int) -> dict[str, float]:
        """The figures over the results n - n/10 .. n: CPU per result, proposals per result, statements per
        transaction and results per transaction."""
        low = n - max(n // 10, 1)
        (p0, s0, t0), (p1, s1, t1) = sampled[low], sampled[n]
        figures = {"per_result_s": (seen[n] - seen[low]) / (n - low), "proposals_per_result": (p1 - p0) / (n - low),
                   "statements_per_transaction": (s1 - s0) / max(t1 - t0, 1),
                   "results_per_transaction": (n - low) / max(t1 - t0, 1)}
        if args.store:
            figures["store_per_result_s"] = (store_seen[n] - store_seen[low]) / (n - low)
        if work:
            (m0, r0), (m1, r1) = worked[low], worked[n]
            figures["mutations_per_result"] = (m1 - m0) / (n - low)
            figures["probes_per_result"] = (r1 - r0) / (n - low)
        if "children_s" in holder:
            figures["children_per_result_s"] = (children_seen[n] - children_seen[low]) / (n - low)
        return figures

    def report(n: int) -> None:
        """With --progress: a line per mark as it is passed (a long run cut short still leaves its figures)."""
        low = n - max(n // 10, 1)
        if args.progress and n in marks and low in seen:
            w = window(n)
            with open(args.progress, "a") as out:
                print(f"{os.environ.get('PYTHONPATH')} {n} {w['per_result_s'] * 1e3:.3f} ms/result, "
                      f"{w['proposals_per_result']:.2f} proposals/result, {w['statements_per_transaction']:.1f} "
                      f"statements/transaction, {w['results_per_transaction']:.1f} results/transaction",
                      file=out, flush=True)

    class _Answer(Future):  # type: ignore[type-arg]
        """A future hashed by its submission number: the driver takes the results that arrived together from a set
        of futures, whose order would otherwise follow their memory addresses and differ from run to run (and so
        would the search). With this every run of a seeded search is the same, and trees that must propose the
        same children do so visibly (equal proposals per result)."""

        def __init__(self, number: int) -> None:
            super().__init__()
            self._number = number

        def __hash__(self) -> int:
            return self._number

    def answer(text: str) -> tuple[str, float | None]:
        """``--fitness text``: fitness in [0, 2) from the program text. ``--fitness behaviour``: from the program's
        probe outputs (equal behaviour, equal fitness, as a real task gives), and a failed evaluation where they are
        not finite (a real task fails such a program, so it never becomes a parent)."""
        if args.fitness == "text":
            return "ok", (xxhash.xxh64_intdigest(text.encode()) % 10_000) / 5_000
        outputs = run_program_probe(parse(text), DEFAULT_CONFIG)
        if not np.isfinite(outputs).all():
            return "failed", None
        return "ok", (xxhash.xxh64_intdigest(fingerprint(outputs).encode()) % 10_000) / 5_000

    class InstantExecutor(Executor):
        """Answers at once (see ``answer``); its own CPU time is not the driver's and is left out of the figures."""

        def __init__(self) -> None:
            self.submitted = 0
            self.answered = 0

        @property
        def num_workers(self) -> int:
            return args.workers

        def submit(self, request: EvalRequest) -> Future[EvalOutcome]:
            if not request.key.startswith("baseline"):
                self.submitted += 1
                if self.submitted - args.workers in boundaries:  # results recorded ~ submitted - in flight
                    n = self.submitted - args.workers
                    seen[n] = time.process_time() - holder["executor_s"]
                    store_seen[n] = holder["store_s"]
                    counters = holder["counters"]
                    sampled[n] = (holder["job"].strategy._next_id, counters["statements"], counters["commits"])
                    worked[n] = (work.get("mutations", 0), work.get("probes", 0))
                    children_seen[n] = holder.get("children_s", 0.0)
                    report(n)
            started = time.process_time()
            text = str(request.payload.get("program", ""))
            holder["in_executor"] = True
            try:
                status, fitness = answer(text)
            finally:
                holder["in_executor"] = False
            self.answered += 1
            future: Future[EvalOutcome] = _Answer(self.answered)
            future.set_result(EvalOutcome(request.key, "ok", {"status": status, "fitness": fitness, "metrics": {},
                                                               "scores": {}, "error": None if fitness is not None
                                                               else "non-finite"}, None, "instant", 0.0, 1))
            holder["executor_s"] += time.process_time() - started
            return future

        def shutdown(self, wait: bool = True) -> None:
            pass

    total = marks[-1] + args.workers
    config = SearchConfig(tasks=("quadratic",), population=args.population, tournament=2, evaluations=total,
                          seed=0, warm_start=(library.get("adamw").to_text(),))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db) if args.db != "sqlite" else Store.for_run(Path(tmp) / "run")
        job = SearchJob.create(store, f"bench-{os.getpid()}", OptimizerKind(), config,
                               executor_factory=lambda **_: InstantExecutor(), show_progress=False)
        holder.update(job=job, counters=_count_statements(store))
        start = time.process_time()
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.runcall(run_job, job)
            profiler.dump_stats(args.profile)
        else:
            run_job(job)
        elapsed = time.process_time() - start
        store.close()
    figures = {n: window(n) for n in marks if n - max(n // 10, 1) in seen and n in seen}
    # a window in which the driver asked for nothing (it fell inside one unit, or inside the warm start's own
    # proposals: see --workers in the docstring) measures no driver work: left out, shown as "-"
    figures = {n: w for n, w in figures.items() if w["proposals_per_result"] > 0}
    import search

    print(json.dumps({"source": str(Path(search.__file__).parent.parent), "marks": figures, "total_cpu_s": elapsed}))


def _outermost_timer(holder: dict[str, Any], key: str, counts: Callable[[], bool]) -> Callable[[Any], Any]:
    """A decorator that adds to ``holder[key]`` the CPU of the outermost calls of what it wraps (a wrapped call
    inside another, on the same thread, is not counted again), for the calls where ``counts()`` is true."""
    import functools

    depth = threading.local()

    def timed(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outer = not getattr(depth, "n", 0) and counts()
            depth.n = getattr(depth, "n", 0) + 1
            started = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                depth.n -= 1
                if outer:
                    holder[key] += time.process_time() - started
        return wrapper

    return timed


def _time_store(holder: dict[str, Any]) -> None:
    """``--store``: add to ``holder["store_s"]`` the CPU of the store's unit writes (see the module's docstring)."""
    from contextlib import contextmanager

    import search.jobs._runner as runner
    from search.store import Store

    driver = threading.main_thread()
    timed = _outermost_timer(holder, "store_s", lambda: threading.current_thread() is driver)
    for name in ("finish_evaluations", "add_candidates", "add_evaluations", "save_cache_entries",
                 "delete_cache_entries", "append_logbook", "save_checkpoint"):
        setattr(Store, name, timed(getattr(Store, name)))
    runner.checkpoint_state = timed(runner.checkpoint_state)
    transaction = Store.transaction

    @contextmanager
    def timed_transaction(self: Any) -> Iterator[None]:  # BEGIN and COMMIT: the block's own time is not counted
        block = transaction(self)
        enter = timed(block.__enter__)
        enter()
        try:
            yield
        except BaseException as error:
            if not block.__exit__(type(error), error, error.__traceback__):
                raise
        else:
            timed(block.__exit__)(None, None, None)

    Store.transaction = timed_transaction  # type: ignore[method-assign]


def _time_children(holder: dict[str, Any]) -> None:
    """Add to ``holder["children_s"]`` the driver's CPU inside the kind's ``mutate`` and ``functional_hash``
    (outermost calls): the making of a child (edits, FCM's hashes, the lr check) and its hash, the part a driver
    could hand to other processes. The executor's calls are not counted."""
    try:
        from search.kinds import OptimizerKind
    except ImportError:  # a tree before the kinds: not counted
        return
    holder["children_s"] = 0.0
    timed = _outermost_timer(holder, "children_s", lambda: not holder["in_executor"])
    for name in ("mutate", "functional_hash"):
        setattr(OptimizerKind, name, timed(getattr(OptimizerKind, name)))


def _count_work(holder: dict[str, Any]) -> dict[str, int]:
    """Mutations the driver draws (``programs.mutation.mutate_with_info``: FCM's and the lr check's redraws
    included) and probes it runs (``programs.probe._run_lanes``: programs new to the memos), counted in the trees
    that have these functions (empty otherwise). The executor's own probes are not counted."""
    import programs.mutation as mutation
    import programs.probe as probe

    counters: dict[str, int] = {}
    for module, name, counter in ((mutation, "mutate_with_info", "mutations"), (probe, "_run_lanes", "probes")):
        function = getattr(module, name, None)
        if function is None:
            continue
        counters[counter] = 0

        def counted(*args: Any, _function: Any = function, _counter: str = counter, **kwargs: Any) -> Any:
            if not holder["in_executor"]:
                counters[_counter] += 1
            return _function(*args, **kwargs)

        setattr(module, name, counted)
    return counters


def _count_statements(store: object) -> dict[str, int]:
    """Statements the driver sent to the database and transactions it committed (SQLAlchemy engine events)."""
    import sqlalchemy as sa

    counters = {"statements": 0, "commits": 0}
    engine = store._engine  # type: ignore[attr-defined]

    driver = threading.main_thread()  # not the lease's heartbeat thread, whose beats follow the wall clock

    @sa.event.listens_for(engine, "before_cursor_execute")
    def statement(*_: object) -> None:
        counters["statements"] += threading.current_thread() is driver

    @sa.event.listens_for(engine, "commit")
    def commit(*_: object) -> None:
        counters["commits"] += threading.current_thread() is driver

    return counters


@contextmanager
def database(url: str, name: str) -> Iterator[str]:
    """``url`` itself for SQLite; for a server URL, a new empty database ``name`` on that server, dropped after."""
    if url == "sqlite" or url.startswith("sqlite"):
        yield url
        return
    import sqlalchemy as sa

    server = sa.engine.make_url(url)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def measure(source: Path, marks: list[int], args: argparse.Namespace, label: str = "tree") -> dict:
    with database(args.db, f"bench_driver_{label}_{os.getpid()}") as db:
        command = [sys.executable, __file__, "--child", "--population", str(args.population), "--workers",
                   str(args.workers), "--db", db, "--fitness", args.fitness, "--marks", *map(str, marks)]
        if args.progress:
            command += ["--progress", args.progress]
        if args.profile:
            command += ["--profile", args.profile]
        if args.store:
            command += ["--store"]
        env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=source)
    if done.returncode != 0:
        raise SystemExit(f"bench child failed in {source}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["source"]).resolve() == source.resolve(), f"measured {result['source']}, not {source}"
    return {int(k): v for k, v in result["marks"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--marks", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--baseline-rev", default="d8e02ea", help="the commit measured as the baseline")
    parser.add_argument("--baseline-marks", type=int, nargs="*", default=[1000],
                        help="marks the baseline runs to (it is slow); none: skip the baseline")
    parser.add_argument("--baseline", action="append", default=[], metavar="REV:N,N",
                        help="a baseline commit and its marks (repeatable); replaces --baseline-rev/-marks")
    parser.add_argument("--workers", type=int, default=8, help="evaluations in flight (the executor's width)")
    parser.add_argument("--db", default="sqlite", help="'sqlite' (a temporary run folder) or a database URL")
    parser.add_argument("--progress", help="append each mark's figure to this file as soon as it is passed")
    parser.add_argument("--fitness", choices=("text", "behaviour"), default="text",
                        help="the instant executor's fitness: from the program text, or from its probe outputs "
                             "(non-finite: failed)")
    parser.add_argument("--together", action="store_true",
                        help="run the baselines and this tree at once (each its own process), not one after another")
    parser.add_argument("--profile", help="with one tree (no baseline): write its cProfile stats to this file")
    parser.add_argument("--store", action="store_true",
                        help="also report the store's share of the CPU per result (see the docstring)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure every tree this many times, alternated, and report the median of each figure "
                             "(and each run's CPU per result): on a shared machine one run moves by tens of percent")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.repeats < 1 or (args.profile and args.repeats > 1):
        parser.error("--repeats must be >= 1, and 1 with --profile")
    baselines = [(rev, sorted(int(n) for n in marks.split(",") if n))
                 for rev, _, marks in (b.partition(":") for b in args.baseline)]
    if not args.baseline and args.baseline_marks:
        baselines = [(args.baseline_rev, sorted(args.baseline_marks))]
    shown_db = args.db if args.db == "sqlite" else args.db.split("://")[0]
    print(f"population {args.population}, {args.workers} in flight, db {shown_db}; cores {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}")
    measured: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, Path, list[int]]] = []
        for rev, marks in baselines:
            tree = Path(tmp) / rev
            tree.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
            runs.append((rev, tree, marks))
        runs.append(("this tree", ROOT, sorted(args.marks)))

        def run(item: tuple[str, Path, list[int]]) -> dict[int, dict[str, float]] | None:
            rev, tree, marks = item
            try:
                return measure(tree, marks, args, label=rev.replace(" ", "_"))
            except SystemExit as error:  # a baseline that cannot run here (e.g. on this database) is left out
                if rev == "this tree":
                    raise
                print(f"baseline {rev} left out: {str(error).splitlines()[-1]}")
                return None

        repeats: list[list[dict[int, dict[str, float]] | None]] = []
        for _ in range(args.repeats):  # every tree once per repeat: what the machine does meanwhile falls on all
            if args.together:  # every tree at once: a shared machine's load falls on all of them alike
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(len(runs)) as pool:
                    repeats.append(list(pool.map(run, runs)))
            else:
                repeats.append([run(item) for item in runs])
        every_run: dict[str, dict[int, list[float]]] = {}
        for position, (rev, _, _) in enumerate(runs):
            results = [r[position] for r in repeats]
            if all(result is not None for result in results):
                measured[rev] = _medians(results)  # type: ignore[arg-type]
                every_run[rev] = {n: [r[n]["per_result_s"] for r in results]  # type: ignore[index]
                                  for n in measured[rev]}
        after = measured["this tree"]
    heads = "".join(f" {rev + ' ms':>16}" for rev in measured)
    ratios = "".join(f" {'vs ' + rev:>12}" for rev in measured if rev != "this tree")
    print(f"{'evaluations':>12}{heads}{ratios}")
    for n in sorted(set().union(*measured.values())):
        now = after.get(n)
        cells = "".join(f" {measured[rev][n]['per_result_s'] * 1e3:16.3f}" if n in measured[rev] else f" {'-':>16}"
                        for rev in measured)
        speedups = "".join(f" {measured[rev][n]['per_result_s'] / now['per_result_s']:11.1f}x"
                           if n in measured[rev] and now else f" {'-':>12}" for rev in measured if rev != "this tree")
        print(f"{n:>12}{cells}{speedups}")
    print("per tree and mark: proposals per result, statements per transaction, results per transaction"
          + (", store ms per result" if args.store else "")
          + "; mutations drawn and probes run per result, and the CPU outside the store per probe run, ms (where counted)"
          + "; ms per result outside the making and hashing of children"
          + (f"; ms per result of each of the {args.repeats} runs (the table shows medians)" if args.repeats > 1
             else ""))
    for rev, figures in measured.items():
        for n, w in sorted(figures.items()):
            store = f" {w['store_per_result_s'] * 1e3:8.3f}" if "store_per_result_s" in w else ""
            each = ("  " + " ".join(f"{x * 1e3:.3f}" for x in every_run[rev][n])) if args.repeats > 1 else ""
            work = f" {'-':>6} {'-':>6} {'-':>7}"  # a tree without the counted functions
            if w.get("probes_per_result"):
                outside = w["per_result_s"] - w.get("store_per_result_s", 0.0)
                work = (f" {w['mutations_per_result']:6.2f} {w['probes_per_result']:6.2f} "
                        f"{outside / w['probes_per_result'] * 1e3:7.3f}")
            rest = (f" {(w['per_result_s'] - w['children_per_result_s']) * 1e3:7.3f}"
                    if "children_per_result_s" in w else f" {'-':>7}")
            print(f"{rev:>16} {n:>8}: {w['proposals_per_result']:6.2f} {w['statements_per_transaction']:7.1f} "
                  f"{w['results_per_transaction']:7.1f}{store}{work}{rest}{each}")


def _medians(results: list[dict[int, dict[str, float]]]) -> dict[int, dict[str, float]]:
    """Each figure's median over the runs of one tree, at the marks every run reached."""
    marks = set.intersection(*(set(r) for r in results))
    return {n: {key: statistics.median(r[n][key] for r in results) for key in results[0][n]} for n in sorted(marks)}

if __name__ == "__main__":
    main()
