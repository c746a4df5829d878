"""The meta-validation funnel on the `quadratic` task: stage order and filtering against a tuned AdamW, Optuna studies
in the run's database, resume without double records, failures recorded, and `autodisco validate` on the CLI.

With one lr trial every sweep samples the same lr (the TPE sampler is seeded alike), so the comparisons are fixed:
on quadratic@10x Lion beats AdamW by far, a sign-less SGD scaled by 1e-4 barely trains, a program whose update is
log|m| = -inf fails; on quadratic@100x AdamW edges out Lion (-0.011437 vs -0.011442).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import optuna
import pytest

from programs import library, parse
from search.cli import main
from search.executor import InlineExecutor
from search.funnel import BASELINE_BIRTH, Funnel, FunnelConfig, FunnelError, FunnelResult, evaluation_key, scaled_tasks
from search.jobs._search import SearchConfig
from search.kinds import OptimizerKind
from search.store import Store

SLOW_SGD = "def train(w, g, m, v, lr):\n    update = g * 0.0001 * lr\n    return update, m, v\n"
NAN_UPDATE = "def train(w, g, m, v, lr):\n    update = log(m) * lr\n    return update, m, v\n"
KIND = OptimizerKind()
FunnelRun = tuple[Path, dict[str, int], FunnelResult]  # run folder, program text → candidate id, result


def _make_run(folder: Path, programs: list[tuple[str, float]],
              tasks: tuple[str, ...] = ("quadratic",)) -> dict[str, int]:
    """A run folder with a finished proxy search: each (program text, proxy fitness) an ok evaluation; name → id."""
    config = SearchConfig(tasks=tasks, warm_start=(library.get("adamw").to_text(),))
    ids = {}
    with Store.for_run(folder) as store:
        job = store.create_job(folder.name, kind="optimizer", config=config.to_json(), seed=0)
        for birth, (text, fitness) in enumerate(programs):
            program = parse(text)
            candidate = store.add_candidate(job.id, kind="optimizer", text=program.to_text(),
                                            hash=KIND.functional_hash(program), birth=birth)
            evaluation = store.add_evaluation(job.id, candidate, key=f"c{candidate}", task="+".join(tasks), seed=0)
            store.finish_evaluation(evaluation, status="ok", fitness=fitness, metrics={})
            ids[text] = candidate
    return ids


def _source(name: str) -> str:
    return library.get(name).to_text()


def _funnel(folder: Path, config: FunnelConfig) -> FunnelResult:
    with Store.for_run(folder, create=False) as store:
        job = store.get_job(folder.name)
        assert job is not None
        return Funnel(store, job, config, InlineExecutor).run()


@pytest.fixture(scope="module")
def funnel_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunnelRun]:
    folder = tmp_path_factory.mktemp("runs") / "hunt"
    ids = _make_run(folder, [(_source("adamw"), 1.0), (_source("lion"), 1.1), (SLOW_SGD, 1.2), (NAN_UPDATE, 1.3),
                             (_source("momentum"), 0.5)])
    yield folder, ids, _funnel(folder, FunnelConfig(k=4, trials=1, stages=("10x", "100x")))


def test_candidates_go_through_the_stages_in_order_and_stop_unless_they_beat_adamw(funnel_run: FunnelRun) -> None:
    _, ids, result = funnel_run
    by_id = {c.candidate_id: c for c in result.candidates}
    assert [c.candidate_id for c in result.candidates] == [ids[NAN_UPDATE], ids[SLOW_SGD], ids[_source("lion")],
                                                          ids[_source("adamw")]]  # top 4 by proxy fitness
    lion = by_id[ids[_source("lion")]]
    assert [s.stage for s in lion.stages] == ["10x", "100x"]
    assert lion.stages[0].passed and lion.stages[0].ratio == 2.0  # > 5x lower loss, clipped to the aggregate's 2x
    [per_task] = lion.stages[0].tasks  # the task's own ratio, unclipped
    assert per_task.task == "quadratic@10x" and per_task.ratio > 5 and per_task.win and lion.stages[0].wins == 1
    assert not lion.stages[1].passed and 0.99 < lion.stages[1].ratio < 1.0
    assert lion.verdict == "stopped"
    slow = by_id[ids[SLOW_SGD]]
    assert [s.stage for s in slow.stages] == ["10x"] and slow.stages[0].ratio <= 0.5 and slow.verdict == "stopped"
    adamw = by_id[ids[_source("adamw")]]  # the baseline itself: a tie is not a win
    assert result.baseline_id == adamw.candidate_id
    assert adamw.stages[0].ratio == 1.0 and not adamw.stages[0].passed and len(adamw.stages) == 1
    assert [s.task for s in result.baseline["100x"]] == ["quadratic@100x"]


def test_a_failing_candidate_is_recorded_as_failed_and_the_funnel_goes_on(funnel_run: FunnelRun) -> None:
    folder, ids, result = funnel_run
    nan = next(c for c in result.candidates if c.candidate_id == ids[NAN_UPDATE])
    assert nan.verdict == "failed" and nan.stages[0].status == "failed" and nan.stages[0].ratio is None
    with Store.for_run(folder, create=False) as store:
        job = store.get_job("hunt")
        record = store.get_evaluation(job.id, evaluation_key(ids[NAN_UPDATE], "quadratic@10x"))
    assert record.status == "failed" and record.fitness is None
    assert "nan loss" in record.error or "inf loss" in record.error
    assert any(c.stages and c.stages[-1].stage == "100x" for c in result.candidates)  # later stages still ran


def test_sweeps_are_recorded_with_their_optuna_studies_in_the_run_database(funnel_run: FunnelRun) -> None:
    folder, ids, result = funnel_run
    url = f"sqlite:///{folder / 'results.db'}"
    studies = {s.study_name: s.n_trials for s in optuna.study.get_all_study_summaries(storage=url)}
    adamw, lion = ids[_source("adamw")], ids[_source("lion")]
    expected = {f"validate:hunt:{c}:quadratic@10x" for c in (adamw, lion, ids[SLOW_SGD], ids[NAN_UPDATE])}
    expected |= {f"validate:hunt:{adamw}:quadratic@100x", f"validate:hunt:{lion}:quadratic@100x"}
    assert studies == {name: 1 for name in expected}
    with Store.for_run(folder, create=False) as store:
        job = store.get_job("hunt")
        record = store.get_evaluation(job.id, evaluation_key(lion, "quadratic@100x"))
        sweep = next(c for c in result.candidates if c.candidate_id == lion).stages[1].sweeps[0]
        assert (record.task, record.status, record.fitness) == ("quadratic@100x", "ok", sweep.fitness)
        assert record.metrics["lr"] == sweep.lr and record.metrics["trials"] == {"COMPLETE": 1}
        assert store.get_evaluation(job.id, evaluation_key(ids[_source("momentum")], "quadratic@10x")) is None


def test_running_it_again_reads_everything_back_and_records_nothing_twice(funnel_run: FunnelRun) -> None:
    folder, _, first = funnel_run
    with Store.for_run(folder, create=False) as store:
        before = store.list_evaluations(store.get_job("hunt").id)
    started: list[int] = []

    def no_executor():  # every sweep is recorded: no worker may be started
        started.append(1)
        return InlineExecutor()

    with Store.for_run(folder, create=False) as store:
        again = Funnel(store, store.get_job("hunt"), FunnelConfig(k=4, trials=1, stages=("10x", "100x")),
                       no_executor).run()
        after = store.list_evaluations(store.get_job("hunt").id)
    assert not started and after == before
    assert [(c.candidate_id, c.verdict, [s.ratio for s in c.stages]) for c in again.candidates] == \
           [(c.candidate_id, c.verdict, [s.ratio for s in c.stages]) for c in first.candidates]
    assert all(s.resumed for c in again.candidates for st in c.stages for s in st.sweeps)


def test_resuming_with_other_settings_is_refused(funnel_run: FunnelRun) -> None:
    folder, _, _ = funnel_run
    with pytest.raises(FunnelError, match="--seed 0 --trials 1"):
        _funnel(folder, FunnelConfig(k=4, trials=2, stages=("10x",)))


def test_a_candidate_that_beats_adamw_on_every_stage_passes_and_adamw_is_added_when_the_run_lacks_it(
        tmp_path: Path) -> None:
    folder = tmp_path / "no-adamw"
    ids = _make_run(folder, [(_source("lion"), 1.5), (SLOW_SGD, 0.9)])
    result = _funnel(folder, FunnelConfig(k=2, trials=1, stages=("10x",)))
    assert [(c.candidate_id, c.verdict) for c in result.candidates] == [(ids[_source("lion")], "passed"),
                                                                         (ids[SLOW_SGD], "stopped")]
    with Store.for_run(folder, create=False) as store:
        baseline = store.get_candidate(result.baseline_id)
        assert baseline.birth == BASELINE_BIRTH and baseline.hash == KIND.functional_hash(library.get("adamw"))
        again = Funnel(store, store.get_job("no-adamw"), FunnelConfig(k=2, trials=1, stages=("10x",)), InlineExecutor)
        assert again.baseline_candidate().id == result.baseline_id
        assert len(store.list_candidates(baseline.job_id)) == 3


def test_runs_that_cannot_be_validated_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    with Store.for_run(empty) as store:
        store.create_job("empty", kind="optimizer", config={"tasks": ["quadratic"]}, seed=0)
    with pytest.raises(FunnelError, match="no successful evaluation on quadratic"):
        _funnel(empty, FunnelConfig(stages=("10x",)))
    with Store("sqlite://") as memory:
        job = memory.create_job("m", kind="optimizer", config={"tasks": ["quadratic"]}, seed=0)
        with pytest.raises(FunnelError, match="in-memory"):
            Funnel(memory, job, FunnelConfig(), InlineExecutor)
        nas = memory.create_job("nas", kind="architecture", config={"tasks": ["x"]}, seed=0)
        with pytest.raises(FunnelError, match="validates optimizers"):
            Funnel(memory, nas, FunnelConfig(), InlineExecutor)


def test_a_cascade_with_a_scaled_task_is_validated_on_each_base_task_once(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert scaled_tasks(("quadratic", "digits-cnn", "digits-cnn@10x"), "100x") == ("quadratic@100x",
                                                                                 "digits-cnn@100x")
    folder = tmp_path / "cascade"  # a search that cascaded to its own 10x task
    _make_run(folder, [(_source("lion"), 1.1)], tasks=("quadratic", "quadratic@10x"))
    result = _funnel(folder, FunnelConfig(k=1, trials=1, stages=("10x",)))
    assert [(s.task, s.status) for s in result.candidates[0].stages[0].sweeps] == [("quadratic@10x", "ok")]
    capsys.readouterr()
    assert main(["validate", str(folder), "-k", "1", "--trials", "1", "--stages", "10x", "--workers", "1",
                 "--quiet"]) == 0  # the job's checks accept it, and the table has one column for the task
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("candidate"))
    assert header.count("quadratic@10x") == 1 and "@10x@10x" not in header


@pytest.mark.parametrize("config", [{"k": 0}, {"trials": 0}, {"stages": ("1000x",)}, {"stages": ()},
                                    {"stages": ("10x", "10x")}])
def test_bad_configurations_are_refused(config: dict) -> None:
    with pytest.raises(FunnelError):
        FunnelConfig(**config)


# -- the command line ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    (["-k", "0"], "-k"), (["--trials", "0"], "--trials"), (["--stages", "10x,1000x"], "unknown stage '1000x'"),
    (["--workers", "none"], "--workers"),
])
def test_validate_rejects_bad_input_with_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               extra: list[str], message: str) -> None:
    _make_run(tmp_path / "r", [(_source("lion"), 1.0)])
    assert main(["validate", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("autodisco: error:")


def test_validate_of_a_missing_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nowhere")]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_validate_runs_on_worker_processes_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "cli"
    ids = _make_run(folder, [(_source("lion"), 1.2), (SLOW_SGD, 1.1), (_source("momentum"), 1.0)])
    argv = ["validate", str(folder), "-k", "2", "--trials", "1", "--stages", "10x", "--workers", "1", "--json",
            "--quiet"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(c["candidate_id"], c["verdict"]) for c in result["candidates"]] == [(ids[_source("lion")], "passed"),
                                                                                (ids[SLOW_SGD], "stopped")]
    assert result["stages"] == ["10x"] and result["baseline"]["10x"][0]["status"] == "ok"
    assert main(["validate", str(folder), "-k", "2", "--trials", "1", "--stages", "10x"]) == 0
    out = capsys.readouterr()
    assert "1 of 2 passed" in out.out and "recorded earlier" in out.err
    assert "quadratic@10x" in out.out and "10x vs AdamW" in out.out  # the per-task ratio beside the aggregate
    assert f"#{ids[_source('lion')]}" in out.out and "passed" in out.out
