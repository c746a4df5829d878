"""The job lease on every backend: one driver per job, heartbeat, stale takeover, fencing, status while running."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from search.store import LeaseHeldError, LeaseLostError, Store, StoreError
from search.store._schema import SCHEMA_VERSION, leases, now


@pytest.fixture
def url(shared_url: str) -> str:  # leases are for drivers in separate processes: a database they share
    return shared_url


def _open(url: str, ttl: float = 30.0) -> Store:
    return Store(url, lease_ttl_s=ttl, busy_timeout_s=5.0)


def _job(store: Store) -> int:
    job = store.create_job("j", kind="optimizer", config={}, seed=0).id
    store.save_checkpoint(job, {"step": 0})
    return job


def test_second_driver_is_refused_while_the_first_runs(url: str) -> None:
    first, second = _open(url), _open(url)
    job = _job(first)
    with first.job_running(job):
        assert first.get_job("j").status == "running" and second.get_job("j").status == "running"
        with pytest.raises(LeaseHeldError, match="being run by another driver") as caught:
            second.acquire_lease(job)
        assert "\n" not in str(caught.value)
    assert second.get_job("j").status == "finished"
    with second._connection() as conn:  # released at the end
        assert conn.execute(sa.select(sa.func.count()).select_from(leases)).scalar() == 0
    first.close()
    second.close()


def test_heartbeat_keeps_the_lease_alive_past_its_ttl_and_a_stale_one_is_taken_over(url: str) -> None:
    first, second = _open(url, ttl=0.4), _open(url, ttl=0.4)
    job = _job(first)
    with first.job_running(job):
        time.sleep(1.2)  # three TTLs: only the heartbeat keeps it
        with pytest.raises(LeaseHeldError):
            second.acquire_lease(job)
    first.set_job_status(job, "interrupted")
    lease = first.acquire_lease(job)  # no heartbeat now: stale after the TTL
    with pytest.raises(LeaseHeldError):
        second.acquire_lease(job)
    time.sleep(0.6)
    taken = second.acquire_lease(job)
    assert taken.owner != lease.owner
    first.close()
    second.close()


def test_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(url: str) -> None:
    store = _open(url)
    job = _job(store)
    dead = subprocess.Popen(["true"])
    dead.wait()
    lease = store.acquire_lease(job)
    with store._connection() as conn:  # as if a driver killed with kill -9 had held it a moment ago
        conn.execute(sa.update(leases).values(owner="gone", pid=dead.pid, heartbeat_at=now()))
    assert store.get_job("j").status == "interrupted"
    again = store.acquire_lease(job)
    assert again.owner != lease.owner
    store.close()


def test_a_driver_that_lost_its_lease_commits_nothing_more_and_leaves_the_job_alone(url: str) -> None:
    first, second = _open(url, ttl=0.3), _open(url, ttl=0.3)
    job = _job(first)
    first.renew_lease = lambda lease: True  # type: ignore[method-assign]  # its heartbeat stalls (a frozen host)
    with pytest.raises(LeaseLostError, match="another driver took over"):
        with first.job_running(job):
            time.sleep(0.5)
            second.acquire_lease(job)  # stale: taken over
            second.set_job_status(job, "running")
            with first.transaction():
                first.add_candidate(job, kind="optimizer", text="late", hash="h")
                first.save_checkpoint(job, {"step": 1})  # the fence: rolls the whole unit back
    assert second.list_candidates(job) == [] and second.latest_checkpoint(job).state == {"step": 0}
    assert second.get_job("j").status == "running"  # the new driver's, untouched by the old one
    first.close()
    second.close()


def test_two_drivers_started_at_once_exactly_one_runs(url: str) -> None:
    stores = [_open(url) for _ in range(2)]
    job = _job(stores[0])
    for store in stores:
        store.latest_checkpoint(job)  # both opened the job (as resume does) before either runs
    barrier, ran, refused = threading.Barrier(2), [], []

    def drive(store: Store) -> None:
        barrier.wait()
        try:
            with store.job_running(job):
                ran.append(store)
                with store.transaction():
                    store.save_checkpoint(job, {"step": 1})
                time.sleep(0.3)
        except LeaseHeldError as error:
            refused.append(str(error))

    threads = [threading.Thread(target=drive, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ran) == 1 and len(refused) == 1, (ran, refused)
    assert stores[0].latest_checkpoint(job).seq == 2
    for store in stores:
        store.close()


def test_a_driver_with_an_outdated_state_is_refused(url: str) -> None:
    first, second = _open(url), _open(url)
    job = _job(first)
    second.latest_checkpoint(job)  # second read seq 1 ...
    with first.job_running(job):  # ... then first ran a unit
        first.save_checkpoint(job, {"step": 1})
    first.set_job_status(job, "interrupted")
    with pytest.raises(LeaseHeldError, match="advanced by another driver"):
        second.acquire_lease(job)
    first.close()
    second.close()


def test_failures_and_interrupts_set_the_status_and_release_the_lease(url: str) -> None:
    store = _open(url)
    job = _job(store)
    with pytest.raises(KeyboardInterrupt):
        with store.job_running(job):
            raise KeyboardInterrupt
    assert store.get_job("j").status == "interrupted"
    with pytest.raises(RuntimeError):
        with store.job_running(job):
            raise RuntimeError("boom")
    assert store.get_job("j").status == "failed"
    with store.job_running(job):
        pass
    assert store.get_job("j").status == "finished"
    with store._connection() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(leases)).scalar() == 0
    store.close()


def test_old_schema_is_migrated_when_opened_for_writing_and_read_as_it_is(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "results.db"
    with Store(f"sqlite:///{path}") as store:
        store.create_job("old", kind="optimizer", config={}, seed=0)
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE leases")
    raw.execute("DROP TABLE logbook")  # schema 3
    raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    raw.execute("PRAGMA journal_mode = DELETE")
    raw.commit()
    raw.close()
    before = path.read_bytes()
    with Store(f"sqlite:///{path}", read_only=True) as reader:
        assert reader.get_job("old").status == "running"  # schema 1 has no leases: the status as stored
    assert path.read_bytes() == before
    with Store(f"sqlite:///{path}") as writer:
        assert writer.acquire_lease(writer.get_job("old").id).job_id == 1
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    raw.close()
