"""The search job: reproducibility, FEC reuse, failures, exact resume after a kill, and the CLI's bad-input paths."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from programs import library
from search.executor import InlineExecutor
from search.jobs import JobError, open_job, run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import OptimizerKind
from search.store import Store, StoreError

NAN_PROGRAM = """
def train(w, g, m, v, lr):
    a = log(g - g)
    update = a * g
    return update, m, v
"""


def _config(**overrides) -> SearchConfig:
    settings = dict(tasks=("quadratic",), population=6, tournament=2, evaluations=16, seed=3,
                    warm_start=(library.get("adamw").to_text(),))
    settings.update(overrides)
    return SearchConfig(**settings)


def _run(tmp_path: Path, name: str, config: SearchConfig):
    store = Store.for_run(tmp_path / name)
    job = SearchJob.create(store, name, OptimizerKind(fcm=config.fcm), config, executor_factory=lambda **_: InlineExecutor(), show_progress=False)
    return store, job, run_job(job)


def _history(store: Store, job_id: int) -> list[tuple[str, str, float | None]]:
    candidates = {c.id: c for c in store.list_candidates(job_id)}
    return [(candidates[e.candidate_id].text, e.status, e.fitness) for e in store.list_evaluations(job_id)]


def test_same_seed_same_search(tmp_path: Path) -> None:
    store_a, job_a, summary_a = _run(tmp_path, "a", _config())
    store_b, job_b, summary_b = _run(tmp_path, "b", _config())
    assert summary_a.evaluations == summary_b.evaluations == 16
    assert _history(store_a, job_a.record.id) == _history(store_b, job_b.record.id)
    _, job_c, _ = _run(tmp_path, "c", _config(seed=4))
    assert _history(store_a, job_a.record.id) != _history(_store(tmp_path, "c"), job_c.record.id)


def _store(tmp_path: Path, name: str) -> Store:
    return Store.for_run(tmp_path / name, create=False)


def test_fec_hits_reuse_fitness_and_never_evaluate_a_hash_twice(tmp_path: Path) -> None:
    # Without FCM many children equal their parent functionally: the cache must catch them.
    store, job, summary = _run(tmp_path, "fec", _config(fcm=False, evaluations=20))
    evaluations = store.list_evaluations(job.record.id)
    candidates = {c.id: c for c in store.list_candidates(job.record.id)}
    ran = [e for e in evaluations if e.status in ("ok", "failed")]
    cached = [e for e in evaluations if e.status == "cached"]
    assert summary.evaluations == len(ran) == 20
    assert cached, "a search without FCM must produce cache hits"
    hashes_run = collections.Counter(candidates[e.candidate_id].hash for e in ran)
    assert max(hashes_run.values()) == 1, "a functional hash was evaluated twice under the plain policy"
    fitness_by_hash = {candidates[e.candidate_id].hash: e.fitness for e in ran}
    for hit in cached:
        assert hit.fitness == fitness_by_hash[candidates[hit.candidate_id].hash]


def test_cache_off_evaluates_every_candidate(tmp_path: Path) -> None:
    store, job, _ = _run(tmp_path, "nocache", _config(fcm=False, cache="off", evaluations=10))
    assert all(e.status != "cached" for e in store.list_evaluations(job.record.id))


def test_nan_program_is_recorded_as_failed_and_the_job_goes_on(tmp_path: Path) -> None:
    config = _config(warm_start=(NAN_PROGRAM,), evaluations=6)
    store, job, summary = _run(tmp_path, "nan", config)
    first = store.list_evaluations(job.record.id)[0]
    assert first.status == "failed" and first.error
    assert "nan" in first.error.lower() or "inf" in first.error.lower()
    assert summary.evaluations == 6
    assert store.get_job("nan").status == "finished"


def test_bad_configs_are_refused() -> None:
    with pytest.raises(JobError):
        _config(evaluations=-1)
    with pytest.raises(JobError):
        _config(tasks=())
    with pytest.raises(JobError):
        _config(tournament=10, population=5)


class _Killed(BaseException):
    """Stands in for kill -9 in the middle of a transaction (the transaction rolls back)."""


def test_resume_after_a_kill_mid_transaction_finishes_exactly_like_an_uninterrupted_run(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    reference_store, reference, _ = _run(tmp_path, "reference", _config())
    store = Store.for_run(tmp_path / "killed")
    config = _config()
    job = SearchJob.create(store, "killed", OptimizerKind(), config, executor_factory=lambda **_: InlineExecutor(), show_progress=False)
    original = Store.finish_evaluations
    calls = {"n": 0}

    def dying_finish(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise _Killed()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "finish_evaluations", dying_finish)
    with pytest.raises(_Killed):
        run_job(job)
    monkeypatch.setattr(Store, "finish_evaluations", original)
    before = store.counts(job.record.id)
    assert 0 < before.evaluations + before.cache_hits < 16

    record = store.get_job("killed")
    resumed = open_job(store, record, executor_factory=lambda **_: InlineExecutor(), show_progress=False)
    summary = run_job(resumed)
    assert summary.evaluations == 16
    assert store.counts(job.record.id).pending == 0
    assert _history(store, job.record.id) == _history(reference_store, reference.record.id)


def test_kill_9_of_driver_and_workers_then_resume_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "k9"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "search.cli._main", "search", "optimizer", "--run", str(run), "--task",
               "quadratic", "--evaluations", "30", "--population", "8", "--workers", "2", "--quiet"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    recorded = 0
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        if (run / "results.db").exists():
            try:
                with Store.for_run(run, create=False) as store:
                    job = store.get_job("k9")
                    recorded = store.counts(job.id).evaluations if job else 0
            except StoreError:  # caught between the file's creation and its schema: poll again
                continue
            if recorded >= 6:
                break
    assert process.poll() is None, f"the search ended before it could be killed: {process.stderr.read()}"
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers, all at once
    process.wait()
    with Store.for_run(run, create=False) as store:
        job = store.get_job("k9")
        before = {e.key: (e.status, e.fitness) for e in store.list_evaluations(job.id) if e.finished_order}
    assert job.status == "interrupted"  # killed: nobody marked it, but its lease died with the driver

    from search.cli import main

    assert main(["resume", str(run), "--workers", "2", "--quiet"]) == 0  # in this process: one interpreter fewer
    with Store.for_run(run, create=False) as store:
        job = store.get_job("k9")
        counts = store.counts(job.id)
        evaluations = store.list_evaluations(job.id)
        assert job.status == "finished"
        assert counts.evaluations == 30 and counts.pending == 0
        per_candidate = collections.Counter(e.candidate_id for e in evaluations)
        assert max(per_candidate.values()) == 1
        after = {e.key: (e.status, e.fitness) for e in evaluations}
        assert all(after[key] == value for key, value in before.items())
        orders = [e.finished_order for e in evaluations]
        assert len(set(orders)) == len(orders)


@pytest.mark.parametrize("args, message", [
    (["search", "optimizer", "--run", "runs/x", "--task", "no-such-task"], "no-such-task"),
    (["search", "optimizer", "--run", "runs/x", "--evaluations", "-3", "--task", "quadratic"], "evaluations"),
    (["search", "optimizer", "--run", "runs/x", "--warm-start", "missing.py", "--task", "quadratic"], "warm-start"),
    (["search", "optimizer", "--run", "runs/x", "--warm-start", "bad.py", "--task", "quadratic"], "line"),
    (["search", "optimizer", "--run", "runs/x", "--workers", "many", "--task", "quadratic"], "workers"),
    (["search", "optimizer", "--run", "runs/x", "--threads", "0", "--task", "quadratic"], "threads"),
    (["resume", "runs/nothing-here"], "no run folder"),
    (["resume", "corrupt"], "corrupt"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str, capsys,
                                              monkeypatch) -> None:
    from search.cli import main

    (tmp_path / "bad.py").write_text("def train(w, g, m, v, lr):\n    import os\n    return g, m, v\n")
    (tmp_path / "corrupt").mkdir()
    garbage = b"this is not a database" * 100
    (tmp_path / "corrupt" / "results.db").write_bytes(garbage)
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert message in lines[0]
    assert (tmp_path / "corrupt" / "results.db").read_bytes() == garbage
    assert not (tmp_path / "runs" / "x" / "results.db").exists()


def test_cli_refuses_a_second_job_with_the_same_name(tmp_path: Path, monkeypatch, capsys) -> None:
    """Refused where the job is created, before any worker starts (the run holds a finished job of that name)."""
    from search.cli import main

    with Store.for_run(tmp_path / "runs" / "twice") as store:
        job = store.create_job("twice", kind="optimizer", config={"method": "search"}, seed=0)
        store.set_job_status(job.id, "finished")
    monkeypatch.chdir(tmp_path)
    args = ["search", "optimizer", "--run", "runs/twice", "--task", "quadratic", "--evaluations", "2",
            "--population", "2", "--workers", "1", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "choose another --run" in err[0]


class _HangingKind(OptimizerKind):
    worker_fn = "_job_workers:hang_on_sign"


def test_a_stuck_evaluation_times_out_is_recorded_and_the_job_goes_on(tmp_path: Path) -> None:
    from search.executor import LocalExecutor, LocalExecutorConfig

    config = _config(warm_start=(library.get("lion").to_text(), library.get("sgd").to_text()), evaluations=4,
                     population=2)
    executor = LocalExecutorConfig(workers=2, timeout_s=3.0, preload=("torch", "search.kinds.workers", "evaluators"))
    store = Store.for_run(tmp_path / "stuck")
    job = SearchJob.create(store, "stuck", _HangingKind(), config, executor_factory=lambda **_: LocalExecutor(executor), show_progress=False)
    summary = run_job(job)
    assert summary.evaluations == 4
    errors = [e.error for e in store.list_evaluations(job.record.id) if e.status == "failed"]
    assert any(error and error.startswith("timeout after") for error in errors), errors
    assert any(e.status == "ok" for e in store.list_evaluations(job.record.id))


def test_hours_budget_stops_the_job(tmp_path: Path) -> None:
    started = time.monotonic()
    _, _, summary = _run(tmp_path, "hours", _config(evaluations=None, hours=2 / 3600))
    assert summary.status == "finished" and summary.evaluations > 0
    assert time.monotonic() - started < 60


def test_aggregating_cache_re_evaluates_a_hash_on_new_seeds_then_serves_the_mean(tmp_path: Path) -> None:
    store, job, _ = _run(tmp_path, "agg", _config(fcm=False, cache="aggregating", cache_samples=2, evaluations=14))
    candidates = {c.id: c for c in store.list_candidates(job.record.id)}
    seeds_by_hash: dict[str, list[int]] = collections.defaultdict(list)
    for e in store.list_evaluations(job.record.id):
        if e.status in ("ok", "failed"):
            seeds_by_hash[candidates[e.candidate_id].hash].append(e.seed)
    assert any(len(seeds) == 2 for seeds in seeds_by_hash.values()), "no hash was evaluated twice"
    assert all(len(set(seeds)) == len(seeds) for seeds in seeds_by_hash.values()), "re-evaluations reused a seed"
    assert all(len(seeds) <= 2 for seeds in seeds_by_hash.values())


def test_random_search_strategy_runs_end_to_end(tmp_path: Path) -> None:
    store, job, summary = _run(tmp_path, "random", _config(strategy="random", warm_start=(), evaluations=8))
    assert summary.evaluations == 8
    assert all(c.mutation == "random" for c in store.list_candidates(job.record.id))


def test_cache_entries_live_in_their_table_not_in_every_checkpoint(tmp_path: Path) -> None:
    store, job, _ = _run(tmp_path, "light", _config(fcm=False, evaluations=12))
    checkpoint = store.latest_checkpoint(job.record.id).state
    assert checkpoint["cache"]["entries"] == []
    entries = store.load_cache_entries(job.record.id)
    hashes_run = {store.get_candidate(e.candidate_id).hash for e in store.list_evaluations(job.record.id)
                  if e.status in ("ok", "failed")}
    assert set(entries) == hashes_run


def test_resume_with_more_evaluations_extends_a_finished_search(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import search.cli._jobs as cli_jobs
    from search.cli import main

    store, job, summary = _run(tmp_path, "ext", _config(evaluations=8))
    store.close()
    assert summary.evaluations == 8
    monkeypatch.setattr(cli_jobs, "executors", lambda args: (lambda **options: InlineExecutor()))
    run = str(tmp_path / "ext")
    assert main(["resume", run, "--evaluations", "8", "--quiet"]) == 2  # not more than it has
    assert "8 evaluations already" in capsys.readouterr().err
    assert main(["resume", run, "--evaluations", "14", "--quiet"]) == 0
    with Store.for_run(tmp_path / "ext", create=False) as store:
        record = store.get_job("ext")
        assert record.status == "finished" and record.config["evaluations"] == 14
        assert store.counts(record.id, task="quadratic").evaluations == 14 and store.counts(record.id).pending == 0
        per_candidate = collections.Counter(e.candidate_id for e in store.list_evaluations(record.id))
        births = [c.birth for c in store.list_candidates(record.id)]
    assert max(per_candidate.values()) == 1 and births == list(range(len(births)))  # nothing recorded twice
    assert main(["resume", run, "--quiet"]) == 2  # finished again


def test_a_search_runs_with_its_collector_thresholds_and_restores_the_callers(tmp_path: Path) -> None:
    import gc

    from search.jobs._runner import _collector_thresholds

    thresholds = SearchJob.gc_thresholds
    seen: list[tuple[int, ...]] = []

    class Watching(InlineExecutor):
        def submit(self, request):  # type: ignore[no-untyped-def]
            seen.append(gc.get_threshold())
            return super().submit(request)

    previous = gc.get_threshold()
    assert thresholds is not None and previous != thresholds
    store = Store.for_run(tmp_path / "gc")
    job = SearchJob.create(store, "gc", OptimizerKind(), _config(evaluations=4),
                           executor_factory=lambda **_: Watching(), show_progress=False)
    run_job(job)
    assert seen and set(seen) == {thresholds}
    assert gc.get_threshold() == previous

    class Failing(InlineExecutor):
        def submit(self, request):  # type: ignore[no-untyped-def]
            raise RuntimeError("worker pool broke")

    job = SearchJob.create(store, "gc-fails", OptimizerKind(), _config(evaluations=4),
                           executor_factory=lambda **_: Failing(), show_progress=False)
    with pytest.raises(RuntimeError, match="worker pool broke"):
        run_job(job)
    assert gc.get_threshold() == previous
    with _collector_thresholds(None):  # a job that names none (training in the driver's process) keeps the caller's
        assert gc.get_threshold() == previous
