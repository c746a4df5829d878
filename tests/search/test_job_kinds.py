"""Every job kind (the search's own test is in test_job.py) survives Ctrl-C and ``kill -9`` of its process group: ``autodisco resume`` ends it exactly as an
uninterrupted run ends (the same records, nothing recorded twice). One chain per kind: start the creating command in
a subprocess, Ctrl-C it after a random number of units, resume it in a subprocess, ``kill -9`` that after a later
unit, and resume it to the end in this process (kinds whose Ctrl-C is tested in-process elsewhere: ``kill -9`` of the
creating command, then resume)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.cli import main
from search.jobs._registry import job_progress
from search.store import Store

TABLE_ARCHS = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
               "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|skip_connect~2|",
               "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|")
SMALL = ["--dataset", "digits", "--limit", "32", "--device", "cpu", "--quiet"]
# Kinds whose Ctrl-C and resume are tested in-process elsewhere (tests/nas: test_darts_job, test_groundtruth,
# test_oneshot): here their chain is kill -9 of the creating command, then resume (the real SIGINT is sent to the
# others, which all go through the same runner).
CTRL_C_IN_PROCESS = {"darts", "groundtruth", "oneshot"}
KINDS: dict[str, tuple[list[str], int]] = {  # the creating command (without --run) and its units
    "darts": (["nas", "darts", *SMALL, "--epochs", "4", "--layers", "1", "--channels", "2", "--batch-size", "16"], 4),
    "train": (["nas", "train", "DARTS_V2", *SMALL, "--epochs", "4", "--layers", "2", "--channels", "2",
               "--batch-size", "16"], 4),
    "oneshot": (["nas", "oneshot", "--dataset", "digits", "--limit", "32", "--epochs", "4", "--C", "2", "--quiet",
                 "--table", "{table}"], 4),
    "fewshot": (["nas", "fewshot", "--base", "darts", *SMALL, "--layers", "2", "--steps", "1", "--channels", "2",
                 "--batch-size", "16", "--splits", "1", "--split-every", "2", "--epochs", "4"], 8),
    "groundtruth": (["nas", "groundtruth", "--dataset", "digits", "--archs", "4", "--epochs", "1", "--C", "2",
                     "--limit", "64", "--workers", "1", "--quiet", "-o", "{table_out}"], 4),
}


def _argv(kind: str, tmp_path: Path, name: str) -> list[str]:
    argv, _ = KINDS[kind]
    values = {"table": str(tmp_path / "table.json"), "table_out": str(tmp_path / f"{name}.json")}
    return [a.format(**values) for a in argv] + ["--run", str(tmp_path / name)]


def _records(run: Path) -> tuple[list[tuple[str, str, float | None]], int]:
    """The job's evaluations (key, status, fitness) in key order, and its candidate count."""
    with Store.for_run(run, create=False) as store:
        job = store.get_job(run.name)
        assert job is not None and job.status == "finished"
        rows = sorted((e.key, e.status, e.fitness) for e in store.list_evaluations(job.id))
        return rows, len(store.list_candidates(job.id))


def _done(run: Path) -> int:
    if not (run / "results.db").exists():
        return 0
    try:
        with Store.for_run(run, create=False) as store:
            job = store.get_job(run.name)
            return int(job_progress(store, job)["done"] or 0) if job is not None else 0
    except Exception:  # the database is being created
        return 0


def _interrupt(argv: list[str], run: Path, cwd: Path, units: int, sig: int) -> None:
    """Run ``argv`` in its own process group and send ``sig`` to the group once ``units`` units are recorded."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "search.cli._main", *argv], cwd=cwd, env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and _done(run) < units:
        time.sleep(0.05)
    assert process.poll() is None, f"it ended before it could be interrupted: {process.stderr.read()}"
    os.killpg(process.pid, sig)
    status = process.wait(timeout=120)
    assert status == (130 if sig == signal.SIGINT else -signal.SIGKILL), process.stderr.read()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_ctrl_c_then_kill_9_then_resume_ends_like_an_uninterrupted_run(kind: str, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "table.json").write_text(json.dumps({"metadata": {"dataset": "digits"},
                                                     "accuracy": {a: 0.1 * i for i, a in enumerate(TABLE_ARCHS)}}))
    assert main(_argv(kind, tmp_path, "straight")) == 0
    expected = _records(tmp_path / "straight")

    _, units = KINDS[kind]
    rng = random.Random(kind)  # a different, reproducible interruption point per kind
    first = rng.randint(1, units // 2 - 1)
    second = rng.randint(first + 1, units - 2)
    run = tmp_path / "cut"
    if kind in CTRL_C_IN_PROCESS:  # one subprocess fewer: kill -9 of the creating command, then resume
        _interrupt(_argv(kind, tmp_path, "cut"), run, tmp_path, second, signal.SIGKILL)
    else:
        _interrupt(_argv(kind, tmp_path, "cut"), run, tmp_path, first, signal.SIGINT)
        with Store.for_run(run, create=False) as store:
            assert store.get_job("cut").status == "interrupted"
        _interrupt(["resume", str(run), "--quiet"], run, tmp_path, second, signal.SIGKILL)
    capsys.readouterr()
    assert main(["resume", str(run), "--quiet"]) == 0, capsys.readouterr().err
    records, candidates = _records(run)
    assert records == expected[0] and candidates == expected[1]
    assert len({key for key, _, _ in records}) == len(records)  # nothing recorded twice
    assert main(["resume", str(run)]) == 2  # finished: one line, nothing run
