"""``autodisco runs list|show|top|lineage|plot`` on run folders written with the Store API (see _cli_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cli_runs import (
    CANDIDATES, CONFIG, NAME, BuiltRun, make_architecture_run, make_empty_run, make_foreign, make_garbage, make_run,
    run,  # noqa: F401 - the fixture
)
from _cli_runs import ok as _ok

from search.cli import main
from search.cli._runs import failure_reasons
from search.plot import rolling_mean, rolling_nanmedian, search_curves
from search.store import Store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"




def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    return json.loads(_ok(capsys, [*argv, "--json"]))


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``argv``, expect exit status 2 with one line on stderr and nothing on stdout; return that line."""
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own refusals (a non-number for -k) exit from inside parsing
        status = exit_.code
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and err.startswith("autodisco"), err
    return err


# -- list ---------------------------------------------------------------------------------------------------------


def test_list_shows_every_run_and_names_unreadable_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs"
    make_run(root)
    make_architecture_run(root)
    garbage, foreign = make_garbage(root), make_foreign(root)
    before = garbage.read_bytes(), foreign.read_bytes()
    (root / "not-a-run").mkdir()
    (root / "notes.txt").write_text("hello")

    rows = _json(capsys, ["runs", "list", "--root", str(root)])
    assert [r["name"] for r in rows] == ["foreign", "garbage", NAME, "nas-run"]
    by_name = {r["name"]: r for r in rows}
    hunt = by_name[NAME]
    assert (hunt["kind"], hunt["status"], hunt["candidates"], hunt["evaluations"], hunt["failed"],
            hunt["cache_hits"], hunt["pending"], hunt["best_fitness"]) == ("optimizer", "finished", 8, 5, 1, 2, 1, 1.3)
    assert hunt["cache_hit_rate"] == pytest.approx(2 / 7) and hunt["error"] is None
    assert by_name["nas-run"]["kind"] == "architecture"
    assert "not a SQLite database" in by_name["garbage"]["error"]
    assert "not an autodisco results database" in by_name["foreign"]["error"]
    assert (garbage.read_bytes(), foreign.read_bytes()) == before

    text = _ok(capsys, ["runs", "list", "--root", str(root)])
    header, *lines = text.splitlines()
    assert header.split()[:5] == ["NAME", "KIND", "JOB", "STATUS", "PROGRESS"]
    hunt_line = next(line for line in lines if line.startswith(NAME))
    assert hunt_line.split()[:8] == [NAME, "optimizer", "search", "finished", "5:evals", "8", "5", "1"]
    assert "1.3000" in hunt_line
    # ratios to AdamW and accuracies never share a column
    column = header.split().index("BEST×ADAMW")
    assert header.split()[column:column + 2] == ["BEST×ADAMW", "BEST-ACC"]
    assert hunt_line.split()[column:column + 2] == ["1.3000", "-"]  # "CACHE HITS" and its "2 (28.6%)": two words
    nas_line = next(line for line in lines if line.startswith("nas-run"))
    assert nas_line.split()[column:column + 2] == ["-", "0.9000"]
    assert (hunt["best_measure"], by_name["nas-run"]["best_measure"]) == ("adamw_ratio", "accuracy")
    assert any(line.startswith("garbage: unreadable:") for line in lines)
    assert "not-a-run" not in text and "notes.txt" not in text


def test_list_of_a_database_url_and_of_an_empty_root(run: BuiltRun, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, ["runs", "list", "--db", f"sqlite:///{run.db}"])
    assert [(r["name"], r["candidates"]) for r in rows] == [(NAME, 8)]
    (tmp_path / "empty").mkdir()
    assert _json(capsys, ["runs", "list", "--root", str(tmp_path / "empty")]) == []
    assert "no runs under" in _ok(capsys, ["runs", "list", "--root", str(tmp_path / "empty")])


def test_list_of_a_missing_root_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no folder" in _usage_error(capsys, ["runs", "list", "--root", str(tmp_path / "nowhere")])


# -- show ---------------------------------------------------------------------------------------------------------


def test_show_json(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    report = _json(capsys, ["runs", "show", str(run.path)])
    assert (report["name"], report["kind"], report["status"]) == (NAME, "optimizer", "finished")
    assert (report["candidates"], report["evaluations"], report["ok"], report["failed"], report["cache_hits"],
            report["pending"]) == (8, 5, 4, 1, 2, 1)
    assert report["config"] == CONFIG
    assert report["cache_hit_rate"] == pytest.approx(2 / 7)
    assert report["failures"] == [{"reason": "nan loss at step 12", "count": 1, "example": "nan loss at step 12"}]
    best = report["best"]
    assert (best["id"], best["hash"], best["fitness"], best["program"]) == (
        run.ids[2], CANDIDATES[2][1], 1.3, CANDIDATES[2][0])


def test_show_text(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    text = _ok(capsys, ["runs", "show", str(run.path)])
    assert f"run          {NAME}" in text
    assert "5 run (4 ok, 1 failed), 1 pending" in text
    assert "cache hits   2 (28.6% of lookups)" in text
    assert "population: 8" in text and 'tasks: ["mnist1d-mlp"]' in text
    assert "failures     1 x nan loss at step 12" in text
    assert f"candidate {run.ids[2]}  hash 5c5c11" in text and "fitness 1.3000" in text
    assert text.endswith("\n" + "".join(f"    {line}\n" for line in CANDIDATES[2][0].splitlines()))


def test_failure_reasons_are_grouped_by_wording() -> None:
    errors = ["mnist1d-mlp: loss diverged at step 24: 726.8 > 100 x first-step loss 5.79",
              "mnist1d-mlp: loss diverged at step 2: 2.5e+12 > 100 x first-step loss -1.5",
              "timeout after 600 s", None, "timeout after 600 s"]
    assert failure_reasons(errors) == [
        {"reason": "mnist1d-mlp: loss diverged at step 2–24: 726.8–2.5e+12 > 100 x first-step loss -1.5–5.79",
         "count": 2,
         "example": errors[0]},
        {"reason": "timeout after 600 s", "count": 2, "example": "timeout after 600 s"},
        {"reason": "no reason recorded", "count": 1, "example": "no reason recorded"},
    ]


def test_show_of_a_run_without_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = make_empty_run(tmp_path)
    report = _json(capsys, ["runs", "show", str(empty.path)])
    assert report["best"] is None and report["evaluations"] == 0 and report["cache_hit_rate"] is None
    assert "none yet" in _ok(capsys, ["runs", "show", str(empty.path)])


def test_show_reads_a_job_from_a_database_url(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    report = _json(capsys, ["runs", "show", NAME, "--db", f"sqlite:///{run.db}"])
    assert (report["name"], report["candidates"]) == (NAME, 8)
    assert "no job 'other'" in _usage_error(capsys, ["runs", "show", "other", "--db", f"sqlite:///{run.db}"])


# -- top ----------------------------------------------------------------------------------------------------------


def test_top_ranks_one_candidate_per_hash(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, ["runs", "top", str(run.path), "-k", "3"])
    assert [r["id"] for r in rows] == [run.ids[2], run.ids[5], run.ids[0]]  # lion (not its cached twin), signsgd, adamw
    assert [r["fitness"] for r in rows] == [1.3, 1.1, 1.0]
    first = rows[0]
    assert first["program"] == CANDIDATES[2][0] and first["hash"] == CANDIDATES[2][1]
    assert (first["birth"], first["parent_ids"], first["mutation"]) == (2, [run.ids[1]], CANDIDATES[2][3])
    assert first["metrics"] == {"scores": {"mnist1d-mlp": 1.3}}
    assert len(_json(capsys, ["runs", "top", str(run.path)])) == 4  # only four distinct hashes succeeded


def test_top_text(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    text = _ok(capsys, ["runs", "top", str(run.path), "-k", "2"])
    lines = text.splitlines()
    assert lines[0].split() == ["RANK", "ID", "HASH", "FITNESS", "BUFFERS", "STATUS", "BIRTH", "MUTATION"]
    first, second = lines[1].split(), lines[2].split()
    assert first[:4] + first[5:7] == ["1", str(run.ids[2]), "5c5c111111", "1.3000", "ok", "2"]
    assert second[:4] + second[5:7] == ["2", str(run.ids[5]), "5c5c222222", "1.1000", "ok", "5"]
    assert first[4].isdigit() and second[4].isdigit()  # the programs' state buffers
    program = "".join(f"    {line}\n" for line in CANDIDATES[5][0].splitlines())
    assert f"#1  candidate {run.ids[2]}  fitness 1.3000\n" in text and text.endswith(program)


@pytest.mark.parametrize("k", ["0", "-1", "three"])
def test_top_rejects_a_bad_k(run: BuiltRun, capsys: pytest.CaptureFixture[str], k: str) -> None:
    _usage_error(capsys, ["runs", "top", str(run.path), "-k", k])


# -- lineage ------------------------------------------------------------------------------------------------------


def test_lineage_goes_back_to_the_warm_start(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, ["runs", "lineage", str(run.path), str(run.ids[7])])
    c = run.ids
    assert [(r["id"], r["depth"]) for r in rows] == [(c[7], 0), (c[5], 1), (c[2], 2), (c[1], 2), (c[0], 3)]
    assert [r["status"] for r in rows] == ["pending", "ok", "ok", "ok", "ok"]
    assert [r["fitness"] for r in rows] == [None, 1.1, 1.3, 0.8, 1.0]
    assert rows[1]["parent_ids"] == [c[2], c[1]] and rows[1]["mutation"] == "crossover"
    assert rows[-1]["mutation"] == "initial" and rows[-1]["parent_ids"] == []
    assert rows[-1]["program"] == CANDIDATES[0][0]


def test_lineage_text_and_failed_ancestors(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    text = _ok(capsys, ["runs", "lineage", str(run.path), str(run.ids[6]), "--programs"])
    lines = text.splitlines()
    assert lines[0].startswith(f"lineage of candidate {run.ids[6]} (hash 7d7d7d7d7d)")
    assert "4 ancestors, 1 without parents" in lines[0]
    assert lines[1].split() == ["DEPTH", "ID", "HASH", "FITNESS", "STATUS", "BIRTH", "PARENTS", "MUTATION"]
    assert lines[2].split()[:5] == ["0", str(run.ids[6]), "7d7d7d7d7d", "-", "failed"]  # a cached failure
    assert lines[3].split()[:5] == ["1", str(run.ids[3]), "7d7d7d7d7d", "-", "failed"]
    assert lines[-1].split()[:2] == ["return", "update,"]  # --programs prints the warm start's program last


def test_lineage_by_hash_prefix(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert _json(capsys, ["runs", "lineage", str(run.path), "0A0A"])[0]["id"] == run.ids[0]
    # two candidates share hash 5c5c11...: the prefix names the hash, and the first-born candidate of it
    assert _json(capsys, ["runs", "lineage", str(run.path), "5c5c1"])[0]["id"] == run.ids[2]


def test_lineage_rejects_unknown_and_ambiguous_ids(run: BuiltRun, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(capsys, ["runs", "lineage", str(run.path), "5c5c"])
    assert "ambiguous" in err and f"(id {run.ids[2]})" in err and f"(id {run.ids[5]})" in err
    assert "no candidate" in _usage_error(capsys, ["runs", "lineage", str(run.path), "ffff"])
    assert "no candidate" in _usage_error(capsys, ["runs", "lineage", str(run.path), "not-hex"])
    assert "no candidate" in _usage_error(capsys, ["runs", "lineage", str(run.path), "99999"])
    with Store.for_run(run.path) as store:  # a candidate of another job in the same database is not this run's
        other = store.create_job("other", kind="optimizer", config={}, seed=0)
        foreign_id = store.add_candidate(other.id, kind="optimizer", text=CANDIDATES[0][0], hash="f" * 32)
    assert "no candidate" in _usage_error(capsys, ["runs", "lineage", str(run.path), str(foreign_id)])


def test_hash_prefix_is_matched_literally(run: BuiltRun) -> None:
    with Store.for_run(run.path, create=False) as store:
        job = store.get_job(NAME)
        assert job is not None
        assert [c.id for c in store.first_by_hash(job.id, "5c5c")] == [run.ids[2], run.ids[5]]
        assert store.first_by_hash(job.id, "5c5c", limit=1)[0].id == run.ids[2]
        assert store.first_by_hash(job.id, "5_5c") == [] and store.first_by_hash(job.id, "%") == []
        assert {e.candidate_id for e in store.evaluations_of([run.ids[2], run.ids[4]])} == {run.ids[2], run.ids[4]}


# -- plot ---------------------------------------------------------------------------------------------------------


def test_plot_writes_a_png(run: BuiltRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figure = tmp_path / "search.png"
    out = _ok(capsys, ["runs", "plot", str(run.path), "-o", str(figure), "--window", "3"])
    # evaluations counted as runs show counts them: 5 run (ok + failed), the 2 cache hits apart
    assert out.startswith(f"wrote {figure}: 5 evaluations run (1 failed), 2 cache hits, best fitness 1.3000")
    data = figure.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_plot_rejects_bad_output_and_empty_runs(run: BuiltRun, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert "figure format" in _usage_error(capsys, ["runs", "plot", str(run.path), "-o", str(tmp_path / "f.xyz")])
    assert "no folder" in _usage_error(capsys, ["runs", "plot", str(run.path), "-o", str(tmp_path / "a" / "f.png")])
    assert "--window" in _usage_error(capsys, ["runs", "plot", str(run.path), "-o", str(tmp_path / "f.png"),
                                               "--window", "0"])
    empty = make_empty_run(tmp_path)
    assert "no finished evaluations" in _usage_error(capsys, ["runs", "plot", str(empty.path), "-o",
                                                              str(tmp_path / "f.png")])
    assert not (tmp_path / "f.png").exists()


def test_search_curves(run: BuiltRun) -> None:
    with Store.for_run(run.path, create=False) as store:
        job = store.get_job(NAME)
        assert job is not None
        curves = search_curves(store.best_so_far(job.id), window=2)
    nan = np.nan
    np.testing.assert_array_equal(curves.order, [1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(curves.evaluations, [1, 2, 3, 4, 4, 5, 5])  # the x axis: a cache hit runs nothing
    np.testing.assert_array_equal(curves.fitness, [1.0, 0.8, 1.3, nan, 1.3, 1.1, nan])
    np.testing.assert_array_equal(curves.best, [1.0, 1.0, 1.3, 1.3, 1.3, 1.3, 1.3])
    np.testing.assert_allclose(curves.median, [1.0, 0.9, 1.05, 1.3, 1.3, 1.2, 1.1])
    np.testing.assert_array_equal(curves.failed, [0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(curves.cached, [0, 0, 0, 0, 1, 0, 1])
    np.testing.assert_allclose(curves.hit_rate, [0, 0, 0, 0, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(curves.cumulative_hit_rate, [0, 0, 0, 0, 1 / 5, 1 / 6, 2 / 7])


def test_rolling_statistics_against_a_loop() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=20_000)  # more than one block of the chunked median
    values[rng.random(values.size) < 0.3] = np.nan
    window = 7
    for i in (0, 3, 6, 8191, 8192, 8197, 19_999):
        piece = values[max(0, i - window + 1):i + 1]
        expected = np.nanmedian(piece) if np.isfinite(piece).any() else np.nan
        np.testing.assert_equal(rolling_nanmedian(values, window)[i], expected)
    flags = (rng.random(50) < 0.4).astype(float)
    np.testing.assert_allclose(rolling_mean(flags, 5), [flags[max(0, i - 4):i + 1].mean() for i in range(50)])


# -- bad run folders, for every command ---------------------------------------------------------------------------


def _commands(run: str, tmp_path: Path) -> list[list[str]]:
    return [["runs", "show", run], ["runs", "top", run], ["runs", "lineage", run, "1"],
            ["runs", "plot", run, "-o", str(tmp_path / "f.png")]]


def test_every_command_refuses_a_missing_folder_or_one_without_results(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bare").mkdir()
    for argv in _commands(str(tmp_path / "nowhere"), tmp_path):
        assert "no run folder" in _usage_error(capsys, argv)
    for argv in _commands(str(tmp_path / "bare"), tmp_path):
        assert "has no results.db" in _usage_error(capsys, argv)


def test_every_command_refuses_a_corrupt_or_foreign_database_untouched(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    garbage, foreign = make_garbage(tmp_path), make_foreign(tmp_path)
    before = garbage.read_bytes(), foreign.read_bytes()
    for argv in _commands(str(garbage.parent), tmp_path):
        assert "not a SQLite database" in _usage_error(capsys, argv)
    for argv in _commands(str(foreign.parent), tmp_path):
        assert "not an autodisco results database" in _usage_error(capsys, argv)
    assert (garbage.read_bytes(), foreign.read_bytes()) == before
    assert sorted(p.name for p in garbage.parent.iterdir()) == ["results.db"]  # no journal or WAL file left
    assert sorted(p.name for p in foreign.parent.iterdir()) == ["results.db"]
