from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from nas import NasError, NB201Genotype
from nas.groundtruth import (
    SPECIAL, GroundTruthTable, TrainBudget, default_table_path, load_table, sample_architectures,
    write_table,
)
from nas.ranking import kendall_tau, rank_correlation, rank_correlation_of, summarize
from search.kinds.workers import train_nb201
from search.store import Store
from search.cli import main
from search.executor import InlineExecutor

TINY_BUDGET = {"C": 2, "epochs": 1, "batch_size": 32}
ARCHS = [g.to_text() for g in SPECIAL[:3]]


def test_kendall_tau_and_spearman_on_known_rankings() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    r = rank_correlation({"a": 0.1, "b": 0.5, "c": 0.3, "x": 9.0}, {"a": 1.0, "b": 3.0, "c": 2.0, "y": 0.0})
    assert r.n == 3 and r.kendall_tau == pytest.approx(1.0) and r.spearman == pytest.approx(1.0)
    assert rank_correlation_of([1, 2, 3], [3, 1, 2]).spearman == pytest.approx(-0.5)
    with pytest.raises(NasError, match="at least 2"):
        kendall_tau([1], [1])


def test_top_pick_rank_and_the_spread_over_seeds() -> None:
    truth = {"a": 0.9, "b": 0.7, "c": 0.7, "d": 0.5, "e": 0.1}
    r = rank_correlation({"a": 0.2, "b": 0.1, "c": 0.8, "d": 0.8, "e": 0.3}, truth)
    assert (r.top_pick, r.top_pick_rank) == ("c", 2)  # the first of the tied best scores; b and c share rank 2
    assert r.top_pick_percentile == pytest.approx(2 / 5)
    assert r.line().endswith("top pick ranks 2 of 5 (top 40.0 %)") and r.to_dict()["top_pick_rank"] == 2
    assert rank_correlation({"a": -1.0, "e": -5.0, "d": -2.0}, truth).top_pick_rank == 1
    assert rank_correlation_of([3, 1, 2], [1, 2, 3]).top_pick == None  # noqa: E711 (no names)
    spread = summarize([rank_correlation_of(p, [1, 2, 3, 4]) for p in ([1, 2, 3, 4], [4, 3, 2, 1], [1, 3, 2, 4])])
    assert spread.seeds == 3 and spread.n == 4
    assert spread.kendall_tau.mean == pytest.approx((1 - 1 + 4 / 6) / 3)
    assert spread.kendall_tau.low == pytest.approx(-1) and spread.kendall_tau.high == pytest.approx(1)
    assert spread.top_pick_rank is not None and (spread.top_pick_rank.low, spread.top_pick_rank.high) == (1, 4)
    assert spread.kendall_tau.std == pytest.approx(np.std([1, -1, 4 / 6], ddof=1))
    assert "over 3 seeds" in spread.line() and "top pick rank 2.0 ± 1.7 (1–4) of 4" in spread.line()
    assert summarize([r]).kendall_tau.std == 0.0
    with pytest.raises(NasError, match="at least one"):
        summarize([])


def test_sampled_architectures_are_distinct_seeded_and_prefix_stable() -> None:
    many = sample_architectures(40, seed=3)
    assert len({g.to_text() for g in many}) == 40 and tuple(many[: len(SPECIAL)]) == SPECIAL
    assert sample_architectures(40, seed=3) == many and sample_architectures(25, seed=3) == many[:25]
    assert sample_architectures(40, seed=4) != many
    with pytest.raises(NasError):
        sample_architectures(0, 0)


def test_worker_trains_an_architecture_on_a_tiny_budget() -> None:
    payload = {"arch": ARCHS[0], "dataset": "digits", "budget": TINY_BUDGET, "limit": 64}
    result = train_nb201(payload)
    assert result["status"] == "ok" and 0.0 <= result["accuracy"] <= 1.0 and result["params"] > 0
    assert train_nb201(payload)["accuracy"] == result["accuracy"]  # deterministic
    assert train_nb201({**payload, "arch": "|conv~0|"})["status"] == "failed"
    assert "dataset" in train_nb201({**payload, "dataset": "imagenet"})["error"]


def test_a_groundtruth_job_trains_through_an_executor_records_each_result_and_resumes(tmp_path: Path) -> None:
    from search.jobs import create_job, open_job, run_job
    from search.jobs._groundtruth import GroundTruthConfig, GroundTruthJob

    output = tmp_path / "t.json"
    config = GroundTruthConfig("digits", 3, str(output), seed=0, budget=TrainBudget(**TINY_BUDGET), limit=64)
    context = {"executor_factory": lambda **_: InlineExecutor(), "show_progress": False}
    seen: list[str] = []

    with Store.for_run(tmp_path / "gt") as store:
        job = create_job(store, "gt", GroundTruthJob, config, **context)
        record = GroundTruthJob._record

        def record_then_stop(self: GroundTruthJob, *args: object) -> None:
            record(self, *args)
            seen.append(args[1].to_text())
            if len(seen) == 1:
                raise KeyboardInterrupt

        GroundTruthJob._record = record_then_stop  # type: ignore[method-assign]
        try:
            with pytest.raises(KeyboardInterrupt):
                run_job(job)
            assert load_table(output).accuracy.keys() == {seen[0]}  # the table holds what is recorded
            table = run_job(open_job(store, store.get_job("gt"), **context))
        finally:
            GroundTruthJob._record = record  # type: ignore[method-assign]
        record_ = store.get_job("gt")
        evaluations = store.list_evaluations(record_.id)
    archs = [g.to_text() for g in sample_architectures(3, 0)]
    assert sorted(seen) == sorted(archs) and record_.status == "finished"  # each trained exactly once
    assert sorted(e.key for e in evaluations) == sorted(archs) and all(e.status == "ok" for e in evaluations)
    again = load_table(output)
    assert again.accuracy == table.accuracy and set(again.accuracy) == set(archs) and again.dataset == "digits"
    assert again.metadata["command"].startswith("autodisco nas groundtruth")
    (tmp_path / "bad.json").write_text(json.dumps({"accuracy": {"|nope~0|": 0.1}}))
    with pytest.raises(NasError):
        load_table(tmp_path / "bad.json")


def test_the_shipped_table_is_package_data() -> None:
    path = default_table_path("mnist1d")
    assert path is not None
    table = load_table(path)
    assert len(table.accuracy) >= 100 and table.dataset == "mnist1d"
    assert table.metadata["command"].startswith("autodisco nas groundtruth")
    assert max(table.accuracy.values()) > 0.8 > min(table.accuracy.values())


# -- the CLI ----------------------------------------------------------------------------------------------------------

def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("autodisco: error:")
    return err


@pytest.mark.parametrize("argv, message", [
    (["nas", "oneshot", "--dataset", "imagenet", "--run", "{tmp}/r"], "unknown dataset"),
    (["nas", "oneshot", "--epochs", "0", "--run", "{tmp}/r"], "--epochs"),
    (["nas", "oneshot", "--threads", "0", "--run", "{tmp}/r"], "--threads"),
    (["nas", "oneshot", "--table", "{tmp}/none.json", "--run", "{tmp}/r"], "no ground-truth table"),
    (["nas", "score", "{tmp}/missing", "{tmp}/a.txt", "-o", "{tmp}/s.json"], "no run folder"),
    (["nas", "score", "{tmp}", "{tmp}/a.txt", "-o", "{tmp}/s.json"], "supernet.pt"),
    (["nas", "groundtruth", "--dataset", "cifar", "--archs", "2", "-o", "{tmp}/t.json"], "unknown dataset"),
    (["nas", "groundtruth", "--archs", "0", "-o", "{tmp}/t.json"], "--archs"),
])  # fmt: skip
def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                   message: str) -> None:
    assert message in _usage_error(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert not (tmp_path / "r").exists()


def test_cli_oneshot_then_score_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "table.json"
    write_table(GroundTruthTable({"dataset": "digits", "budget": {"C": 2}},
                                 {a: 0.1 * i for i, a in enumerate(ARCHS)}), table)
    run = tmp_path / "runs" / "tiny"
    argv = ["nas", "oneshot", "--sampler", "pada", "--dataset", "digits", "--epochs", "1", "--limit", "48",
            "--table", str(table), "--run", str(run), "--quiet", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ranking"]["n"] == 3 and summary["sampler"] == "pada"
    assert "finished" in _usage_error(capsys, argv)  # a finished run is not trained again
    other = json.dumps({"metadata": {"dataset": "mnist1d"}, "accuracy": {ARCHS[0]: 0.5}})
    (tmp_path / "mnist.json").write_text(other)
    assert "not 'digits'" in _usage_error(capsys, [*argv[:-5], str(tmp_path / "mnist.json"), "--run",
                                                   str(tmp_path / "runs" / "x")])

    archs = tmp_path / "archs.txt"
    archs.write_text(f"# two of the table and a new one\n{ARCHS[2]}\n\n{ARCHS[0]}\n{SPECIAL[4].to_text()}\n")
    out = tmp_path / "scores.json"
    assert main(["nas", "score", str(run), str(archs), "-o", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert list(scores) == [ARCHS[2], ARCHS[0], SPECIAL[4].to_text()]
    with sqlite3.connect(run / "results.db") as db:
        rows = db.execute("SELECT c.text, e.fitness, e.metrics FROM evaluations e JOIN candidates c "
                          "ON c.id = e.candidate_id").fetchall()
        recorded = {text: json.loads(metrics)["inherited_accuracy"] for text, _, metrics in rows}
        # the fitness is the ranking score: minus the inherited loss by default
        assert all(fitness == pytest.approx(-json.loads(metrics)["inherited_loss"]) for _, fitness, metrics in rows)
        assert db.execute("SELECT kind FROM jobs").fetchone() == ("architecture",)
    for arch in (ARCHS[0], ARCHS[2]):  # `nas score` reproduces what `nas oneshot` recorded
        assert scores[arch] == pytest.approx(recorded[arch])

    archs.write_text(f"{ARCHS[0]}\n|nor_conv_3x3~0|+|oops|\n")
    assert "archs.txt:2:" in _usage_error(capsys, ["nas", "score", str(run), str(archs), "-o", str(out)])
