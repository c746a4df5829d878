"""``resume`` validates a search job's stored config as ``search`` validates its command line (issue 13)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from programs import library
from search.executor import InlineExecutor
from search.jobs import JobError, open_job, run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import OptimizerKind
from search.store import Store

GOOD = dict(tasks=["quadratic"], strategy="evolution", population=6, tournament=2, evaluations=4, seed=3,
            warm_start=[library.get("adamw").to_text()], fcm=True, cache="plain", lr=None, hours=None)


@pytest.mark.parametrize(
    "field, value",
    [
        ("population", "6"), ("population", 6.5), ("population", True), ("tournament", None),
        ("evaluations", 4.0), ("evaluations", "4"), ("seed", -1), ("seed", "3"), ("seed", None),
        ("hours", "1"), ("lr", "0.1"), ("lr", -0.1), ("lr", 0.0), ("fcm", "no"), ("fcm", 1),
        ("strategy", ["evolution"]), ("cache", 3), ("cache_samples", 0), ("cache_forget", 1.5),
        ("cache_forget", "0.1"), ("plateau_restart", 0), ("max_candidates_per_evaluation", 0),
        ("tasks", "quadratic"), ("tasks", [1]), ("warm_start", [None]), ("kind_options", []),
    ],
)
def test_an_edited_stored_config_is_refused_with_one_line(field, value):
    data = dict(GOOD, method="search", **{field: value})
    with pytest.raises(JobError) as caught:
        SearchJob.config_from_dict(data)
    message = str(caught.value)
    assert "\n" not in message and (field in message or field.replace("_", "-") in message), message


def test_the_unedited_stored_config_still_loads():
    config = SearchJob.config_from_dict(dict(GOOD, method="search"))
    assert config == SearchConfig(**{**GOOD, "tasks": ("quadratic",), "warm_start": tuple(GOOD["warm_start"])})


def _edit_config(db: Path, **changes) -> None:
    with sqlite3.connect(db) as conn:
        (text,) = conn.execute("SELECT config FROM jobs").fetchone()
        config = dict(json.loads(text), **changes)
        conn.execute("UPDATE jobs SET config = ?", (json.dumps(config),))


@pytest.mark.parametrize("changes", [{"tasks": ["no-such-task"]}, {"population": "6"}, {"seed": -5}])
def test_resume_of_an_edited_config_refuses_before_running_anything(tmp_path: Path, changes):
    config = SearchConfig(**{**GOOD, "tasks": ("quadratic",), "warm_start": tuple(GOOD["warm_start"])})
    store = Store.for_run(tmp_path / "edited")
    job = SearchJob.create(store, "edited", OptimizerKind(), config,
                           executor_factory=lambda **_: InlineExecutor(), show_progress=False)
    run_job(job)
    before = len(store.list_evaluations(job.record.id))
    store.close()
    _edit_config(tmp_path / "edited" / "results.db", **changes)
    with Store.for_run(tmp_path / "edited", create=False) as store:
        with pytest.raises(ValueError) as caught:  # JobError or TaskError: the CLI's one line and exit 2
            open_job(store, store.get_job("edited"), executor_factory=lambda **_: InlineExecutor(),
                     show_progress=False)
        assert "\n" not in str(caught.value)
        assert len(store.list_evaluations(job.record.id)) == before


def test_a_job_stored_before_the_fitness_options_resumes_with_the_fitness_it_began_with() -> None:
    from search.kinds import OptimizerKind

    old = OptimizerKind.from_job_config({"fcm": True, "kind_options": {}})
    assert (old.aggregate, old.lr_free) == ("mean", True)
    new = OptimizerKind.from_job_config({"fcm": True, "kind_options": OptimizerKind().options()})
    assert (new.aggregate, new.lr_free) == ("geomean", False)


def test_a_one_shot_job_stored_before_ranking_by_loss_keeps_ranking_by_accuracy() -> None:
    from search.jobs._oneshot import OneShotJobConfig

    stored = OneShotJobConfig("mnist1d").to_dict()
    assert OneShotJobConfig.from_dict(stored).inherit.metric == "loss"  # today's default survives a round trip
    del stored["inherit"]["metric"]
    assert OneShotJobConfig.from_dict(stored).inherit.metric == "accuracy"
