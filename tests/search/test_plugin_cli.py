"""End to end, as the README's "Your own task" does it: ``examples/my_tasks.py`` searched through the real CLI with
a ``--config`` file, batched, on local workers; then a resume from a folder where the module does not import."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from evaluators import plugins
from search.cli._main import main
from search.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TASK = "my_tasks:regression"


def test_a_search_on_the_example_task_with_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # main puts the current directory on it
    monkeypatch.chdir(EXAMPLES)
    plugins.forget()
    run = tmp_path / "runs" / "mine"
    config = tmp_path / "search.toml"
    config.write_text(f'task = ["{TASK}"]\npopulation = 2\nevaluations = 3\nbatch = 2\nworkers = 1\nthreads = 1\n'
                      'seed = 5\n')
    status = main(["search", "optimizer", "--config", str(config), "--run", str(run), "--evaluations", "4",
                   "--quiet"])
    assert status == 0, capsys.readouterr().err
    assert "best fitness" in capsys.readouterr().out

    with Store.for_run(run, create=False, read_only=True) as store:
        job = store.get_job("mine")
        assert job is not None and job.status == "finished"
        assert job.config["tasks"] == [TASK] and job.config["evaluations"] == 4 and job.config["seed"] == 5
        assert job.config["config_file"] == {"path": str(config.resolve()), "text": config.read_text()}
        evaluations = store.list_evaluations(job.id)
        assert len(evaluations) == 4 and {e.task for e in evaluations} == {TASK}
        ok = [e for e in evaluations if e.status == "ok"]
        # trained by the batched worker function (--batch 2: it reports the rows trained together)
        assert ok and all(e.metrics["tasks"][TASK]["steps"] == 300 and "batch" in e.metrics["tasks"][TASK] for e in ok)
        warm_start = min(evaluations, key=lambda e: e.candidate_id)  # AdamW itself: 1.0 against AdamW's baseline
        assert warm_start.fitness == pytest.approx(1.0, abs=1e-4)

    # a fresh process elsewhere: the module is not on the path any more; the run is left exactly as it was
    sys.modules.pop("my_tasks", None)
    sys.path.remove(str(EXAMPLES))
    plugins.forget()
    monkeypatch.chdir(tmp_path)
    assert main(["resume", str(run), "--evaluations", "6", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot import module 'my_tasks'" in err and "PYTHONPATH" in err
    with Store.for_run(run, create=False, read_only=True) as store:
        job = store.get_job("mine")
        assert job is not None and job.status == "finished" and job.config["evaluations"] == 4


def test_validate_refuses_a_plugin_without_scales_before_starting_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(EXAMPLES)
    plugins.forget()
    run = tmp_path / "text"
    with Store.for_run(run) as store:  # a finished search on my_tasks:next_char, which defines no scales
        job = store.create_job("text", kind="optimizer", config={"tasks": ["my_tasks:next_char"]}, seed=0)
        store.set_job_status(job.id, "finished")
    assert main(["validate", str(run), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'my_tasks:next_char' has no scale '10x' (it defines: none)" in err
    with Store.for_run(run, create=False, read_only=True) as store:
        assert [j.name for j in store.list_jobs()] == ["text"]  # no validate job was left behind
