"""The small things of issue 12, each as a new user met it: plurals, failure groups with their numbers, a run name
without its folder, dead code in ``runs top``, the export hint with ``--db``, one meaning per column, "did you mean"
for an unknown function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli_runs import BuiltRun, run  # noqa: F401 - the fixture
from _cli_runs import ok as _ok

from search.cli import main




def test_lineage_counts_one_ancestor_in_the_singular(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    first = _ok(capsys, ["runs", "lineage", str(run.path), str(run.ids[1])]).splitlines()[0]
    assert ": 1 ancestor, 1 without parents" in first
    assert ": 0 ancestors," in _ok(capsys, ["runs", "lineage", str(run.path), str(run.ids[0])]).splitlines()[0]


def test_search_names_its_database_as_a_path_and_the_export_hint_keeps_db(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from programs import library
    from search.executor import InlineExecutor
    from search.jobs import run_job
    from search.jobs._search import SearchConfig, SearchJob
    from search.kinds import OptimizerKind
    from search.store import Store

    monkeypatch.chdir(tmp_path)  # the hint's -o my_optimizer.py lands here
    config = SearchConfig(tasks=("quadratic",), population=2, tournament=2, evaluations=3, seed=0,
                          warm_start=(library.get("adamw").to_text(),))
    shared = tmp_path / "shared.db"
    cases = ((Store(f"sqlite:///{shared}"), tmp_path / "runs" / "q", f" --db sqlite:///{shared}"),
             (Store.for_run(tmp_path / "runs" / "own"), tmp_path / "runs" / "own", ""))
    for store, run_dir, db_part in cases:
        with store:
            job = SearchJob.create(store, run_dir.name, OptimizerKind(), config, run_dir=run_dir,
                                   show_progress=False, executor_factory=lambda **_: InlineExecutor())
            described = job.describe()
            assert "Store(" not in described and described.endswith(f"results in {store.url.database}")
            lines = job.report(run_job(job))
        hint = next(line for line in lines if line.startswith("export it:"))
        assert hint.startswith(f"export it: autodisco export {run_dir} ") and hint.endswith(
            f"-o my_optimizer.py{db_part}")
        assert main([*hint.split("autodisco ", 1)[1].split(), "--force"]) == 0  # the hint runs as printed
        assert (tmp_path / "my_optimizer.py").is_file()
        assert job.db_option() == db_part  # the resume hint after Ctrl-C (run_to_end) keeps --db the same way


def test_a_run_named_without_its_folder_suggests_the_folder(run: BuiltRun, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # runs/lion-hunt is here
    assert main(["runs", "show", "lion-hunt"]) == 2
    err = capsys.readouterr().err
    assert "no run folder 'lion-hunt'; did you mean 'runs/lion-hunt'?" in err and err.count("\n") == 1
    assert main(["runs", "show", "nothing-like-it"]) == 2
    assert "start one with" in capsys.readouterr().err


def test_top_shows_programs_without_their_dead_code(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    from _cli_runs import LION_WITH_DEAD_CODE

    from search.store import Store

    with Store.for_run(run.path, create=False) as store:  # the dead-code Lion, best of the run under its own hash
        job = store.get_job(run.path.name)
        assert job is not None
        cid = store.add_candidate(job.id, kind="optimizer", text=LION_WITH_DEAD_CODE, hash="ab" * 16)
        store.finish_evaluation(store.add_evaluation(job.id, cid, key="dead", task="mnist1d-mlp", seed=3),
                                status="ok", fitness=2.0)
    shown = _ok(capsys, ["runs", "top", str(run.path), "-k", "1"])
    assert "(simplified: 1 dead statement of 5 removed; --raw shows the program as recorded)" in shown
    assert "cosh" not in shown and "sign(" in shown
    assert "cosh(g)" in _ok(capsys, ["runs", "top", str(run.path), "-k", "1", "--raw"])
    row = json.loads(_ok(capsys, ["runs", "top", str(run.path), "-k", "1", "--json"]))[0]
    assert row["program"] == LION_WITH_DEAD_CODE and row["simplified"]["removed"] == [1]


def test_pada_weight_is_not_called_tau_beside_kendall_tau() -> None:
    from nas.oneshot_train import OneShotEpoch
    from search.jobs._oneshot import epoch_line

    line = epoch_line(OneShotEpoch(epoch=2, lr=0.1, train_loss=1.5, train_accuracy=0.4, distinct_examples=10,
                                   seconds=1.0, sampler={"tau": 0.5}))
    assert line.endswith("| PA&DA importance weight 0.50") and "tau" not in line


def test_readme_cites_only_files_that_are_in_the_project() -> None:
    import re

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    cited = set(re.findall(r"\b([\w./-]+\.md)\b", readme))
    assert "PAPERS.md" not in readme
    assert all((root / name).is_file() for name in cited), sorted(n for n in cited if not (root / n).is_file())
