"""The small things of issue 12, each as a new user met it: plurals, failure groups with their numbers, a run name
without its folder, dead code in ``runs top``, the export hint with ``--db``, one meaning per column, "did you mean"
for an unknown function."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli_runs import BuiltRun, make_run

from search.cli import main


@pytest.fixture
def run(tmp_path: Path) -> BuiltRun:
    return make_run(tmp_path / "runs")


def _ok(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def test_lineage_counts_one_ancestor_in_the_singular(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    first = _ok(capsys, ["runs", "lineage", str(run.path), str(run.ids[1])]).splitlines()[0]
    assert ": 1 ancestor, 1 without parents" in first
    assert ": 0 ancestors," in _ok(capsys, ["runs", "lineage", str(run.path), str(run.ids[0])]).splitlines()[0]
