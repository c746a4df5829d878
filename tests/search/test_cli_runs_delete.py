"""``autodisco runs delete``: a run folder goes whole, a job of a shared database goes with its rows; a running job,
a missing confirmation or a bad run is one line and exit status 2 with nothing deleted."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest
from _cli_runs import NAME, BuiltRun, make_foreign, make_garbage, make_run

from search.cli import main
from search.store import LeaseHeldError, Store


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("autodisco") and "Traceback" not in err, err
    return err


def _add_validation(run: BuiltRun) -> None:
    """A ``NAME/validate`` job beside the search, with one candidate and evaluation of its own."""
    with Store.for_run(run.path, create=False) as store:
        job = store.create_job(f"{NAME}/validate", kind="optimizer", config={"method": "validate"}, seed=0)
        cid = store.add_candidate(job.id, kind="optimizer", text="x", hash="ff" * 16, birth=0)
        store.add_evaluation(job.id, cid, key="k", task="t@10x", seed=0)
        store.save_checkpoint(job.id, {"done": 0})
        store.set_job_status(job.id, "finished")


def test_delete_a_run_folder_with_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "runs")
    _add_validation(run)
    (run.path / "exports").mkdir()
    (run.path / "exports" / "discovered3.py").write_text("# exported\n")
    other = make_run(tmp_path / "runs", "other")
    assert main(["runs", "delete", str(run.path), "--yes"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"deleted run folder {str(run.path)!r} with job 'lion-hunt' (search, finished), "
                          "'lion-hunt/validate' (validate, finished)")
    assert not run.path.exists() and (other.path / "results.db").is_file()
    assert main(["runs", "list", "--root", str(tmp_path / "runs")]) == 0
    listed = capsys.readouterr().out
    assert "other" in listed and "lion-hunt" not in listed


def test_delete_asks_on_a_terminal_and_refuses_without_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "runs")
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal
    assert "add --yes" in _usage_error(capsys, ["runs", "delete", str(run.path)])
    assert (run.path / "results.db").is_file()

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["runs", "delete", str(run.path)]) == 1
    out = capsys.readouterr().out
    assert "[y/N]" in out and out.endswith("nothing deleted\n")
    assert (run.path / "results.db").is_file()
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["runs", "delete", str(run.path)]) == 0
    assert not run.path.exists()


def test_delete_refuses_a_running_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "runs")
    with Store.for_run(run.path, create=False) as driver:  # this process holds the lease: a live driver
        job = driver.get_job(NAME)
        assert job is not None
        lease = driver.acquire_lease(job.id)
        driver.set_job_status(job.id, "running")
        err = _usage_error(capsys, ["runs", "delete", str(run.path), "--yes"])
        assert "'lion-hunt' is running now" in err
        assert (run.path / "results.db").is_file()
        with pytest.raises(Exception, match="is running now"):
            with Store.for_run(run.path, create=False) as other:
                other.delete_jobs([job.id])
        driver.release_lease(lease)
    assert main(["runs", "delete", str(run.path), "--yes"]) == 0  # interrupted now: its driver is gone
    assert not run.path.exists()


def test_delete_a_job_from_a_shared_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "runs")
    _add_validation(run)
    url = f"sqlite:///{run.db}"
    with Store(url) as store:  # a second search in the same database, which must stay whole
        keep = store.create_job("keeper", kind="optimizer", config={"tasks": ["mnist1d-mlp"]}, seed=0)
        cid = store.add_candidate(keep.id, kind="optimizer", text="y", hash="ee" * 16, birth=0)
        store.finish_evaluation(store.add_evaluation(keep.id, cid, key="k", task="mnist1d-mlp", seed=0),
                                status="ok", fitness=1.0)
        store.save_checkpoint(keep.id, {"a": 1})
    storage = optuna.storages.RDBStorage(url)  # the validation's lr sweeps live in the same database
    for study in (f"validate:{NAME}/validate:3:mnist1d-mlp@10x", "validate:keeper/validate:1:mnist1d-mlp@10x"):
        optuna.create_study(study_name=study, storage=storage)
    storage.engine.dispose()
    assert "no job 'nobody'" in _usage_error(capsys, ["runs", "delete", "nobody", "--db", url, "--yes"])
    assert main(["runs", "delete", NAME, "--db", url, "--yes"]) == 0
    out = capsys.readouterr().out
    assert out == ("deleted job 'lion-hunt' (search, finished), 'lion-hunt/validate' (validate, finished) from the "
                   "database: 9 candidates, 9 evaluations, 1 Optuna study\n")
    assert optuna.get_all_study_names(url) == ["validate:keeper/validate:1:mnist1d-mlp@10x"]
    with Store(url, create=False, read_only=True) as store:
        assert [j.name for j in store.list_jobs()] == ["keeper"]
        keeper = store.get_job("keeper")
        assert keeper is not None and store.counts(keeper.id).evaluations == 1
        assert store.latest_checkpoint(keeper.id) is not None
    assert run.db.is_file()  # the database itself stays: it is shared


def test_delete_of_a_missing_run_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no run folder" in _usage_error(capsys, ["runs", "delete", str(tmp_path / "nowhere"), "--yes"])
    (tmp_path / "bare").mkdir()
    assert "has no results.db" in _usage_error(capsys, ["runs", "delete", str(tmp_path / "bare"), "--yes"])
    assert (tmp_path / "bare").is_dir()
    garbage, foreign = make_garbage(tmp_path), make_foreign(tmp_path)
    before = garbage.read_bytes(), foreign.read_bytes()
    assert "not a SQLite database" in _usage_error(capsys, ["runs", "delete", str(garbage.parent), "--yes"])
    assert "not an autodisco results database" in _usage_error(capsys, ["runs", "delete", str(foreign.parent),
                                                                        "--yes"])
    assert (garbage.read_bytes(), foreign.read_bytes()) == before
    run = make_run(tmp_path / "runs")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / NAME).symlink_to(run.path)
    assert "symbolic link" in _usage_error(capsys, ["runs", "delete", str(tmp_path / "elsewhere" / NAME), "--yes"])
    assert (run.path / "results.db").is_file()


def test_store_delete_jobs_removes_every_row_of_those_jobs_only(store: Store) -> None:
    jobs = [store.create_job(name, kind="optimizer", config={}, seed=0) for name in ("gone", "kept")]
    for job in jobs:
        cid = store.add_candidate(job.id, kind="optimizer", text="t", hash="aa" * 16, birth=0)
        store.finish_evaluation(store.add_evaluation(job.id, cid, key="k", task="t", seed=0), status="ok", fitness=1.0)
        store.save_checkpoint(job.id, {"n": 1})
        store.save_cache_entries(job.id, {"aa" * 16: {"fitness": 1.0}})
        store.append_logbook(job.id, 0, [{"gen": 0}])
    store.release_lease(store.acquire_lease(jobs[0].id))
    deleted = store.delete_jobs([jobs[0].id])
    assert {k: deleted[k] for k in ("jobs", "candidates", "evaluations", "checkpoints", "cache_entries", "logbook")} \
        == dict.fromkeys(("jobs", "candidates", "evaluations", "checkpoints", "cache_entries", "logbook"), 1)
    assert [j.name for j in store.list_jobs()] == ["kept"]
    kept = jobs[1].id
    assert store.counts(kept).evaluations == 1 and store.load_cache_entries(kept) and store.load_logbook(kept)
    lease = store.acquire_lease(kept)  # a live driver: refused, nothing deleted
    with pytest.raises(LeaseHeldError, match="'kept' is running now"):
        store.delete_jobs([kept])
    store.release_lease(lease)
    assert store.counts(kept).evaluations == 1
