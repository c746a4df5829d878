"""Dashboard poll cost: one ``GET /api/run`` (the run page's whole report, every 2 s while a page is open) against
``autodisco runs show --json``'s reads of the same run (the baseline), on made-up runs of growing size.

Each run is written with the Store API (a tenth of the evaluations failed, a tenth cache hits, parents chained) in a
temporary folder; both sides are timed in this process, alternating, best of ``REPEATS`` after one warm-up each.

    python bench/bench_dashboard.py            # runs of 1,000 and 10,000 evaluations
    python bench/bench_dashboard.py 50000      # other sizes
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPEATS = 5


def make_run(folder: Path, evaluations: int) -> None:
    from programs import library
    from search.store import Store

    texts = [library.get(name).to_text() for name in ("adamw", "lion", "momentum", "sgd", "signsgd", "rmsprop")]
    with Store.for_run(folder) as store:
        job = store.create_job(folder.name, kind="optimizer", config={"tasks": ["mnist1d-mlp"]}, seed=0)
        with store.transaction():
            previous: list[int] = []
            for i in range(evaluations):
                cid = store.add_candidate(job.id, kind="optimizer", text=texts[i % len(texts)], hash=f"{i % 997:032x}",
                                          parent_ids=previous[-1:], mutation=f"modify {i}", birth=i)
                ev = store.add_evaluation(job.id, cid, key=f"c{cid}", task="mnist1d-mlp", seed=0)
                if i % 10 == 3:
                    store.finish_evaluation(ev, status="failed", error=f"loss diverged at step {i % 50}")
                else:
                    store.finish_evaluation(ev, status="cached" if i % 10 == 7 else "ok", fitness=(i % 101) / 50)
                previous.append(cid)
        store.set_job_status(job.id, "finished")


def best_of(fn: Callable[[], object]) -> float:
    fn()  # warm-up: imports, caches
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(sizes: list[int]) -> None:
    from search.cli import main as cli
    from search.dashboard import Source, create_app

    print(f"{'evaluations':>11}  {'runs show --json':>16}  {'GET /api/run':>12}  {'ratio':>6}  {'JSON':>8}")
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "bench"
            make_run(folder, size)
            client = create_app(Source(tmp)).test_client()

            def show() -> None:
                import contextlib
                import io

                with contextlib.redirect_stdout(io.StringIO()):
                    assert cli(["runs", "show", str(folder), "--json"]) == 0

            def poll() -> int:
                response = client.get("/api/run?folder=bench")
                assert response.status_code == 200
                return len(response.data)

            baseline, dashboard = best_of(show), best_of(poll)
            print(f"{size:>11}  {baseline * 1000:>13.0f} ms  {dashboard * 1000:>9.0f} ms  {dashboard / baseline:>6.2f}"
                  f"  {poll() / 1024:>5.0f} KiB")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
