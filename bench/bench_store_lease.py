"""The cost of the job lease per unit of work: a driver's transaction (candidate + evaluation + result + checkpoint)
while holding the lease (fenced by it, heartbeat running) against the same transaction without a lease (the
baseline), interleaved in one run, on SQLite and — given its URL — PostgreSQL.

    python bench/bench_store_lease.py                                  # SQLite file
    python bench/bench_store_lease.py postgresql://user@host/db        # and PostgreSQL (uses its own schema)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

UNITS, ROUNDS = 300, 5


def _unit(store, job: int, i: int) -> None:
    with store.transaction():
        candidate = store.add_candidate(job, kind="optimizer", text=f"program {i}", hash=f"h{i}")
        evaluation = store.add_evaluation(job, candidate, key=f"{candidate}/t", task="t", seed=0)
        store.finish_evaluation(evaluation, status="ok", fitness=float(i), metrics={"loss": 1.0})
        store.save_checkpoint(job, {"step": i, "population": list(range(100))})


def _timed(store, job: int, start: int, leased: bool) -> float:
    began = time.perf_counter()
    if leased:
        with store.job_running(job):
            for i in range(start, start + UNITS):
                _unit(store, job, i)
        store.set_job_status(job, "interrupted")
    else:
        for i in range(start, start + UNITS):
            _unit(store, job, i)
    return (time.perf_counter() - began) / UNITS * 1e3


def measure(url: str, label: str) -> None:
    from search.store import Store

    store = Store(url)
    plain = store.create_job("plain", kind="optimizer", config={}, seed=0).id
    leased = store.create_job("leased", kind="optimizer", config={}, seed=0).id
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(ROUNDS):  # interleaved, so that machine load hits both alike
        times[False].append(_timed(store, plain, r * UNITS, False))
        times[True].append(_timed(store, leased, r * UNITS, True))
    store.close()
    base, with_lease = statistics.median(times[False]), statistics.median(times[True])
    print(f"{label:<10} per unit: no lease {base:.3f} ms, with lease {with_lease:.3f} ms, "
          f"ratio {with_lease / base:.2f}")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        measure(f"sqlite:///{Path(folder) / 'results.db'}", "sqlite")
    if len(sys.argv) > 1:
        import sqlalchemy as sa

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        engine = sa.create_engine(sys.argv[1])
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        try:
            separator = "&" if "?" in sys.argv[1] else "?"
            measure(f"{sys.argv[1]}{separator}options=-csearch_path%3D{schema}", "postgresql")
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            engine.dispose()


if __name__ == "__main__":
    main()
