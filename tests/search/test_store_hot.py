"""The driver's per-unit writes as plain SQL (``search.store._hot``): parameters rendered for every DBAPI paramstyle,
ids of bulk inserts in row order (many statements' worth of rows too, and without RETURNING), values stored as Core
stores them, the checkpoint rewritten in place keeping exactly the newest few, a unit's rows all or nothing when a
statement fails mid-way, and the statements seen by SQLAlchemy's engine events — on every backend."""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from search.store import Store, StoreError
from search.store._hot import MAX_PARAMETERS, render
from search.store._schema import candidates, evaluations


def _job(store: Store, name: str = "j") -> int:
    return store.create_job(name, kind="optimizer", config={}, seed=0).id


def _rows(births: list[int]) -> list[dict[str, object]]:
    return [{"kind": "optimizer", "text": f"t{b}", "hash": f"h{b % 7}", "parent_ids": [b, b + 1],
             "mutation": "m", "birth": b} for b in births]


def test_parameters_are_rendered_for_every_paramstyle() -> None:
    sql = "SELECT a FROM t WHERE b = :b AND c::text = :c AND d LIKE '5%' AND e = :b"
    values = {"b": 1, "c": "x"}
    qmark = render(sql, "qmark")
    assert qmark.text == "SELECT a FROM t WHERE b = ? AND c::text = ? AND d LIKE '5%' AND e = ?"
    assert qmark.bind(values) == (1, "x", 1)
    assert render(sql, "numeric").text == "SELECT a FROM t WHERE b = :1 AND c::text = :2 AND d LIKE '5%' AND e = :3"
    pyformat = render(sql, "pyformat")
    assert pyformat.text == ("SELECT a FROM t WHERE b = %(b)s AND c::text = %(c)s AND d LIKE '5%%' AND "
                             "e = %(b)s")
    assert pyformat.bind(values) is values
    assert render(sql, "format").text == "SELECT a FROM t WHERE b = %s AND c::text = %s AND d LIKE '5%%' AND e = %s"
    assert render("SELECT :only", "qmark").bind({"only": 7}) == (7,)
    assert render("SELECT 1", "qmark").bind({}) == ()
    with pytest.raises(ValueError, match="paramstyle"):
        render(sql, "dollar")


def test_bulk_inserts_return_ids_in_row_order_across_statements(store: Store) -> None:
    job = _job(store)
    _job(store, "other")
    births = list(range(300))
    random.Random(0).shuffle(births)  # 300 rows of 8 columns: several statements of at most MAX_PARAMETERS values
    assert 300 * 8 > MAX_PARAMETERS
    ids = store.add_candidates(job, _rows(births))
    assert len(set(ids)) == 300
    assert [store.get_candidate(i).birth for i in ids] == births
    assert [store.get_candidate(i).text for i in ids[:5]] == [f"t{b}" for b in births[:5]]
    keys = [f"k{b}" for b in births]
    evaluation_ids = store.add_evaluations(job, [{"candidate_id": c, "key": k, "task": "t", "seed": 0}
                                                 for c, k in zip(ids, keys)])
    by_key = {e.key: e.id for e in store.list_evaluations(job)}
    assert evaluation_ids == [by_key[k] for k in keys]


def test_bulk_inserts_without_returning_keep_the_row_order(store: Store) -> None:
    """SQLite before 3.35 has no INSERT ... RETURNING: an executemany and a select of the ids by key."""
    store._hot.has_returning = False
    job = _job(store)
    births = [5, 3, 9, 0, 1]
    ids = store.add_candidates(job, _rows(births))
    assert [store.get_candidate(i).birth for i in ids] == births
    with pytest.raises(StoreError, match="taken"):
        store.add_candidates(job, _rows([3]))


def test_values_are_stored_as_core_stores_them(store: Store) -> None:
    """A row written by the plain-SQL path reads back exactly like one written through Core (JSON text, UTC times,
    booleans, non-finite floats in metrics, NaN fitness as NULL)."""
    job = _job(store)
    core = store.add_candidate(job, kind="optimizer", text="core", hash="h", parent_ids=[1, 2], mutation="m",
                               birth=0)
    [hot] = store.add_candidates(job, [{"kind": "optimizer", "text": "hot", "hash": "h", "parent_ids": [1, 2],
                                        "mutation": "m", "birth": 1}])
    a, b = store.get_candidate(core), store.get_candidate(hot)
    assert (a.parent_ids, a.mutation, a.kind) == (b.parent_ids, b.mutation, b.kind) == ((1, 2), "m", "optimizer")
    assert b.created.tzinfo == timezone.utc and abs((b.created - datetime.now(timezone.utc)).total_seconds()) < 60
    metrics = {"loss": math.inf, "z": [1, None], "a": {"nested": -math.inf}}
    first = store.add_evaluation(job, core, key="core", task="t", seed=0)
    [second, third] = store.add_evaluations(job, [{"candidate_id": hot, "key": "hot", "task": "t", "seed": 1},
                                                  {"candidate_id": hot, "key": "nan", "task": "t", "seed": 2}])
    store.finish_evaluation(first, status="ok", fitness=0.5, metrics=metrics, worker="w", wall_time=1.5, attempts=2)
    assert store.finish_evaluations(job, [
        {"evaluation_id": second, "status": "ok", "fitness": 0.5, "metrics": metrics, "worker": "w", "wall_time": 1.5,
         "attempts": 2},
        {"evaluation_id": third, "status": "cached", "fitness": math.nan, "metrics": {}, "error": "e"}]) == [True, True]
    records = {e.key: e for e in store.list_evaluations(job)}
    for field in ("status", "fitness", "metrics", "worker", "wall_time", "attempts", "cache_hit", "task"):
        assert getattr(records["core"], field) == getattr(records["hot"], field), field
    assert records["hot"].finished.tzinfo == timezone.utc
    assert (records["nan"].fitness, records["nan"].cache_hit, records["nan"].error) == (None, True, "e")
    assert [records[k].finished_order for k in ("core", "hot", "nan")] == [1, 2, 3]


def test_finishing_another_jobs_evaluation_is_refused(store: Store) -> None:
    job, other = _job(store), _job(store, "other")
    [candidate] = store.add_candidates(other, _rows([0]))
    [evaluation] = store.add_evaluations(other, [{"candidate_id": candidate, "key": "k", "task": "t", "seed": 0}])
    with pytest.raises(StoreError, match=f"no evaluation with id {evaluation} in job {job}"):
        store.finish_evaluations(job, [{"evaluation_id": evaluation, "status": "ok", "fitness": 1.0}])
    assert store.get_evaluation(other, "k").status == "pending"


def _checkpoint_seqs(store: Store, job: int) -> list[int]:
    with store._connection() as conn:
        return list(conn.execute(sa.text("SELECT seq FROM checkpoints WHERE job_id = :j ORDER BY seq"),
                                 {"j": job}).scalars())


def test_checkpoints_rewritten_in_place_keep_exactly_the_newest(store: Store) -> None:
    job, other = _job(store), _job(store, "other")
    store.save_checkpoint(other, {"other": True})
    for step in range(7):
        assert store.save_checkpoint(job, {"step": step, "pad": "x" * (step * 3000)}) == step + 1
        assert _checkpoint_seqs(store, job) == list(range(max(1, step - 1), step + 2))
        assert store.latest_checkpoint(job).state == {"step": step, "pad": "x" * (step * 3000)}
    assert _checkpoint_seqs(store, other) == [1] and store.latest_checkpoint(other).state == {"other": True}


def test_checkpoints_left_by_a_store_that_kept_more_are_dropped(store: Store) -> None:
    """Rows outside the window (written with a larger ``keep_checkpoints``, or a gap) are never rewritten in place:
    the next checkpoint is inserted and everything older than the window goes."""
    job = _job(store)
    store.keep_checkpoints = 5
    for step in range(6):
        store.save_checkpoint(job, {"step": step})
    assert _checkpoint_seqs(store, job) == [2, 3, 4, 5, 6]
    store.keep_checkpoints = 3
    assert store.save_checkpoint(job, {"step": 6}) == 7
    assert _checkpoint_seqs(store, job) == [5, 6, 7]
    assert store.save_checkpoint(job, {"step": 7}) == 8
    assert _checkpoint_seqs(store, job) == [6, 7, 8]


def test_a_unit_that_fails_mid_way_leaves_nothing(store: Store) -> None:
    """All of a unit's writes commit together or not at all, when a statement of the unit itself fails (here: an
    evaluation key that is taken, after the finishes, candidates, cache entries and checkpoint were written)."""
    job = _job(store)
    cands = store.add_candidates(job, _rows([0, 1]))
    pending = store.add_evaluations(job, [{"candidate_id": c, "key": f"c{c}", "task": "t", "seed": 0} for c in cands])
    store.save_checkpoint(job, {"step": 0})
    store.save_cache_entries(job, {"h0": {"fitness": 0.0}})
    with pytest.raises(StoreError, match="taken"):
        with store.transaction():
            store.finish_evaluations(job, [{"evaluation_id": e, "status": "ok", "fitness": 1.0} for e in pending])
            new = store.add_candidates(job, _rows([2, 3]))
            store.save_cache_entries(job, {"h0": {"fitness": 9.0}, "h1": {"fitness": 1.0}})
            store.save_checkpoint(job, {"step": 1})
            store.add_evaluations(job, [{"candidate_id": new[0], "key": "fresh", "task": "t", "seed": 0},
                                        {"candidate_id": new[1], "key": f"c{cands[0]}", "task": "t", "seed": 0}])
    assert [e.status for e in store.list_evaluations(job)] == ["pending", "pending"]
    assert [c.birth for c in store.list_candidates(job)] == [0, 1]
    assert store.load_cache_entries(job) == {"h0": {"fitness": 0.0}}
    assert store.latest_checkpoint(job).state == {"step": 0} and _checkpoint_seqs(store, job) == [1]
    # the store goes on: the same unit, without the taken key, commits whole (orders from 1: nothing was kept)
    with store.transaction():
        store.finish_evaluations(job, [{"evaluation_id": e, "status": "ok", "fitness": 1.0} for e in pending])
        store.save_checkpoint(job, {"step": 1})
    assert [e.finished_order for e in store.list_evaluations(job)] == [1, 2]
    assert store.latest_checkpoint(job).state == {"step": 1}


def test_a_unit_is_a_few_statements_seen_by_engine_events(store: Store) -> None:
    """The plain-SQL statements fire SQLAlchemy's cursor events (what bench_driver and tests count): a unit of 8
    results, 8 new candidates and evaluations, cache entries and the checkpoint is 8 statements besides BEGIN."""
    job = _job(store)
    lease = store.acquire_lease(job)
    cands = store.add_candidates(job, _rows(list(range(8))))
    pending = store.add_evaluations(job, [{"candidate_id": c, "key": f"c{c}", "task": "t", "seed": 0} for c in cands])
    for step in range(3):
        store.save_checkpoint(job, {"step": step})  # a full set: the next one is rewritten in place
    seen: list[tuple[str, bool]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        seen.append((statement.split()[0].upper(), executemany))

    sa.event.listen(store._engine, "before_cursor_execute", record)
    try:
        with store.transaction():
            store.finish_evaluations(job, [{"evaluation_id": e, "status": "ok", "fitness": 1.0, "metrics": {"a": 1}}
                                           for e in pending])
            new = store.add_candidates(job, _rows(list(range(8, 16))))
            store.add_evaluations(job, [{"candidate_id": c, "key": f"c{c}", "task": "t", "seed": 0} for c in new])
            store.save_cache_entries(job, {f"h{i}": {"fitness": i} for i in range(8)})
            store.save_checkpoint(job, {"step": 3})
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", record)
        store.release_lease(lease)
    kinds = [kind for kind, _ in seen if kind != "BEGIN"]
    if store._hot.has_returning:
        # statuses, next order, the finishes (one executemany), two inserts, the cache upsert, fence + slots, rewrite
        assert kinds == ["SELECT", "SELECT", "UPDATE", "INSERT", "INSERT", "INSERT", "SELECT", "UPDATE"], seen
    else:
        assert len(kinds) == 10, seen
    assert ("UPDATE", True) in seen
    assert _checkpoint_seqs(store, job) == [2, 3, 4]


def test_a_driver_that_lost_its_lease_commits_nothing_of_the_unit(store: Store) -> None:
    job = _job(store)
    lease = store.acquire_lease(job)
    [cand] = store.add_candidates(job, _rows([0]))
    with store._connection() as conn:  # another driver took the lease over
        conn.execute(sa.text("UPDATE leases SET owner = 'someone-else' WHERE job_id = :j"), {"j": job})
    with pytest.raises(StoreError, match="took over"):
        with store.transaction():
            store.add_evaluations(job, [{"candidate_id": cand, "key": "k", "task": "t", "seed": 0}])
            store.save_checkpoint(job, {"step": 1})
    assert store.list_evaluations(job) == [] and store.latest_checkpoint(job) is None
    assert candidates.name == "candidates" and evaluations.name == "evaluations"


def test_cache_entries_without_upsert_are_updated_and_inserted(store: Store) -> None:
    """A database without ``INSERT ... ON CONFLICT``: the existing entries are updated and the new ones inserted."""
    store._hot.has_upsert = False
    job = _job(store)
    store.save_cache_entries(job, {"a": {"fitness": 1.0}, "b": {"fitness": 2.0}})
    store.save_cache_entries(job, {"b": {"fitness": -2.0}, "c": {"fitness": 3.0}})
    assert store.load_cache_entries(job) == {"a": {"fitness": 1.0}, "b": {"fitness": -2.0}, "c": {"fitness": 3.0}}


def test_finishing_a_wide_unit_is_one_round_trip(store: Store) -> None:
    """A unit that records hundreds of results (a wide executor) finishes them in one statement batch: on PostgreSQL,
    psycopg2's ``executemany`` would be one round trip per row, so the rows go joined in one ``execute``
    (``execute_batch``). Every row is recorded as it would be alone."""
    job = _job(store)
    cands = store.add_candidates(job, _rows(list(range(300))))
    pending = store.add_evaluations(job, [{"candidate_id": c, "key": f"c{c}", "task": "t", "seed": 0} for c in cands])
    calls: list[str] = []
    postgres = store._engine.dialect.driver == "psycopg2"
    with store.transaction():
        if postgres:
            import psycopg2.extensions

            class Counting(psycopg2.extensions.cursor):  # type: ignore[misc]
                def execute(self, query, vars=None):  # noqa: ANN001, A002
                    calls.append("execute")
                    return super().execute(query, vars)

                def executemany(self, query, vars_list):  # noqa: ANN001
                    calls.append("executemany")
                    return super().executemany(query, vars_list)

            with store._connection() as conn:
                conn.connection.dbapi_connection.cursor_factory = Counting
        recorded = store.finish_evaluations(job, [
            {"evaluation_id": e, "status": "ok", "fitness": i / 7, "metrics": {"i": i}, "worker": f"w{i % 3}"}
            for i, e in enumerate(pending)])
        if postgres:
            with store._connection() as conn:
                conn.connection.dbapi_connection.cursor_factory = psycopg2.extensions.cursor
    assert recorded == [True] * 300
    if postgres:  # the statuses, the next order, then the 300 finishes as one execute
        assert calls == ["execute"] * 3, calls
    records = {e.key: e for e in store.list_evaluations(job)}
    for i, c in enumerate(cands):
        e = records[f"c{c}"]
        assert (e.status, e.fitness, e.metrics, e.worker) == ("ok", i / 7, {"i": i}, f"w{i % 3}")
    assert sorted(e.finished_order for e in records.values()) == list(range(1, 301))
