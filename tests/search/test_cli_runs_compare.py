"""``autodisco runs compare``: the side-by-side table (JSON and text), the overlay's data, and its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli_runs import NAME, make_architecture_run, make_run
from test_cli_runs_nas_plot import _darts_run

from programs import library
from search.cli import main
from search.cli._compare import compare_curve
from search.kinds import OptimizerKind
from search.store import Store


def _second_search(root: Path) -> Path:
    """An optimizer search holding the real AdamW (fitness 0.5) and a candidate at 0.6: ratio 1.2; 90 s elapsed."""
    adamw = library.get("adamw")
    with Store.for_run(root / "second") as store:
        job = store.create_job("second", kind="optimizer", config={"tasks": ["quadratic"], "method": "search"}, seed=1)
        for birth, (text, digest, fitness) in enumerate([(adamw.to_text(), OptimizerKind().functional_hash(adamw),
                                                          0.5), ("x", "99" * 16, 0.6)]):
            cid = store.add_candidate(job.id, kind="optimizer", text=text, hash=digest, birth=birth)
            ev = store.add_evaluation(job.id, cid, key=f"k{birth}", task="quadratic", seed=1)
            store.finish_evaluation(ev, status="ok", fitness=fitness, wall_time=40.0)
        store.save_checkpoint(job.id, {"elapsed_s": 90.0})
        store.set_job_status(job.id, "finished")
    return root / "second"


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    return [make_run(root).path, _second_search(root), make_architecture_run(root).path, _darts_run(root)]


def test_compare_json_rows(runs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "compare", *map(str, runs), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    hunt, second, nas, darts = rows
    assert (hunt["name"], hunt["method"], hunt["tasks"], hunt["evaluations"], hunt["failed"]) == (
        NAME, "search", "mnist1d-mlp", 5, 1)
    assert hunt["best_fitness"] == 1.3 and hunt["best_adamw_ratio"] == 1.3  # no scored AdamW: fitness is the ratio
    assert hunt["cache_hit_rate"] == pytest.approx(2 / 7) and hunt["best_accuracy"] is None
    assert second["best_adamw_ratio"] == pytest.approx(1.2) and second["wall_time_s"] == 90.0
    assert nas["best_accuracy"] == 0.9 and nas["best_adamw_ratio"] is None
    assert darts["method"] == "darts" and darts["cache_hit_rate"] is None and darts["best_accuracy"] == 0.75


def test_compare_table_and_plots(runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "compare.html"
    assert main(["runs", "compare", str(runs[0]), str(runs[1]), str(runs[3]), "--plot", str(page)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["RUN", "METHOD", "TASKS", "EVALUATIONS", "BEST"]
    assert lines[1].split()[1:] == ["search", "(optimizer)", "mnist1d-mlp", "5", "1.3000", "1.3000x", "-", "28.6%",
                                    "1", "-", "finished"]
    assert lines[2].split()[1:] == ["search", "(optimizer)", "quadratic", "2", "0.6000", "1.2000x", "-", "0.0%",
                                    "0", "1m30s", "finished"]
    assert lines[3].split()[1:] == ["darts", "(architecture)", "darts:x", "-", "0.7500", "-", "0.7500", "-", "0",
                                    "-", "interrupted"]
    assert lines[4] == f"wrote {page}"
    text = page.read_text()
    assert text.count("<svg") == 1 and "1.2000x" in text and "accuracy per epoch" in text
    assert main(["runs", "compare", str(runs[0]), str(runs[1]), "--plot", str(tmp_path / "c.svg"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 2 and err == f"wrote {tmp_path / 'c.svg'}\n"  # stdout stays JSON
    figure = tmp_path / "compare.png"
    assert main(["runs", "compare", str(runs[0]), str(runs[2]), "--plot", str(figure)]) == 0
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_compare_curves_count_evaluations_as_runs_show(runs: list[Path]) -> None:
    with Store.for_run(runs[0], create=False, read_only=True) as store:
        job = store.get_job(NAME)
        assert job is not None
        curve = compare_curve(store, job, "a")
    assert curve["panel"] == "adamw" and curve["x"] == [1, 2, 3, 4, 4, 5, 5]
    assert curve["y"] == [1.0, 1.0, 1.3, 1.3, 1.3, 1.3, 1.3]
    with Store.for_run(runs[3], create=False, read_only=True) as store:
        job = store.get_job("darts-run")
        assert job is not None
        curve = compare_curve(store, job, "d")
    assert (curve["panel"], curve["x"], curve["metric"]) == ("epochs", [1, 2, 3], "val_accuracy")


def test_compare_refuses_one_run_a_bad_plot_file_and_a_missing_run(runs: list[Path], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in ((["runs", "compare", str(runs[0])], "two or more runs"),
                           (["runs", "compare", *map(str, runs[:2]), "--plot", str(tmp_path / "f.xyz")],
                            "figure format"),
                           (["runs", "compare", str(runs[0]), str(tmp_path / "nowhere")], "no run folder")):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and expected in err and err.count("\n") == 1
