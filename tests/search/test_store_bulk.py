"""The store's bulk writes (what a search driver calls once per unit): ids in row order, cache hits written finished,
``finished_order`` consecutive within and across transactions, and a few statements however many rows, on every
backend."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
import sqlalchemy as sa

from search.store import Store, StoreError


def _job(store: Store, name: str = "j") -> int:
    return store.create_job(name, kind="optimizer", config={}, seed=0).id


def _candidates(store: Store, job: int, births: range) -> list[int]:
    return store.add_candidates(job, [{"kind": "optimizer", "text": f"t{b}", "hash": f"h{b % 3}", "parent_ids": [],
                                       "mutation": None, "birth": b} for b in births])


@contextmanager
def _statements(store: Store) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block (an executemany counts once)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            seen.append(statement)

    sa.event.listen(store._engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", record)


def test_bulk_candidates_get_their_ids_in_row_order(store: Store) -> None:
    job = _job(store)
    _job(store, "other")  # another job's rows share the table
    ids = _candidates(store, job, range(5, -1, -1))  # births out of order: ids still follow the rows
    by_birth = {c.birth: c.id for c in store.list_candidates(job)}
    assert ids == [by_birth[b] for b in range(5, -1, -1)]
    assert [store.get_candidate(i).text for i in ids] == [f"t{b}" for b in range(5, -1, -1)]
    with pytest.raises(StoreError, match="taken"):
        _candidates(store, job, range(5, 7))


def test_cache_hits_are_written_finished_in_order(store: Store) -> None:
    job = _job(store)
    cands = _candidates(store, job, range(4))
    with store.transaction():
        first = store.add_evaluations(job, [{"candidate_id": cands[0], "key": "k0", "task": "t", "seed": 0}])
        assert store.finish_evaluations(job, [{"evaluation_id": first[0], "status": "ok", "fitness": 1.0}]) == [True]
        ids = store.add_evaluations(job, [
            {"candidate_id": cands[1], "key": "k1", "task": "t", "seed": 0, "status": "cached", "fitness": 0.5,
             "metrics": {"a": 1}, "error": None},
            {"candidate_id": cands[2], "key": "k2", "task": "t", "seed": 1},
            {"candidate_id": cands[3], "key": "k3", "task": "t", "seed": 0, "status": "cached", "fitness": None,
             "metrics": {}, "error": "an equivalent candidate failed"}])
    records = {r.key: r for r in store.list_evaluations(job)}
    assert [records[k].id for k in ("k1", "k2", "k3")] == ids
    assert (records["k1"].status, records["k1"].fitness, records["k1"].cache_hit) == ("cached", 0.5, True)
    assert records["k1"].metrics == {"a": 1}
    assert (records["k2"].status, records["k2"].seed) == ("pending", 1)
    assert (records["k3"].status, records["k3"].fitness, records["k3"].error) == (
        "cached", None, "an equivalent candidate failed")
    # the pending one finishes later, after the hits: finished_order follows the order of recording
    assert store.finish_evaluations(job, [{"evaluation_id": ids[1], "status": "ok", "fitness": 2.0}]) == [True]
    curve = store.best_so_far(job)
    assert [point.order for point in curve] == [1, 2, 3, 4]
    with store._connection() as conn:
        orders = dict(conn.execute(sa.text("SELECT key, finished_order FROM evaluations")).all())
    assert orders == {"k0": 1, "k1": 2, "k3": 3, "k2": 4}
    with pytest.raises(StoreError, match="taken"):
        store.add_evaluations(job, [{"candidate_id": cands[0], "key": "k0", "task": "t", "seed": 0}])


def test_a_unit_of_many_rows_takes_a_few_statements(store: Store) -> None:
    job = _job(store)
    _candidates(store, job, range(3))
    with _statements(store) as seen:
        cands = _candidates(store, job, range(3, 43))
    assert len(seen) <= 2, seen  # one insert, at most one select of the ids (SQLite)
    with _statements(store) as seen, store.transaction():
        evaluations = store.add_evaluations(job, [{"candidate_id": c, "key": f"c{c}", "task": "t", "seed": 0}
                                                  for c in cands[:20]])
        store.add_evaluations(job, [{"candidate_id": c, "key": f"c{c}", "task": "t", "seed": 0, "status": "cached",
                                     "fitness": 1.0, "metrics": {}, "error": None} for c in cands[20:]])
        store.finish_evaluations(job, [{"evaluation_id": e, "status": "ok", "fitness": 0.5} for e in evaluations])
    # inserts and id selects (2 + 2), one read of the next finished_order, the finish's read and update
    assert len(seen) <= 7, seen
    store.save_cache_entries(job, {f"h{i}": {"fitness": i} for i in range(10)})
    with _statements(store) as seen:
        store.save_cache_entries(job, {f"h{i}": {"fitness": -i} for i in range(5, 15)})  # 5 updated, 5 new
    assert len(seen) == 1, seen
    assert store.load_cache_entries(job) == {**{f"h{i}": {"fitness": i} for i in range(5)},
                                             **{f"h{i}": {"fitness": -i} for i in range(5, 15)}}
