"""Fitness that survives tuning: the lr grid in the optimizer workers, the kind's options, and the search's default
rejection of programs whose update does not scale with lr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluators import evaluate
from programs import library, lr_scaling, parse
from search.executor import InlineExecutor
from search.jobs import run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import OptimizerKind
from search.kinds.workers import evaluate_optimizer, evaluate_optimizer_batch
from search.store import Store

GRID = [0.25, 1.0, 4.0]
# converges at the base lr of quadratic (3e-2) and diverges at 4x of it
FRAGILE = "def train(w, g, m, v, lr):\n    update = g * lr\n    u = update * 30.0\n    update = u * 1.0\n    return update, m, v\n"


def test_the_grid_scores_each_task_at_its_best_lr_in_one_and_in_a_batch() -> None:
    programs = [library.SOURCES["adamw"], library.SOURCES["sgd"], FRAGILE]
    payloads = [{"program": p, "tasks": ["quadratic"], "seed": 0, "lr_grid": GRID} for p in programs]
    alone = [evaluate_optimizer(p) for p in payloads]
    batched = evaluate_optimizer_batch({"requests": payloads})["results"]
    for one, row, program in zip(alone, batched, programs):
        assert one["status"] == row["status"] == "ok"
        metrics = one["metrics"]["quadratic"]
        base = 3e-2
        assert sorted(float(lr) for lr in metrics["lr_grid"]) == pytest.approx([base * m for m in GRID])
        finite = {float(lr): f for lr, f in metrics["lr_grid"].items() if f is not None}
        best = max(finite, key=finite.get)
        assert metrics["lr"] == pytest.approx(best) and one["fitness"] == pytest.approx(finite[best])
        single = evaluate({"program": program, "task": "quadratic", "seed": 0, "lr": best})
        assert single["metrics"]["fitness"] == pytest.approx(one["fitness"])  # the best lr's own evaluation
        np.testing.assert_allclose(row["fitness"], one["fitness"], rtol=1e-3)
        assert row["metrics"]["quadratic"]["lr"] == pytest.approx(metrics["lr"])
    fragile = alone[2]["metrics"]["quadratic"]["lr_grid"]
    assert fragile[repr(4 * 3e-2)] is None  # diverged at the top of the grid, still scored at its best


def test_without_a_grid_the_payload_trains_once_at_the_base_lr() -> None:
    result = evaluate_optimizer({"program": library.SOURCES["sgd"], "tasks": ["quadratic"], "seed": 0})
    assert "lr_grid" not in result["metrics"]["quadratic"] and result["metrics"]["quadratic"]["lr"] == 3e-2


def test_a_task_fails_only_when_every_lr_of_the_grid_fails() -> None:
    nan = "def train(w, g, m, v, lr):\n    z = g * 0.0\n    r = z / z\n    update = log(r) * lr\n    return update, m, v\n"
    result = evaluate_optimizer({"program": nan, "tasks": ["quadratic"], "seed": 0, "lr_grid": GRID})
    assert result["status"] == "failed" and "every lr of the grid" in result["error"]
    bad = evaluate_optimizer({"program": nan, "tasks": ["quadratic"], "seed": 0, "lr_grid": [0.0]})
    assert bad["status"] == "failed" and "lr grid" in bad["error"]


def test_ratios_are_recorded_per_task_and_aggregated_by_the_payloads_rule() -> None:
    baselines = {"quadratic": -1e-3}
    payload = {"program": library.SOURCES["sgd"], "tasks": ["quadratic"], "seed": 0, "baselines": baselines}
    geo, mean = evaluate_optimizer(payload), evaluate_optimizer({**payload, "aggregate": "mean"})
    ratio = geo["metrics"]["quadratic"]["ratio"]
    assert ratio == pytest.approx(1e-3 / -geo["scores"]["quadratic"])
    assert mean["fitness"] == pytest.approx(ratio) and geo["fitness"] == pytest.approx(min(max(ratio, 0.25), 2.0))


def test_kind_options_round_trip_through_the_job_config() -> None:
    kind = OptimizerKind(fcm=False, lr_free=True, lr_grid=(4, 0.25, 1), aggregate="mean")
    config = SearchConfig(tasks=("quadratic",), warm_start=("x",), fcm=False, kind_options=kind.options())
    assert OptimizerKind.from_job_config(config.to_json()) == kind and kind.lr_grid == (0.25, 1.0, 4.0)
    # a config without kind options was stored before them: it keeps the fitness it began with
    assert OptimizerKind.from_job_config(SearchConfig(tasks=("quadratic",), warm_start=("x",)).to_json()) == \
        OptimizerKind(lr_free=True, aggregate="mean")
    for bad in ({"lr_grid": ()}, {"aggregate": "median"}):
        with pytest.raises(ValueError):
            OptimizerKind(**bad)
    payload = kind.payload(library.get("sgd"), seed=1, context={"tasks": ["quadratic"], "lr": None})
    assert payload["lr_grid"] == [0.25, 1.0, 4.0] and payload["aggregate"] == "mean"


def test_the_search_never_evaluates_an_lr_free_child_and_tunes_adamw_the_same_way(tmp_path: Path) -> None:
    kind = OptimizerKind(fcm=False, lr_grid=(0.25, 1.0, 4.0))
    config = SearchConfig(tasks=("quadratic",), population=4, tournament=2, evaluations=10, seed=3, cache="off",
                          warm_start=(library.get("adamw").to_text(),), fcm=False, kind_options=kind.options())
    with Store.for_run(tmp_path / "grid") as store:
        job = SearchJob.create(store, "grid", kind, config, executor_factory=lambda **_: InlineExecutor(),
                               show_progress=False)
        run_job(job)
        adamw = evaluate_optimizer({"program": library.SOURCES["adamw"], "tasks": ["quadratic"], "seed": 3,
                                    "lr_grid": [0.25, 1.0, 4.0]})
        assert job.context_values["baselines"] == {"quadratic": pytest.approx(adamw["fitness"])}
        candidates = {c.id: c for c in store.list_candidates(job.record.id)}
        evaluations = store.list_evaluations(job.record.id)
        assert len(evaluations) == 10
        for record in evaluations:
            assert lr_scaling(parse(candidates[record.candidate_id].text)).ok
            if record.status == "ok":
                task = record.metrics["tasks"]["quadratic"]
                assert len(task["lr_grid"]) == 3 and task["lr"] in [3e-2 * m for m in (0.25, 1.0, 4.0)]
                assert "ratio" in task


def test_the_cli_refuses_a_bad_grid_and_an_lr_free_warm_start(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from search.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "free.py").write_text("def train(w, g, m, v, lr):\n    update = g * 0.01\n    return update, m, v\n")
    base = ["search", "optimizer", "--run", "runs/x", "--task", "quadratic", "--quiet"]
    for extra, message in ((["--lr-grid", "0.25,x"], "--lr-grid 0.25,x"), (["--lr-grid", "0,1"], "lr grid"),
                           (["--warm-start", "free.py"], "ignores lr; pass --allow-lr-free")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs" / "x" / "results.db").exists()


def test_the_kind_re_mutates_a_child_that_does_not_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    import programs.mutation

    free = parse("def train(w, g, m, v, lr):\n    update = g * 0.01\n    return update, m, v\n")
    original, drawn = programs.mutation.mutate_with_info, []

    def every_other_child_ignores_lr(program, rng, config=None):
        child, mutation = original(program, rng, config)
        drawn.append(child if len(drawn) % 2 else free)
        return drawn[-1], mutation

    monkeypatch.setattr(programs.mutation, "mutate_with_info", every_other_child_ignores_lr)
    rng = np.random.default_rng(0)
    children = [OptimizerKind(fcm=False).mutate(library.get("adamw"), rng)[0] for _ in range(5)]
    assert free not in children and len(drawn) >= 10  # each lr-free draw was rejected and drawn again
    allowed = [OptimizerKind(fcm=False, lr_free=True).mutate(library.get("adamw"), rng)[0] for _ in range(4)]
    assert free in allowed
    assert all(lr_scaling(OptimizerKind().random_candidate(np.random.default_rng(s))) for s in range(10))
