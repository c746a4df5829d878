"""``autodisco search optimizer --batch``: batched dispatch is reproducible, never evaluates a cache hit, records one
result per candidate equal to its one-at-a-time evaluation, and resumes after a kill with the batch re-dispatched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from programs import library
from search.jobs._batching import Batcher, auto_batch
from search.executor import EvalOutcome, InlineExecutor
from search.jobs import JobError, open_job, run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import OptimizerKind
from search.store import Store
from search.kinds.workers import evaluate_optimizer


def _config(**overrides) -> SearchConfig:
    settings = dict(tasks=("quadratic",), population=6, tournament=2, evaluations=14, seed=5, batch=4,
                    warm_start=(library.get("adamw").to_text(),))
    settings.update(overrides)
    return SearchConfig(**settings)


def _create(tmp_path: Path, name: str, config: SearchConfig) -> tuple[Store, SearchJob]:
    store = Store.for_run(tmp_path / name)
    job = SearchJob.create(store, name, OptimizerKind(fcm=config.fcm), config,
                           executor_factory=lambda **_: InlineExecutor(), show_progress=False)
    return store, job


def _history(store: Store, job_id: int) -> list[tuple[str, str, float | None]]:
    candidates = {c.id: c for c in store.list_candidates(job_id)}
    return [(candidates[e.candidate_id].text, e.status, e.fitness) for e in store.list_evaluations(job_id)]


def test_batched_search_is_reproducible_and_each_result_is_its_own_evaluation(tmp_path: Path) -> None:
    store_a, job_a = _create(tmp_path, "a", _config(fcm=False))
    summary = run_job(job_a)
    store_b, job_b = _create(tmp_path, "b", _config(fcm=False))
    run_job(job_b)
    assert summary.evaluations == 14
    history = _history(store_a, job_a.record.id)
    assert history == _history(store_b, job_b.record.id)
    evaluations = store_a.list_evaluations(job_a.record.id)
    candidates = {c.id: c for c in store_a.list_candidates(job_a.record.id)}
    ran = [e for e in evaluations if e.status in ("ok", "failed")]
    assert any(e.status == "cached" for e in evaluations), "no FCM: children equal to parents must hit the cache"
    fitness_by_hash = {candidates[e.candidate_id].hash: e.fitness for e in ran}
    for hit in (e for e in evaluations if e.status == "cached"):  # a hit is served from the cache, never evaluated
        assert hit.worker is None and hit.fitness == fitness_by_hash[candidates[hit.candidate_id].hash]
    baselines = job_a.context_values["baselines"]
    for record in ran[:6]:  # each row's result is the one-at-a-time evaluation of that candidate
        alone = evaluate_optimizer({"program": candidates[record.candidate_id].text, "tasks": ["quadratic"],
                                    "seed": record.seed, "baselines": baselines})
        if alone["status"] == "ok":
            np.testing.assert_allclose(record.fitness, alone["fitness"], rtol=1e-3)
        else:
            assert record.status == "failed" and record.error.split(":")[:2] == alone["error"].split(":")[:2]


class _Killed(BaseException):
    """Stands in for kill -9 in the middle of recording a batch's results (the transaction rolls back)."""


def test_resume_after_a_kill_in_a_batch_re_dispatches_it_and_finishes_like_an_uninterrupted_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference_store, reference = _create(tmp_path, "reference", _config())
    run_job(reference)
    store, job = _create(tmp_path, "killed", _config())
    original = Store.finish_evaluations
    calls = {"n": 0}

    def dying_finish(self, job_id, rows):
        if any(row["status"] != "cached" for row in rows):  # a batch's results (recorded together)
            calls["n"] += 1
            if calls["n"] == 2:  # the second batch
                raise _Killed()
        return original(self, job_id, rows)

    monkeypatch.setattr(Store, "finish_evaluations", dying_finish)
    with pytest.raises(_Killed):
        run_job(job)
    monkeypatch.setattr(Store, "finish_evaluations", original)
    assert store.counts(job.record.id).pending >= 3  # the rest of the batch in flight

    resumed = open_job(store, store.get_job("killed"), executor_factory=lambda **_: InlineExecutor(),
                       show_progress=False)
    assert run_job(resumed).evaluations == 14
    assert store.counts(job.record.id).pending == 0
    assert _history(store, job.record.id) == _history(reference_store, reference.record.id)


def test_a_failed_batch_fails_each_of_its_candidates() -> None:
    outcome = EvalOutcome("batch:c1", "failed", None, "timeout after 5s", "w", 10.0, 1)
    split = Batcher.split(outcome, ["f1", "f2"], ["c1", "c2"])
    assert [(o.key, o.status, o.error, o.wall_time) for o in split] == [
        ("c1", "failed", "timeout after 5s", 5.0), ("c2", "failed", "timeout after 5s", 5.0)]
    done = EvalOutcome("batch:c1", "ok", {"results": [{"status": "ok"}, {"status": "failed"}]}, None, "w", 2.0, 1)
    assert [o.result for o in Batcher.split(done, ["f1", "f2"], ["c1", "c2"])] == [{"status": "ok"},
                                                                                    {"status": "failed"}]


def test_bad_batch_settings_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from search.cli import main

    for bad in (0, -2, "many", 1.5):
        with pytest.raises(JobError, match="--batch"):
            _config(batch=bad)
    assert 1 <= auto_batch(["quadratic"], population=6, workers=2) <= 3
    monkeypatch.chdir(tmp_path)
    assert main(["search", "optimizer", "--run", "runs/x", "--task", "quadratic", "--batch", "zero"]) == 2
    stderr = capsys.readouterr().err.strip().splitlines()
    assert len(stderr) == 1 and "--batch" in stderr[0]
    assert not (tmp_path / "runs" / "x" / "results.db").exists()


def test_cli_batch_auto_runs_a_search_with_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["search", "optimizer", "--run", "runs/auto", "--task", "quadratic", "--evaluations", "8",
            "--population", "8", "--workers", "1", "--batch", "auto", "--quiet"]
    assert main(args) == 0
    with Store.for_run(tmp_path / "runs" / "auto", create=False) as store:
        job = store.get_job("auto")
        assert job.status == "finished" and store.counts(job.id).evaluations == 8
        assert {e.worker for e in store.list_evaluations(job.id) if e.status != "cached"} != {None}
