"""A matrix of database corruptions against every read command, `resume` and `validate`: each is one line naming the
database (and the table or column where it can), exit status 2, never a traceback; `runs list` lists such a run as
unreadable with the reason and goes on. The commands run in-process (`search.cli.main`): the layer that raises."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from programs import library
from search.cli import main
from search.executor import InlineExecutor
from search.jobs import run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import OptimizerKind
from search.store import Store

READS = ("show", "show-json", "top", "lineage", "plot", "export")
CANDIDATE_READERS = {"show", "show-json", "top", "lineage", "export", "resume", "validate", "list"}
EVERYTHING = {*READS, "resume", "validate", "list"}


def _rebuild(table: str) -> list[str]:
    """SQL that drops a table's constraints (as a careless copy does), so that NULLs can get in."""
    return [f"ALTER TABLE {table} RENAME TO old_{table}", f"CREATE TABLE {table} AS SELECT * FROM old_{table}",
            f"DROP TABLE old_{table}"]


# name -> (SQL run on the database, or "pages"; the commands that must refuse it)
CORRUPTIONS: dict[str, tuple[list[str] | str, set[str]]] = {
    "parent_ids null": ([*_rebuild("candidates"), "UPDATE candidates SET parent_ids = NULL"], CANDIDATE_READERS),
    "parent_ids a number": (["UPDATE candidates SET parent_ids = '5'"], CANDIDATE_READERS),
    "parent_ids a dict": (["UPDATE candidates SET parent_ids = '{\"a\": 1}'"], CANDIDATE_READERS),
    "parent_ids not JSON": (["UPDATE candidates SET parent_ids = '[1,'"], CANDIDATE_READERS),
    "text binary": (["UPDATE candidates SET text = X'ff00'"], CANDIDATE_READERS),
    "text null": ([*_rebuild("candidates"), "UPDATE candidates SET text = NULL"], CANDIDATE_READERS),
    "text not UTF-8": (["UPDATE candidates SET text = CAST(X'C328' AS TEXT)"], CANDIDATE_READERS),
    "hash binary": (["UPDATE candidates SET hash = X'00ff'"], CANDIDATE_READERS),
    "created_at not a time": (["UPDATE candidates SET created_at = 'yesterday'"], CANDIDATE_READERS),
    "fitness text": (["UPDATE evaluations SET fitness = 'abc'"],
                     {"show", "show-json", "top", "lineage", "plot", "validate", "list"}),
    "metrics not JSON": (["UPDATE evaluations SET metrics = '{bad'"],
                         {"show", "show-json", "top", "lineage", "validate", "list"}),
    "config not JSON": (["UPDATE jobs SET config = '{bad'"], EVERYTHING),
    "config null": (["UPDATE jobs SET config = 'null'"], {"resume", "validate"}),
    "seed text": (["UPDATE jobs SET seed = 'x'"], EVERYTHING),
    "checkpoint {}": (["UPDATE checkpoints SET state = '{}'"], {"resume"}),
    "checkpoint null": (["UPDATE checkpoints SET state = 'null'"], {"resume"}),
    "checkpoint not JSON": (["UPDATE checkpoints SET state = '{bad'"], {"resume"}),
    "cache payload not JSON": (["UPDATE cache_entries SET payload = '{bad'"], {"resume"}),
    "cache payload a list": (["UPDATE cache_entries SET payload = '[]'"], {"resume"}),
    "column dropped": (["ALTER TABLE evaluations DROP COLUMN wall_time"], EVERYTHING),
    "pages overwritten": ("pages", EVERYTHING),
}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished search (in-process), marked interrupted so that resume reads everything."""
    run = tmp_path_factory.mktemp("base") / "run"
    config = SearchConfig(tasks=("quadratic",), population=4, tournament=2, evaluations=6, seed=1,
                          warm_start=(library.get("adamw").to_text(),))
    with Store.for_run(run) as store:
        job = SearchJob.create(store, "run", OptimizerKind(), config, executor_factory=lambda **_: InlineExecutor(),
                               show_progress=False)
        run_job(job)
        store.set_job_status(job.record.id, "interrupted")
    connection = sqlite3.connect(run / "results.db")
    assert connection.execute("SELECT count(*) FROM cache_entries").fetchone()[0] > 0
    connection.close()
    return run


def _corrupt(path: Path, damage: list[str] | str) -> None:
    if damage == "pages":
        data, page = bytearray(path.read_bytes()), 4096
        for offset in range(2 * page, len(data), page):  # keep the header and the schema page, wreck the rest
            data[offset + 8:offset + page] = b"\xa5" * (page - 8)
        path.write_bytes(bytes(data))
        return
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA foreign_keys = OFF")
    for statement in damage:
        connection.execute(statement)
    connection.commit()
    connection.close()


def _argv(command: str, run: Path, root: Path) -> list[str]:
    return {
        "list": ["runs", "list", "--root", str(root)],
        "show": ["runs", "show", str(run)],
        "show-json": ["runs", "show", str(run), "--json"],
        "top": ["runs", "top", str(run)],
        "lineage": ["runs", "lineage", str(run), "3"],
        "plot": ["runs", "plot", str(run), "-o", str(root / "curve.png")],
        "export": ["export", str(run), "3", "-o", str(root / "exported.py"), "--force"],
        "resume": ["resume", str(run), "--workers", "1", "--quiet"],
        "validate": ["validate", str(run), "-k", "1", "--trials", "1", "--workers", "1", "--quiet"],
    }[command]


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_database_is_one_line_and_exit_2_for_every_command(name: str, base_run: Path, tmp_path: Path,
                                                                    capsys) -> None:
    damage, refusing = CORRUPTIONS[name]
    root = tmp_path / "runs"
    run = root / "run"
    shutil.copytree(base_run, run)
    _corrupt(run / "results.db", damage)
    # resume and validate would start real work on a database they can read: run them where they must refuse
    commands = [*READS, *sorted({"resume", "validate"} & refusing)]
    for command in commands:
        code = main(_argv(command, run, root))  # an exception escaping here is the traceback a user would see
        out, err = capsys.readouterr()
        if command in refusing:
            assert code == 2, f"{name}: {command} accepted the damaged database ({out[-300:]})"
        assert code in (0, 2), f"{name}: {command} exited {code}"
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("autodisco: error: "), f"{name}: {command}: {err}"
            assert str(run) in lines[0] or "job 'run'" in lines[0], f"{name}: {command} names no file/job: {err}"
        else:
            assert "Infinity" not in out and "NaN" not in out
    assert main(_argv("list", run, root)) == 0
    out, _ = capsys.readouterr()
    if "list" in refusing:
        assert f"run: unreadable: {run / 'results.db'}" in out, out
    else:
        assert "unreadable" not in out and "run" in out


def test_resume_of_the_undamaged_copy_works(base_run: Path, tmp_path: Path, capsys) -> None:
    """The control of the matrix: the same commands on the base database succeed."""
    root = tmp_path / "runs"
    run = root / "run"
    shutil.copytree(base_run, run)
    for command in (*READS, "resume"):
        assert main(_argv(command, run, root)) == 0, capsys.readouterr().err
    with Store.for_run(run, read_only=True) as store:
        assert store.get_job("run").status == "finished"
