"""Status lines in the long silences of a job: a search's first seconds (workers starting, the AdamW baseline),
validate's first sweeps, the batches inside long DARTS and training epochs, one-shot ranking. Each job runs small
with the heartbeat's interval set to 0 (a line at every chance), so the lines are checked without timing."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

import search.cli._jobs as cli_jobs
import search.jobs._runner as runner_module
from search.cli import main
from search.executor import InlineExecutor
from search.progress import Progress
from search.store import Store

TINY = ["--dataset", "digits", "--limit", "64", "--epochs", "1", "--layers", "2", "--channels", "2",
        "--batch-size", "16", "--device", "cpu"]
TABLE_ARCHS = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
               "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|skip_connect~2|",
               "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|")


@pytest.fixture(autouse=True)
def every_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's progress with a heartbeat at every chance, and workers in this process."""
    monkeypatch.setattr(runner_module, "Progress", functools.partial(Progress, interval_s=0.0))
    monkeypatch.setattr(cli_jobs, "executors", lambda args: (lambda **options: InlineExecutor()))


def _status_lines(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[str]:
    assert main(argv) == 0
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("[autodisco] ")]


def test_a_search_says_its_workers_start_and_measures_the_baseline_before_its_first_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["search", "optimizer", "--run", str(tmp_path / "hunt"), "--task", "quadratic", "--population", "2",
            "--evaluations", "2"]
    lines = _status_lines(capsys, argv)
    assert lines[0] == "[autodisco] 1 worker starting (each loads torch and the task before its first evaluation)"
    assert lines[1] == "[autodisco] measuring the baseline (AdamW = 1.0) on quadratic"
    assert lines[2].startswith("[autodisco] baseline measured in ") and lines[2].endswith("; searching")
    assert "(quadratic " in lines[2]
    assert lines[3].startswith("[autodisco] evaluations ")  # then the search's own progress


def test_validate_says_what_its_first_sweeps_are_before_they_finish(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from programs import library
    from search.kinds import OptimizerKind

    kind = OptimizerKind()
    with Store.for_run(tmp_path / "hunt") as store:
        job = store.create_job("hunt", kind="optimizer", config={"method": "search", "tasks": ["quadratic"]}, seed=0)
        program = library.get("lion")
        candidate = store.add_candidate(job.id, kind="optimizer", text=program.to_text(),
                                        hash=kind.functional_hash(program), birth=0)
        evaluation = store.add_evaluation(job.id, candidate, key="c", task="quadratic", seed=0)
        store.finish_evaluation(evaluation, status="ok", fitness=1.2, metrics={})
        store.set_job_status(job.id, "finished")
    lines = _status_lines(capsys, ["validate", str(tmp_path / "hunt"), "-k", "1", "--trials", "1", "--stages", "10x"])
    assert lines[0] == ("[autodisco] validating the top 1 of 'hunt' against AdamW, stage 10x first: the workers "
                        "start, then each sweep (1 lr trials) prints a line as it finishes")


def test_darts_and_training_epochs_say_their_batches_and_loss(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "darts"
    lines = _status_lines(capsys, ["nas", "darts", *TINY, "--run", str(run)])
    # 64 examples: 32 for w and 32 for α, batches of 16: two steps
    assert [line.split(" | loss ")[0] for line in lines] == ["[autodisco] epoch 1/1 | batch 1/2",
                                                             "[autodisco] epoch 1/1 | batch 2/2"]
    assert all(float(line.split(" | loss ")[1]) > 0 for line in lines)

    lines = _status_lines(capsys, ["nas", "train", str(run), *TINY, "--run", str(tmp_path / "train")])
    assert [line.split(" | loss ")[0] for line in lines] == [f"[autodisco] epoch 1/1 | batch {b}/4" for b in (1, 2, 3, 4)]

    assert _status_lines(capsys, ["nas", "train", str(run), *TINY, "--run", str(tmp_path / "quiet"), "--quiet"]) == []


def test_one_shot_ranking_counts_the_architectures_it_scored_and_scores_them_as_one_call_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import search.jobs._oneshot as oneshot_job
    from nas.nb201 import NB201Genotype
    from nas.oneshot import InheritConfig
    from nas.oneshot_train import evaluate, load_supernet, supernet_data

    table = tmp_path / "table.json"
    table.write_text(json.dumps({"metadata": {"dataset": "digits"},
                                 "accuracy": {a: 0.1 * i for i, a in enumerate(TABLE_ARCHS)}}))
    monkeypatch.setattr(oneshot_job, "SCORE_CHUNK", 2)
    run = tmp_path / "oneshot"
    lines = _status_lines(capsys, ["nas", "oneshot", "--dataset", "digits", "--limit", "32", "--epochs", "1",
                                   "--C", "2", "--table", str(table), "--run", str(run)])
    assert [line for line in lines if "ranking" in line] == ["[autodisco] ranking: scored 2/3 architectures",
                                                             "[autodisco] ranking: scored 3/3 architectures"]
    saved = load_supernet(run / "supernet.pt")
    genotypes = [NB201Genotype.from_text(a) for a in TABLE_ARCHS]
    with Store.for_run(run, create=False) as store:
        inherit = InheritConfig(**store.get_job("oneshot").config["inherit"])
    at_once = [s.value(inherit.metric) for s in evaluate(saved.supernet, genotypes, supernet_data("digits", 32),
                                                         inherit)]
    with Store.for_run(run, create=False) as store:
        recorded = {store.get_candidate(e.candidate_id).text: e.fitness
                    for e in store.list_evaluations(store.get_job("oneshot").id)}
    assert [recorded[g.to_text()] for g in genotypes] == at_once
