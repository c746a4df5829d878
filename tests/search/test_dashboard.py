"""``autodisco dashboard``: the JSON endpoints and pages through Flask's test client, the validation funnel and the
per-epoch curves read back from a database, and the command itself (its errors, and a real server on a free port).

The runs are written directly with the Store API (``_cli_runs`` describes "lion-hunt"); the browser test is
``test_dashboard_browser.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CI") != "true":  # the test extra installs Flask; CI must not skip
    pytest.importorskip("flask")

from _cli_runs import NAME, BuiltRun, make_empty_run, make_garbage, make_run  # noqa: E402
from programs import library  # noqa: E402
from search.cli import main  # noqa: E402
from search.cli._ranking import simplified_program  # noqa: E402
from search.dashboard import Source, create_app  # noqa: E402
from search.funnel import UNSEEN, Funnel, FunnelConfig, evaluation_key, unseen_key, unseen_tasks  # noqa: E402
from search.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    make_run(tmp_path)
    make_empty_run(tmp_path)
    make_garbage(tmp_path)
    return tmp_path


@pytest.fixture()
def client(root: Path) -> Any:
    return create_app(Source(root)).test_client()


def _get(client: Any, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == status, response.data[:300]
    return json.loads(response.data)  # strict JSON: the parser would choke on NaN


# -- runs list ----------------------------------------------------------------------------------------------------


def test_runs_list_has_every_job_and_names_the_unreadable_folder(client: Any) -> None:
    runs = _get(client, "/api/runs")["runs"]
    by_name = {r["name"]: r for r in runs}
    assert set(by_name) == {NAME, "fresh", "garbage"}
    hunt = by_name[NAME]
    assert (hunt["folder"], hunt["kind"], hunt["method"], hunt["status"]) == (NAME, "optimizer", "search", "finished")
    assert (hunt["evaluations"], hunt["failed"], hunt["cache_hits"], hunt["best_fitness"]) == (5, 1, 2, 1.3)
    assert hunt["progress"]["done"] == 5 and hunt["error"] is None
    assert hunt["best_measure"] == "adamw_ratio"  # the page shows it in the "best ×AdamW" column, not with accuracies
    assert "not a SQLite database" in by_name["garbage"]["error"]
    assert by_name["fresh"]["best_fitness"] is None and by_name["fresh"]["evaluations"] == 0


def test_a_missing_root_is_an_error_on_the_page_not_a_crash(tmp_path: Path) -> None:
    client = create_app(Source(tmp_path / "nowhere")).test_client()
    assert "no folder" in _get(client, "/api/runs", 404)["error"]
    page = client.get("/")
    assert page.status_code == 200 and b'id="runs"' in page.data


def test_jobs_of_a_database_url_are_listed_and_shown(root: Path) -> None:
    client = create_app(Source(db=f"sqlite:///{root / NAME / 'results.db'}")).test_client()
    runs = _get(client, "/api/runs")["runs"]
    assert [(r["name"], r["folder"]) for r in runs] == [(NAME, None)]
    assert _get(client, f"/api/run?job={NAME}")["report"]["summary"]["best_fitness"] == 1.3
    assert "no job 'other'" in _get(client, "/api/run?job=other", 404)["error"]


def test_a_database_url_on_every_shared_backend_is_shown_live(shared_url: str) -> None:
    with Store(shared_url) as store:
        job = store.create_job("pg-hunt", kind="optimizer", config={"tasks": ["mnist1d-mlp"]}, seed=0)
        cid = store.add_candidate(job.id, kind="optimizer", text=library.get("adamw").to_text(), hash="a" * 32)
        store.finish_evaluation(store.add_evaluation(job.id, cid, key="c0", task="mnist1d-mlp", seed=0),
                                status="ok", fitness=1.0)
        client = create_app(Source(db=shared_url)).test_client()
        assert [r["name"] for r in _get(client, "/api/runs")["runs"]] == ["pg-hunt"]
        assert _get(client, "/api/run?job=pg-hunt")["report"]["summary"]["best_fitness"] == 1.0
        cid = store.add_candidate(job.id, kind="optimizer", text=library.get("lion").to_text(), hash="b" * 32,
                                  parent_ids=[cid], birth=1)
        store.finish_evaluation(store.add_evaluation(job.id, cid, key="c1", task="mnist1d-mlp", seed=0),
                                status="ok", fitness=1.5)
        report = _get(client, "/api/run?job=pg-hunt")["report"]
    assert report["summary"]["best_fitness"] == 1.5 and report["curve"]["best"] == [1.0, 1.5]
    assert report["top"][0]["diff"].startswith("--- candidate")


# -- one run ------------------------------------------------------------------------------------------------------


def test_run_report_has_the_curve_failures_and_top_with_diffs(client: Any) -> None:
    report = _get(client, f"/api/run?folder={NAME}")["report"]
    assert report["summary"]["name"] == NAME and report["epochs"] is None and report["funnel"] is None
    curve = report["curve"]
    assert curve["order"] == [1, 2, 3, 4, 5, 6, 7]
    assert curve["fitness"] == [1.0, 0.8, 1.3, None, 1.3, 1.1, None]
    assert curve["best"] == [1.0, 1.0, 1.3, 1.3, 1.3, 1.3, 1.3]
    assert curve["median"][:3] == [1.0, 0.9, 1.0]
    assert curve["cumulative_hit_rate"][-1] == pytest.approx(2 / 7) and (curve["failed"], curve["cached"]) == (1, 2)
    assert report["failures"] == [{"reason": "nan loss at step 12", "count": 1, "example": "nan loss at step 12"}]
    top = report["top"]
    assert [r["fitness"] for r in top] == [1.3, 1.1, 1.0, 0.8]
    lion, adamw = top[0], top[2]
    assert adamw["parent"] is None and adamw["diff"] == ""
    assert lion["parent"] == lion["parent_ids"][0]
    assert lion["diff"].startswith(f"--- candidate {lion['parent']} (parent)\n+++ candidate {lion['id']}")
    parent = next(r for r in top if r["id"] == lion["parent"]) if lion["parent"] in {r["id"] for r in top} else None
    changed = lion["diff"].splitlines()[3:]  # after the two file lines and the hunk header
    added = [line[1:] for line in changed if line.startswith("+")]
    removed = [line[1:] for line in changed if line.startswith("-")]
    assert added and removed and set(added) <= set(lion["program"].splitlines())
    assert parent is not None and set(removed) <= set(parent["program"].splitlines())
    assert not set(added) & set(removed)


def test_lineage_by_id_and_hash_prefix(client: Any, root: Path) -> None:
    found = _get(client, f"/api/lineage?folder={NAME}&candidate=5c5c22")["lineage"]
    rows = found["rows"]
    assert [(r["depth"], r["birth"]) for r in rows] == [(0, 5), (1, 2), (1, 1), (2, 0)]
    assert rows[0]["diff"].startswith(f"--- candidate {rows[0]['parent_ids'][0]} (parent)")
    assert rows[-1]["diff"] == ""  # the warm start has no parent
    again = _get(client, f"/api/lineage?folder={NAME}&candidate={rows[1]['id']}")["lineage"]
    assert again["candidate"] == rows[1]["id"]
    assert "no candidate" in _get(client, f"/api/lineage?folder={NAME}&candidate=zz", 404)["error"]


@pytest.mark.parametrize("folder, message", [
    ("garbage", "not a SQLite database"), ("nowhere", "no run folder 'nowhere'"),
    ("..", "no run folder '..'"), ("../" + NAME, "no run folder"), ("", "no run folder ''"),
])
def test_a_bad_run_folder_is_one_line_on_the_page(client: Any, folder: str, message: str) -> None:
    assert message in _get(client, f"/api/run?folder={folder}", 404)["error"]
    page = client.get(f"/run?folder={folder}")
    assert page.status_code == 404
    assert message.replace("'", "&#39;").encode() in page.data  # escaped, in the page's error box
    assert b'id="error" class="error">' in page.data


def test_a_damaged_row_is_an_error_not_a_crash(root: Path, client: Any) -> None:
    with sqlite3.connect(root / NAME / "results.db") as db:
        db.execute("UPDATE candidates SET parent_ids = '\"x\"' WHERE birth = 2")
    error = _get(client, f"/api/run?folder={NAME}", 404)["error"]
    assert "damaged value" in error and "candidates.parent_ids" in error


def test_untrusted_text_is_escaped_in_pages(tmp_path: Path) -> None:
    name = "<script>alert(1)</script>"
    with Store.for_run(tmp_path / "evil") as store:
        store.create_job(name, kind="optimizer", config={}, seed=0)
    client = create_app(Source(tmp_path)).test_client()
    page = client.get(f"/run?folder=evil&job={name}")
    assert page.status_code == 200 and b"<script>alert" not in page.data and b"&lt;script&gt;" in page.data
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'self': no inline scripts
    assert _get(client, "/api/runs")["runs"][0]["name"] == name  # JSON carries it as data


def test_requests_for_another_host_name_are_refused(root: Path) -> None:
    client = create_app(Source(root), trusted_hosts=["127.0.0.1", "localhost"]).test_client()
    assert client.get("/api/runs", headers={"Host": "127.0.0.1:8050"}).status_code == 200
    assert client.get("/api/runs", headers={"Host": "evil.example:8050"}).status_code == 400  # DNS rebinding


def test_the_dashboard_only_reads(root: Path, client: Any) -> None:
    db = root / NAME / "results.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for url in ("/api/runs", f"/api/run?folder={NAME}", f"/api/lineage?folder={NAME}&candidate=1", "/",
                f"/run?folder={NAME}"):
        assert client.get(url).status_code == 200
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_pages_and_scripts_are_served_locally(client: Any) -> None:
    page = client.get(f"/run?folder={NAME}").data.decode()
    assert 'src="/plotly.min.js"' in page and "http" not in page.split("<body")[0]  # nothing from the internet
    script = client.get("/plotly.min.js")
    assert script.status_code == 200 and b"plotly" in script.data[:2000].lower() and len(script.data) > 1_000_000
    assert client.get("/static/dashboard.js").status_code == 200


def test_new_results_show_on_the_next_poll(root: Path, client: Any) -> None:
    assert _get(client, f"/api/run?folder={NAME}")["report"]["summary"]["best_fitness"] == 1.3
    with Store.for_run(root / NAME, create=False) as store:
        job = store.get_job(NAME)
        assert job is not None
        cid = store.add_candidate(job.id, kind="optimizer", text=library.get("lion").to_text(), hash="f" * 32,
                                  birth=8)
        store.finish_evaluation(store.add_evaluation(job.id, cid, key="new", task="mnist1d-mlp", seed=3),
                                status="ok", fitness=2.5)
    report = _get(client, f"/api/run?folder={NAME}")["report"]
    assert report["summary"]["best_fitness"] == 2.5 and report["curve"]["best"][-1] == 2.5
    assert report["top"][0]["id"] == cid


# -- validation funnel --------------------------------------------------------------------------------------------

TASK = "mnist1d-mlp"  # accuracy: a stage's ratio is the tuned fitness over AdamW's


HALF_WAY = [("adamw", "10x", 0.5), ("lion", "10x", 0.6), ("signsgd", "10x", 0.4), ("adamw", "100x", 0.7)]


def _funnel_run(folder: Path, settings: dict[str, Any] | None = None,
                sweeps: list[tuple[str, str, float | None]] = HALF_WAY) -> dict[str, int]:
    """A finished proxy search (AdamW, lion, signsgd, momentum) and its validation with the stored ``settings``
    (default: stages 10x,100x as recorded before the unseen stage existed) and these scale ``sweeps`` recorded (default:
    half-way through stage 100x)."""
    from search.kinds import OptimizerKind

    ids = {}
    with Store.for_run(folder) as store:
        job = store.create_job(folder.name, kind="optimizer", config={"tasks": [TASK]}, seed=0)
        for birth, (name, proxy) in enumerate([("adamw", 1.0), ("lion", 1.3), ("signsgd", 1.1), ("momentum", 0.8)]):
            program = library.get(name)
            digest = OptimizerKind().functional_hash(program) if name == "adamw" else f"{birth:032x}"
            ids[name] = store.add_candidate(job.id, kind="optimizer", text=program.to_text(), hash=digest,
                                            birth=birth)
            store.finish_evaluation(store.add_evaluation(job.id, ids[name], key=f"c{birth}", task=TASK, seed=0),
                                    status="ok", fitness=proxy)
        config = {"target": folder.name, "k": 3, "trials": 1, "stages": ["10x", "100x"], "seed": None}
        store.create_job(f"{folder.name}/validate", kind="optimizer", seed=0, config={**config, **(settings or {})})
        for name, stage, fitness in sweeps:
            _sweep(store, job.id, ids[name], stage, fitness)
    return ids


def _sweep(store: Store, job_id: int, candidate: int, stage: str, fitness: float | None) -> None:
    task = f"{TASK}@{stage}"
    evaluation = store.add_evaluation(job_id, candidate, key=evaluation_key(candidate, task), task=task, seed=0)
    store.finish_evaluation(evaluation, status="ok" if fitness is not None else "failed", fitness=fitness,
                            error=None if fitness is not None else "diverged",
                            metrics={"stage": stage, "lr": 0.01, "n_trials": 1})


def test_the_funnel_table_fills_in_as_sweeps_are_recorded_and_agrees_with_the_funnel(tmp_path: Path) -> None:
    ids = _funnel_run(tmp_path / "hunt")
    client = create_app(Source(tmp_path)).test_client()
    funnel = _get(client, "/api/run?folder=hunt")["report"]["funnel"]
    assert (funnel["job"], funnel["stages"], funnel["baseline_id"]) == ("hunt/validate", ["10x", "100x"], ids["adamw"])
    # a validation recorded before the unseen stage existed (no "unseen", no "seeds"): the scale stages only
    assert funnel["columns"] == [{"key": "10x", "title": "10x vs AdamW"}, {"key": "100x", "title": "100x vs AdamW"}]
    assert (funnel["unseen"], funnel["seeds"], funnel["interval"]) == ([], 1, "")
    rows = {r["id"]: (r["cells"], r["verdict"]) for r in funnel["rows"]}
    assert rows == {ids["lion"]: ({"10x": "1.2000", "100x": "pending"}, "pending"),
                    ids["signsgd"]: ({"10x": "0.8000", "100x": "-"}, "stopped at 10x"),
                    ids["adamw"]: ({"10x": "1.0000", "100x": "-"}, "stopped at 10x")}
    assert [(b["stage"], b["fitness"]) for b in funnel["baseline"]] == [("10x", 0.5), ("100x", 0.7)]
    # the validation's own page shows the same table
    assert _get(client, "/api/run?folder=hunt&job=hunt/validate")["report"]["funnel"]["rows"] == funnel["rows"]

    with Store.for_run(tmp_path / "hunt", create=False) as store:
        _sweep(store, store.get_job("hunt").id, ids["lion"], "100x", 0.77)
    funnel = _get(client, "/api/run?folder=hunt")["report"]["funnel"]
    lion = next(r for r in funnel["rows"] if r["id"] == ids["lion"])
    assert (lion["cells"], lion["verdict"]) == ({"10x": "1.2000", "100x": "1.1000"}, "passed")

    with Store.for_run(tmp_path / "hunt", create=False) as store:  # the funnel itself, reading the sweeps back
        def no_executor() -> Any:
            raise AssertionError("every sweep is recorded")

        result = Funnel(store, store.get_job("hunt"), FunnelConfig(k=3, trials=1), no_executor).run()
    assert {c.candidate_id: c.verdict for c in result.candidates} == {
        r["id"]: "passed" if r["verdict"] == "passed" else "stopped" for r in funnel["rows"]}
    assert {c.candidate_id: [f"{s.ratio:.4f}" for s in c.stages] for c in result.candidates} == {
        r["id"]: [v for v in r["cells"].values() if v != "-"] for r in funnel["rows"]}


UNSEEN_TASKS = ["quadratic", "markov-gru"]  # quadratic's fitness is minus a loss, markov-gru's an accuracy


def _unseen_sweep(store: Store, job_id: int, candidate: int, task: str, seed: int, fitness: float | None) -> None:
    """One recorded unseen-stage sweep, as ``search.funnel.Funnel._record`` writes it."""
    evaluation = store.add_evaluation(job_id, candidate, key=unseen_key(candidate, task, seed), task=task, seed=seed)
    store.finish_evaluation(evaluation, status="ok" if fitness is not None else "failed", fitness=fitness,
                            error=None if fitness is not None else "diverged",
                            metrics={"stage": UNSEEN, "lr": 0.01, "n_trials": 1})


def _record_unseen(folder: Path, sweeps: list[tuple[int, str, int, float | None]]) -> None:
    with Store.for_run(folder, create=False) as store:
        job = store.get_job(folder.name)
        assert job is not None
        for candidate, task, seed, fitness in sweeps:
            _unseen_sweep(store, job.id, candidate, task, seed, fitness)


def _unseen_cells(funnel: dict[str, Any]) -> dict[int, tuple[list[str], str]]:
    keys = [c["key"] for c in funnel["columns"]]
    return {r["id"]: ([r["cells"][k] for k in keys], r["verdict"]) for r in funnel["rows"]}


def test_the_unseen_stage_fills_in_task_by_task_and_agrees_with_the_funnel(tmp_path: Path) -> None:
    folder = tmp_path / "blind"
    ids = _funnel_run(folder, {"stages": ["10x", UNSEEN], "unseen": UNSEEN_TASKS, "seeds": 2},
                      [("adamw", "10x", 0.5), ("lion", "10x", 0.6), ("signsgd", "10x", 0.55)])
    lion, signsgd, adamw = ids["lion"], ids["signsgd"], ids["adamw"]
    client = create_app(Source(tmp_path)).test_client()
    funnel = _get(client, "/api/run?folder=blind")["report"]["funnel"]
    assert (funnel["stages"], funnel["unseen"], funnel["seeds"]) == (["10x", UNSEEN], UNSEEN_TASKS, 2)
    assert "Student's t" in funnel["interval"]
    assert funnel["columns"] == [{"key": "10x", "title": "10x vs AdamW"},
                                 {"key": "unseen:quadratic", "title": "quadratic (unseen)"},
                                 {"key": "unseen:markov-gru", "title": "markov-gru (unseen)"},
                                 {"key": UNSEEN, "title": "unseen wins"}]
    # lion and signSGD beat AdamW at 10x and wait for their unseen sweeps; AdamW (1.0) never reaches the stage
    assert _unseen_cells(funnel) == {lion: (["1.2000", "pending", "pending", "pending"], "pending"),
                                     signsgd: (["1.1000", "pending", "pending", "pending"], "pending"),
                                     adamw: (["1.0000", "-", "-", "-"], "stopped at 10x")}

    # AdamW's sweeps, lion's on quadratic at both seeds, signSGD's at one: only lion's quadratic cell is complete
    _record_unseen(folder, [(adamw, "quadratic", 0, -0.02), (adamw, "quadratic", 1, -0.04),
                            (adamw, "markov-gru", 0, 0.5), (adamw, "markov-gru", 1, 0.6),
                            (lion, "quadratic", 0, -0.01), (lion, "quadratic", 1, -0.04),
                            (signsgd, "quadratic", 0, -0.04)])
    funnel = _get(client, "/api/run?folder=blind")["report"]["funnel"]
    # ratios 2.0 and 1.0: mean 1.5, 95 % t-interval 1.5 ± t(0.975, 1) · 0.7071 / √2 = 1.5 ± 12.7062 · 0.5
    assert _unseen_cells(funnel)[lion] == (["1.2000", "1.500 [-4.853, 7.853]", "pending", "pending"], "pending")
    assert _unseen_cells(funnel)[signsgd] == (["1.1000", "pending", "pending", "pending"], "pending")
    assert [(b["stage"], b["task"], b["seed"]) for b in funnel["baseline"]] == [
        ("10x", f"{TASK}@10x", None), (UNSEEN, "quadratic", 0), (UNSEEN, "quadratic", 1), (UNSEEN, "markov-gru", 0),
        (UNSEEN, "markov-gru", 1)]

    _record_unseen(folder, [(lion, "markov-gru", 0, 0.55), (lion, "markov-gru", 1, 0.66),
                            (signsgd, "quadratic", 1, -0.08), (signsgd, "markov-gru", 0, 0.6),
                            (signsgd, "markov-gru", 1, None)])
    funnel = _get(client, "/api/run?folder=blind")["report"]["funnel"]
    cells = _unseen_cells(funnel)
    assert cells[lion] == (["1.2000", "1.500 [-4.853, 7.853]", "1.100 [1.100, 1.100]", "2 of 2"], "passed")
    assert cells[signsgd] == (["1.1000", "0.500 [0.500, 0.500]", "failed", "0 of 2"], "failed at unseen")
    assert _get(client, "/api/run?folder=blind&job=blind/validate")["report"]["funnel"]["rows"] == funnel["rows"]

    with Store.for_run(folder, create=False) as store:  # the funnel itself, reading the same sweeps back
        def no_executor() -> Any:
            raise AssertionError("every sweep is recorded")

        config = FunnelConfig(k=3, trials=1, stages=("10x", UNSEEN), unseen=tuple(UNSEEN_TASKS), seeds=2)
        result = Funnel(store, store.get_job("blind"), config, no_executor).run()
    for candidate in result.candidates:
        row = next(r for r in funnel["rows"] if r["id"] == candidate.candidate_id)
        verdict = "passed" if candidate.verdict == "passed" else f"{candidate.verdict} at {candidate.stages[-1].stage}"
        assert row["verdict"] == verdict
        assert row["cells"]["10x"] == f"{candidate.stages[0].ratio:.4f}"
        if len(candidate.stages) == 2:
            unseen = candidate.stages[1]
            assert row["cells"][UNSEEN] == f"{unseen.wins} of {len(unseen.tasks)}"
            for task in unseen.tasks:
                shown = "failed" if task.ratio is None else f"{task.ratio:.3f} [{task.low:.3f}, {task.high:.3f}]"
                assert row["cells"][f"{UNSEEN}:{task.task}"] == shown


def test_with_only_the_unseen_stage_every_entrant_enters_it(tmp_path: Path) -> None:
    """Stored without its unseen tasks resolved: the funnel's default, every built-in task the search did not use."""
    ids = _funnel_run(tmp_path / "hunt", {"stages": [UNSEEN], "seeds": 1}, [])
    _record_unseen(tmp_path / "hunt", [(ids["adamw"], "quadratic", 0, -0.02), (ids["lion"], "quadratic", 0, -0.01)])
    funnel = _get(create_app(Source(tmp_path)).test_client(), "/api/run?folder=hunt")["report"]["funnel"]
    tasks = list(unseen_tasks([TASK]))
    assert "quadratic" in tasks and TASK not in tasks and funnel["unseen"] == tasks
    assert [c["key"] for c in funnel["columns"]] == [f"{UNSEEN}:{t}" for t in tasks] + [UNSEEN]
    rows = {r["id"]: r for r in funnel["rows"]}
    assert set(rows) == {ids["lion"], ids["signsgd"], ids["adamw"]}
    assert rows[ids["lion"]]["cells"]["unseen:quadratic"] == "2.0000"  # one seed: no interval
    assert all(r["cells"][UNSEEN] == "pending" and r["verdict"] == "pending" for r in rows.values())


def test_an_unseen_stage_without_tasks_left_is_dropped_as_the_funnel_drops_it(tmp_path: Path) -> None:
    _funnel_run(tmp_path / "hunt", {"stages": ["10x", UNSEEN], "unseen": [], "seeds": 3}, [])
    funnel = _get(create_app(Source(tmp_path)).test_client(), "/api/run?folder=hunt")["report"]["funnel"]
    assert funnel["stages"] == ["10x"] and [c["key"] for c in funnel["columns"]] == ["10x"]


@pytest.mark.parametrize("settings", [{"unseen": "quadratic"}, {"unseen": ["quadratic@10x"]}, {"seeds": 0},
                                      {"seeds": "3"}])
def test_damaged_unseen_settings_are_one_line_not_a_crash(tmp_path: Path, settings: dict[str, Any]) -> None:
    _funnel_run(tmp_path / "hunt", {"stages": ["10x", UNSEEN], "unseen": ["quadratic"], "seeds": 2, **settings}, [])
    funnel = _get(create_app(Source(tmp_path)).test_client(), "/api/run?folder=hunt")["report"]["funnel"]
    assert funnel["error"] == "unreadable validation settings"


def test_sweeps_the_dashboard_cannot_judge_are_an_error_of_the_funnel_not_of_the_page(tmp_path: Path) -> None:
    ids = _funnel_run(tmp_path / "hunt", {"stages": [UNSEEN], "unseen": ["quadratic"], "seeds": 1}, [])
    _record_unseen(tmp_path / "hunt", [(ids["adamw"], "quadratic", 0, 0.5), (ids["lion"], "quadratic", 0, 0.7)])
    report = _get(create_app(Source(tmp_path)).test_client(), "/api/run?folder=hunt")["report"]
    assert "a -loss fitness must be negative" in report["funnel"]["error"]  # quadratic's fitness is minus a loss
    assert report["summary"]["best_fitness"] == 1.3  # the rest of the page is there


# -- Pareto front of nsga2 runs -----------------------------------------------------------------------------------

DEAD = "    junk = sign(g)\n"  # a statement nothing reads: simplified away


def _nsga2_run(folder: Path, strategy: str = "nsga2") -> dict[str, int]:
    """An optimizer search: AdamW (2 buffers), Lion with a dead statement and momentum (1), SGD and signSGD (0), a
    text that does not parse, and a failed evaluation."""
    ids = {}
    entries = [("adamw", 1.4), ("lion", 1.3), ("momentum", 1.1), ("sgd", 0.9), ("signsgd", 0.8), ("broken", 2.0),
               ("rmsprop", None)]
    with Store.for_run(folder) as store:
        job = store.create_job(folder.name, kind="optimizer", config={"tasks": [TASK], "strategy": strategy}, seed=0)
        for birth, (name, fitness) in enumerate(entries):
            text = "def train(w, g:\n" if name == "broken" else library.get(name).to_text()
            if name == "lion":
                head, rest = text.split("\n", 1)
                text = f"{head}\n{DEAD}{rest}"
            ids[name] = store.add_candidate(job.id, kind="optimizer", text=text, hash=f"{birth:032x}", birth=birth)
            evaluation = store.add_evaluation(job.id, ids[name], key=f"c{birth}", task=TASK, seed=0)
            store.finish_evaluation(evaluation, status="ok" if fitness is not None else "failed", fitness=fitness,
                                    error=None if fitness is not None else "nan loss")
    return ids


def test_an_nsga2_run_shows_its_pareto_front_as_runs_top_does(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    ids = _nsga2_run(tmp_path / "front")
    pareto = _get(create_app(Source(tmp_path)).test_client(), "/api/run?folder=front")["report"]["pareto"]
    assert [(r["rank"], r["id"], r["fitness"], r["buffers"]) for r in pareto["front"]] == [
        (1, ids["adamw"], 1.4, 2), (2, ids["lion"], 1.3, 1), (3, ids["sgd"], 0.9, 0)]
    lion = pareto["front"][1]
    plain = simplified_program(library.get("lion").to_text())  # the dead statement's removal is the only change
    assert plain is not None and (lion["program"], lion["removed"]) == (plain["program"], 1)
    assert (pareto["task"], pareto["candidates"], pareto["unparsed"]) == (TASK, 6, 1)  # the failed one is not ranked
    assert pareto["points"]["every"] == 1
    points = sorted(zip(pareto["points"]["id"], pareto["points"]["fitness"], pareto["points"]["buffers"]))
    assert points == sorted([(ids["adamw"], 1.4, 2), (ids["lion"], 1.3, 1), (ids["momentum"], 1.1, 1),
                             (ids["sgd"], 0.9, 0), (ids["signsgd"], 0.8, 0)])
    capsys.readouterr()
    assert main(["runs", "top", str(tmp_path / "front"), "--json"]) == 0  # the CLI's front, on the same run
    shown = json.loads(capsys.readouterr().out)
    assert [(r["rank"], r["id"]) for r in shown] == [(r["rank"], r["id"]) for r in pareto["front"]]


def test_a_long_run_s_scatter_is_thinned_by_rank_but_its_front_is_whole(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from search.dashboard import _report

    ids = _nsga2_run(tmp_path / "front")
    monkeypatch.setattr(_report, "PARETO_POINTS", 2)
    pareto = _get(create_app(Source(tmp_path)).test_client(), "/api/run?folder=front")["report"]["pareto"]
    assert pareto["points"]["every"] == 3  # 5 drawn (ranks 2-6; rank 1 does not parse): ranks 2 and 5 shown
    assert pareto["points"]["id"] == [ids["adamw"], ids["sgd"]]
    assert [r["id"] for r in pareto["front"]] == [ids["adamw"], ids["lion"], ids["sgd"]]


def test_other_runs_have_no_pareto_front(tmp_path: Path) -> None:
    _nsga2_run(tmp_path / "plain", strategy="evolution")
    make_darts_run(tmp_path)
    client = create_app(Source(tmp_path)).test_client()
    assert _get(client, "/api/run?folder=plain")["report"]["pareto"] is None
    assert _get(client, "/api/run?folder=darts")["report"]["pareto"] is None


def test_polls_simplify_each_program_text_once_and_follow_new_results(tmp_path: Path) -> None:
    from search.dashboard._report import cached_buffers

    ids = _nsga2_run(tmp_path / "front")
    client = create_app(Source(tmp_path)).test_client()
    cached_buffers.cache_clear()
    first = _get(client, "/api/run?folder=front")["report"]["pareto"]
    assert cached_buffers.cache_info().misses == 6
    assert _get(client, "/api/run?folder=front")["report"]["pareto"] == first
    assert cached_buffers.cache_info().misses == 6  # an unchanged run: nothing parsed again
    with Store.for_run(tmp_path / "front", create=False) as store:  # a new result joins the front
        job = store.get_job("front")
        assert job is not None
        head, rest = library.get("signsgd").to_text().split("\n", 1)
        text = f"{head}\n{DEAD}{rest}"  # a text not seen before
        cid = store.add_candidate(job.id, kind="optimizer", text=text, hash="f" * 32, birth=9)
        store.finish_evaluation(store.add_evaluation(job.id, cid, key="new", task=TASK, seed=0), status="ok",
                                fitness=1.0)
    pareto = _get(client, "/api/run?folder=front")["report"]["pareto"]
    assert [(r["id"], r["buffers"]) for r in pareto["front"]] == [(ids["adamw"], 2), (ids["lion"], 1), (cid, 0)]
    assert len(pareto["points"]["id"]) == 6
    info = cached_buffers.cache_info()
    assert (info.misses, info.hits) == (7, 6)  # only the new text was simplified


# -- NAS epochs ---------------------------------------------------------------------------------------------------


def make_darts_run(root: Path, name: str = "darts") -> None:
    """A DARTS job of three epochs: per-epoch figures, α of both cells, the genotype (changing at epoch 3)."""
    genotypes = ["Genotype(normal=[('sep_conv_3x3', 0)])", "Genotype(normal=[('sep_conv_3x3', 0)])",
                 "Genotype(normal=[('skip_connect', 1)])"]
    config = {"method": "darts", "tasks": ["darts:digits"], "search": {"net": {"primitives": ["none", "skip"]}}}
    with Store.for_run(root / name) as store:
        job = store.create_job(name, kind="architecture", config=config, seed=0)
        for epoch, genotype in enumerate(genotypes, start=1):
            cid = store.add_candidate(job.id, kind="architecture", text=genotype, hash=f"{epoch:032x}",
                                      birth=epoch - 1)
            metrics = {"epoch": epoch, "lr": 0.025 / epoch, "train_loss": 2.0 / epoch, "val_accuracy": 0.3 * epoch,
                       "alpha_normal": [[0.0, math.log(epoch)], [1.0, 1.0]], "alpha_reduce": [[0.0, 0.0], [5, 5]],
                       "genotype": genotype, "seconds": 1.5, "flag": True}
            store.finish_evaluation(store.add_evaluation(job.id, cid, key=f"epoch-{epoch}", task="darts:digits",
                                                         seed=0), status="ok", fitness=0.3 * epoch, metrics=metrics)


def test_darts_epochs_give_per_epoch_curves_alphas_and_genotypes(tmp_path: Path) -> None:
    make_darts_run(tmp_path)
    report = _get(create_app(Source(tmp_path)).test_client(), "/api/run?folder=darts")["report"]
    epochs = report["epochs"]
    assert report["curve"] is None  # epochs are not drawn as if they were a search
    (series,) = epochs["series"]
    assert series["epochs"] == [1, 2, 3] and set(series["metrics"]) == {"lr", "train_loss", "val_accuracy", "seconds"}
    assert series["metrics"]["val_accuracy"] == pytest.approx([0.3, 0.6, 0.9])
    assert [(g["epoch"], g["changed"]) for g in epochs["genotypes"]] == [(1, False), (2, False), (3, True)]
    assert epochs["ranking"] is None
    alpha = epochs["alpha"]
    assert alpha["primitives"] == ["none", "skip"] and [a["epoch"] for a in alpha["epochs"]] == [1, 2, 3]
    assert sum(alpha["epochs"][2]["normal"], []) == pytest.approx([0.25, 0.75, 0.5, 0.5])  # softmax per edge
    assert sum(alpha["epochs"][0]["reduce"], []) == pytest.approx([0.5, 0.5, 0.5, 0.5])


def test_oneshot_history_and_ranking_come_from_the_checkpoint(tmp_path: Path) -> None:
    with Store.for_run(tmp_path / "oneshot") as store:
        job = store.create_job("oneshot", kind="architecture", seed=0,
                               config={"method": "oneshot", "tasks": ["inherited:digits"]})
        store.save_checkpoint(job.id, {"epoch": 2, "history": [
            {"epoch": 1, "lr": 0.1, "train_loss": 1.5, "train_accuracy": 0.4, "tau": float("nan")},
            {"epoch": 2, "lr": 0.05, "train_loss": 1.1, "train_accuracy": 0.6, "tau": 0.2}],
            "ranking": {"kendall_tau": 0.61, "spearman_rho": 0.8, "n": 12, "method": "x"}})
    epochs = _get(create_app(Source(tmp_path)).test_client(), "/api/run?folder=oneshot")["report"]["epochs"]
    assert epochs["series"][0]["metrics"]["train_accuracy"] == [0.4, 0.6]
    assert epochs["series"][0]["metrics"]["tau"] == [None, 0.2]  # NaN is left out, not sent as invalid JSON
    assert epochs["ranking"] == {"kendall_tau": 0.61, "spearman_rho": 0.8, "n": 12.0}


# -- the command --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--root", "{tmp}/nowhere"], "no folder"),
    (["--db", "sqlit:///x.db"], "sqlit"),
    (["--db", "sqlite:///{tmp}/garbage/results.db"], "not a SQLite database"),
    (["--port", "70000"], "--port must be between 0 and 65535"),
])
def test_dashboard_rejects_bad_input_with_one_line_and_status_2(root: Path, capsys: pytest.CaptureFixture[str],
                                                                 argv: list[str], message: str) -> None:
    assert main(["dashboard", *(a.replace("{tmp}", str(root)) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_port_in_use_is_one_line_and_status_2(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["dashboard", "--root", str(root), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err and err.count("\n") == 1


def test_the_command_serves_the_runs_on_a_free_local_port_and_help_does_not_import_flask(root: Path) -> None:
    script = ("import sys\nfrom search.cli._main import build_parser, main\nbuild_parser().format_help()\n"
              "print(sorted(m for m in ('flask', 'werkzeug', 'plotly') if m in sys.modules), flush=True)\n"
              "sys.exit(main(sys.argv[1:]))")
    process = subprocess.Popen([sys.executable, "-c", script, "dashboard", "--root", str(root), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "[]"  # building the parser imported no web framework
        line = process.stdout.readline()
        assert line.startswith(f"dashboard of runs under {root} at http://127.0.0.1:") and "read-only" in line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/runs", timeout=30) as response:
            assert {r["name"] for r in json.load(response)["runs"]} == {NAME, "fresh", "garbage"}
    finally:
        process.terminate()
        process.wait(timeout=30)
