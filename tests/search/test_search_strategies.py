"""The search job's strategies beyond plain regularized evolution: NSGA-II over (fitness, state buffers), islands,
several warm starts — end to end through the job, on the quadratic task."""

from __future__ import annotations

from pathlib import Path

import pytest

from programs import library
from search.executor import InlineExecutor
from search.jobs import JobError, open_job, run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import ArchitectureKind, OptimizerKind
from search.store import Store


def _config(**overrides) -> SearchConfig:
    settings = dict(tasks=("quadratic",), population=6, tournament=2, evaluations=14, seed=5,
                    warm_start=(library.get("adamw").to_text(), library.get("sgd").to_text()))
    settings.update(overrides)
    return SearchConfig(**settings)


def _job(tmp_path: Path, name: str, config: SearchConfig) -> tuple[Store, SearchJob]:
    store = Store.for_run(tmp_path / name)
    job = SearchJob.create(store, name, OptimizerKind(fcm=config.fcm), config,
                           executor_factory=lambda **_: InlineExecutor(), show_progress=False)
    return store, job


def test_optimizer_state_buffers_are_the_cost() -> None:
    kind = OptimizerKind()
    assert [kind.cost(library.get(n)) for n in ("adamw", "lion", "momentum", "sgd")] == [2.0, 1.0, 1.0, 0.0]


def test_nsga2_search_tells_fitness_and_cost_and_resumes(tmp_path: Path) -> None:
    config = _config(strategy="nsga2")
    store, job = _job(tmp_path, "pareto", config)
    summary = run_job(job)
    assert summary.evaluations == 14 and summary.best_fitness is not None
    front = job.strategy.hall_of_fame
    assert front and all(isinstance(m.fitness, tuple) and len(m.fitness) == 2 for m in front)
    kind = OptimizerKind()
    for member in front:  # the cost told is the candidate's own
        assert member.fitness[1] == kind.cost(member.candidate)
    # no member of the front is dominated by another
    for a in front:
        assert not any(b.fitness[0] >= a.fitness[0] and b.fitness[1] <= a.fitness[1] and b.fitness != a.fitness
                       for b in front)
    record = store.get_job("pareto")
    resumed = open_job(store, record, executor_factory=lambda **_: InlineExecutor(), show_progress=False)
    assert [m.fitness for m in resumed.strategy.hall_of_fame] == [m.fitness for m in front]


def test_nsga2_needs_a_kind_with_a_cost(tmp_path: Path) -> None:
    store = Store.for_run(tmp_path / "arch")
    kind = ArchitectureKind()
    config = SearchConfig(tasks=("mnist1d",), strategy="nsga2", population=4, evaluations=4,
                          warm_start=(kind.to_text(kind.random_candidate(__import__("numpy").random.default_rng(0))),),
                          kind_options=kind.options())
    with pytest.raises(JobError, match="cost objective"):
        SearchJob.create(store, "arch", kind, config, executor_factory=lambda **_: InlineExecutor(),
                         show_progress=False)
    assert store.get_job("arch") is None  # refused before anything is recorded


def test_islands_and_several_warm_starts_reach_the_strategy(tmp_path: Path) -> None:
    config = _config(islands=2, migration_interval=4)
    store, job = _job(tmp_path, "islands", config)
    summary = run_job(job)
    assert summary.evaluations == 14
    assert len(job.strategy.islands) == 2
    first = [c for c in store.list_candidates(job.record.id) if c.mutation == "initial"]
    assert sorted(c.text for c in first) == sorted(config.warm_start)


@pytest.mark.parametrize("overrides, message", [
    (dict(islands=4), "multiple of islands"),
    (dict(islands=2, strategy="random", warm_start=()), "for --strategy evolution"),
    (dict(strategy="nsga2", warm_start=()), "needs a warm start"),
    (dict(islands=True), "islands must be an integer"),
])
def test_bad_strategy_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(JobError, match=message):
        _config(**overrides)


def test_runs_top_shows_the_pareto_front_of_an_nsga2_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from search.cli._main import main

    store, job = _job(tmp_path, "front", _config(strategy="nsga2", evaluations=10))
    run_job(job)
    store.close()
    assert main(["runs", "top", str(tmp_path / "front"), "--json"]) == 0
    front = __import__("json").loads(capsys.readouterr().out)
    buffers = [row["simplified"]["buffers"] for row in front]
    fitness = [row["fitness"] for row in front]
    assert front and buffers == sorted(buffers, reverse=True) and len(set(buffers)) == len(buffers)
    assert fitness == sorted(fitness, reverse=True)  # each step down the front gives up fitness for memory
    assert main(["runs", "top", str(tmp_path / "front"), "--no-pareto", "-k", "3"]) == 0
    assert "BUFFERS" in capsys.readouterr().out

