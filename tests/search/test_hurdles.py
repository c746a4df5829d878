"""Cascade evaluation (``--hurdle``): the tasks are stages, a candidate below the hurdle after a stage is not trained
on the next ones, is scored on the tasks it ran, and says so — alone, in a batch, in a search and in ``runs show``."""

from __future__ import annotations

from pathlib import Path

import pytest

from programs import library
from search.executor import InlineExecutor
from search.jobs import run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import OptimizerKind
from search.kinds.workers import evaluate_optimizer, evaluate_optimizer_batch
from search.store import Store

TASKS = ["quadratic", "quadratic@10x"]
# Adagrad on the ill-conditioned regression: ~0.4x AdamW after the first stage
ADAGRAD = library.SOURCES["adagrad"]


@pytest.fixture(scope="module")
def baselines() -> dict[str, float]:
    return {task: evaluate_optimizer({"program": library.SOURCES["adamw"], "tasks": [task], "seed": 0})["fitness"]
            for task in TASKS}


def _payload(program: str, baselines: dict[str, float], hurdle: float | None) -> dict[str, object]:
    return {"program": program, "tasks": TASKS, "seed": 0, "baselines": baselines, "hurdle": hurdle}


def test_a_candidate_below_the_hurdle_stops_after_the_first_stage(baselines: dict[str, float]) -> None:
    full = evaluate_optimizer(_payload(ADAGRAD, baselines, None))
    first_ratio = full["metrics"]["quadratic"]["ratio"]
    assert first_ratio < 0.9 and "hurdle" not in full  # the premise, and no record without a hurdle
    stopped = evaluate_optimizer(_payload(ADAGRAD, baselines, 0.9))
    assert stopped["status"] == "ok" and list(stopped["metrics"]) == ["quadratic"]  # never trained on the 10x task
    assert stopped["fitness"] == pytest.approx(max(first_ratio, 0.25))  # scored on the stage it ran
    assert stopped["hurdle"] == {"threshold": 0.9, "stages": [pytest.approx(stopped["fitness"])],
                                 "stopped_after": "quadratic"}
    adamw = evaluate_optimizer(_payload(library.SOURCES["adamw"], baselines, 0.9))
    assert list(adamw["metrics"]) == TASKS and adamw["fitness"] == pytest.approx(1.0)  # cleared: every task
    assert adamw["hurdle"]["stopped_after"] is None and adamw["hurdle"]["stages"] == [pytest.approx(1.0)]
    lenient = evaluate_optimizer(_payload(ADAGRAD, baselines, first_ratio / 2))  # a low hurdle changes nothing
    assert lenient["fitness"] == pytest.approx(full["fitness"]) and list(lenient["metrics"]) == TASKS


def test_a_batch_stops_the_same_rows_as_one_at_a_time(baselines: dict[str, float]) -> None:
    programs = [library.SOURCES["adamw"], ADAGRAD, library.SOURCES["lion"]]
    payloads = [_payload(p, baselines, 0.9) for p in programs]
    alone = [evaluate_optimizer(p) for p in payloads]
    batched = evaluate_optimizer_batch({"requests": payloads})["results"]
    for one, row in zip(alone, batched):
        assert row["status"] == one["status"] == "ok"
        assert list(row["metrics"]) == list(one["metrics"])
        assert row["hurdle"]["stopped_after"] == one["hurdle"]["stopped_after"]
        assert row["fitness"] == pytest.approx(one["fitness"], rel=1e-3)
    assert alone[1]["hurdle"]["stopped_after"] == "quadratic"


def test_without_baselines_or_with_one_task_every_task_is_trained() -> None:
    # the baseline's own measurement has no baselines yet: nothing to compare with, so no cascade
    result = evaluate_optimizer({"program": ADAGRAD, "tasks": TASKS, "seed": 0, "hurdle": 5.0})
    assert list(result["metrics"]) == TASKS and "hurdle" not in result


def test_the_hurdle_is_a_kind_option_stored_with_the_job() -> None:
    kind = OptimizerKind(hurdle=0.9)
    config = SearchConfig(tasks=tuple(TASKS), warm_start=("x",), kind_options=kind.options())
    assert OptimizerKind.from_job_config(config.to_json()) == kind
    assert OptimizerKind.from_job_config({"kind_options": {"aggregate": "geomean"}}).hurdle is None  # older jobs
    assert kind.payload(library.get("sgd"), seed=0, context={"tasks": TASKS})["hurdle"] == 0.9
    for bad in (0, -1.0, float("inf"), True, "0.9"):
        with pytest.raises(ValueError, match="hurdle"):
            OptimizerKind(hurdle=bad)  # type: ignore[arg-type]


def test_a_cascaded_search_records_how_far_each_candidate_went(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from search.cli import main

    kind = OptimizerKind(hurdle=0.9)
    config = SearchConfig(tasks=tuple(TASKS), population=4, tournament=2, evaluations=8, seed=0, cache="off",
                          warm_start=(library.get("adamw").to_text(), library.get("adagrad").to_text()),
                          kind_options=kind.options())
    run = tmp_path / "cascade"
    with Store.for_run(run) as store:
        job = SearchJob.create(store, "cascade", kind, config, executor_factory=lambda **_: InlineExecutor(),
                               show_progress=False)
        run_job(job)
        evaluations = [e for e in store.list_evaluations(job.record.id) if e.status == "ok"]
    stopped = [e for e in evaluations if e.metrics["hurdle"]["stopped_after"] is not None]
    passed = [e for e in evaluations if e.metrics["hurdle"]["stopped_after"] is None]
    assert stopped and passed  # Adagrad's line stops at the first stage, AdamW's goes on
    assert all(list(e.metrics["tasks"]) == ["quadratic"] and e.fitness < 0.9 for e in stopped)
    assert all(list(e.metrics["tasks"]) == TASKS for e in passed)
    assert main(["runs", "show", str(run)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("hurdles"))
    assert f"{len(stopped)} of {len(evaluations)} evaluations stopped early at hurdle 0.9 " \
           f"(after quadratic: {len(stopped)}); {len(stopped)} of {2 * len(evaluations)} task trainings skipped" in line


def test_the_cli_refuses_a_hurdle_without_a_cascade(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from search.cli import main

    monkeypatch.chdir(tmp_path)
    base = ["search", "optimizer", "--run", "runs/x", "--quiet", "--task", "quadratic"]
    for extra, message in ((["--hurdle", "0.9"], "give two or more --task"),
                           (["--task", "quadratic@10x", "--hurdle", "-1"], "positive ratio")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs" / "x" / "results.db").exists()


def test_the_cli_options_reach_the_kind() -> None:
    from search.cli._main import build_parser
    from search.cli._search import _optimizer_kind

    args = build_parser().parse_args(["search", "optimizer", "--run", "runs/x", "--task", "quadratic", "--task",
                                      "quadratic@10x", "--hurdle", "0.8", "--aggregate", "mean"])
    kind = _optimizer_kind(args, [library.get("adamw").to_text()])
    assert (kind.hurdle, kind.aggregate) == (0.8, "mean")
    default = build_parser().parse_args(["search", "optimizer", "--run", "runs/x"])
    assert (_optimizer_kind(default, [library.get("adamw").to_text()]).hurdle, default.aggregate) == (None, "geomean")
