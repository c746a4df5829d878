"""The dashboard in a real headless browser: Debian's chromium driven by selenium through chromium-driver (no browser
is downloaded). The page loads, shows a running job's new results without a reload while rows are written into the
database, a bad run folder shows an error on the page, the validation funnel's unseen columns fill in live, and an
nsga2 run shows its Pareto front.

Skipped where chromium, chromium-driver or selenium is missing, except under CI=true (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from _cli_runs import NAME, make_garbage, make_run
from programs import library
from search.store import Store
from test_dashboard import UNSEEN_TASKS, _funnel_run, _nsga2_run, _record_unseen, make_darts_run

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if os.environ.get("CI") != "true":
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs chromium and chromium-driver (apt-get install chromium chromium-driver)",
                    allow_module_level=True)
    pytest.importorskip("selenium")
    pytest.importorskip("flask")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from search.dashboard import Source, make_dashboard_server  # noqa: E402

LIVE = "live"
WAIT_S = 30


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A dashboard server (polling every 0.3 s) over a finished run, a running one and a garbage folder."""
    root = tmp_path_factory.mktemp("runs")
    make_run(root)
    make_garbage(root)
    make_darts_run(root)
    _nsga2_run(root / "front")
    _funnel_run(root / "blind", {"stages": ["10x", "unseen"], "unseen": UNSEEN_TASKS, "seeds": 2},
                [("adamw", "10x", 0.5), ("lion", "10x", 0.6), ("signsgd", "10x", 0.55)])
    with Store.for_run(root / LIVE) as store:
        job = store.create_job(LIVE, kind="optimizer", config={"tasks": ["mnist1d-mlp"]}, seed=0)
        _result(store, job.id, "adamw", 0, 1.0)
    server = make_dashboard_server(Source(root), poll_ms=300)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,2000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER or "/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


def _result(store: Store, job_id: int, program: str, birth: int, fitness: float) -> int:
    candidate = store.add_candidate(job_id, kind="optimizer", text=library.get(program).to_text(),
                                    hash=(f"{birth}a" * 16)[:32], birth=birth)
    evaluation = store.add_evaluation(job_id, candidate, key=f"c{candidate}", task="mnist1d-mlp", seed=0)
    store.finish_evaluation(evaluation, status="ok", fitness=fitness)
    return candidate


def _wait(browser: Any, condition: Callable[[Any], Any], what: str) -> Any:
    return WebDriverWait(browser, WAIT_S).until(condition, message=f"the page never showed {what}")


def _text(browser: Any, element_id: str) -> str:
    return browser.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : '';",
                                  element_id)


def _rows(browser: Any, table: str) -> list[str]:
    """The text of each body row of a table, read at one moment (the page redraws it as new data comes)."""
    script = "return [...document.querySelectorAll(arguments[0])].map(r => r.innerText.replace(/\\s+/g, ' ').trim());"
    return browser.execute_script(script, f"#{table} tbody tr")


def _script_errors(browser: Any) -> list[str]:
    """Errors of the page's scripts (failed requests of a missing run are expected, and not scripts' errors)."""
    return [e["message"] for e in browser.get_log("browser") if e.get("source") == "javascript"]


def test_the_runs_page_lists_runs_and_names_the_unreadable_folder(site: tuple[str, Path], browser: Any) -> None:
    url, _ = site
    browser.get(url)
    _wait(browser, lambda b: {NAME, LIVE, "darts"} <= {r.split()[0] for r in _rows(b, "runs")}, "the runs")
    row = next(r for r in _rows(browser, "runs") if r.startswith(NAME))
    assert "finished" in row and "1.3000" in row
    _wait(browser, lambda b: "garbage: unreadable" in _text(b, "unreadable"), "the unreadable folder")
    assert "not a SQLite database" in _text(browser, "unreadable")
    browser.execute_script(f"[...document.querySelectorAll('#runs a')].find(a => a.textContent === {NAME!r}).click();")
    _wait(browser, lambda b: _text(b, "best") == "1.3000", "the run's best fitness")
    assert _script_errors(browser) == []


def test_a_running_job_s_new_results_show_without_a_reload(site: tuple[str, Path], browser: Any) -> None:
    url, root = site
    browser.get(f"{url}run?folder={LIVE}")
    _wait(browser, lambda b: _text(b, "best") == "1.0000", "the first result")
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#curve .main-svg"), "the fitness plot")
    browser.execute_script("window.notReloaded = 42;")
    with Store.for_run(root / LIVE, create=False) as store:  # the job records results while the page is open
        job = store.get_job(LIVE)
        assert job is not None
        _result(store, job.id, "momentum", 1, 0.8)
        best = _result(store, job.id, "lion", 2, 2.5)
    _wait(browser, lambda b: _text(b, "best") == "2.5000", "the new best fitness")
    _wait(browser, lambda b: _text(b, "evaluations").startswith("3 "), "the new evaluation count")
    assert browser.execute_script("return window.notReloaded;") == 42
    points = browser.execute_script("return document.getElementById('curve').data[2].y;")  # best-so-far trace
    assert points == [1.0, 1.0, 2.5]
    _wait(browser, lambda b: _rows(b, "top")[:1] and _rows(b, "top")[0].split()[:4] == ["1", str(best), "2a2a2a2a2a",
                                                                                      "2.5000"], "the new top row")
    browser.execute_script("document.querySelector('#top tbody tr').click();")  # its program, diff and lineage
    _wait(browser, lambda b: _text(b, "candidate-title").startswith(f"Candidate {best}"), "the candidate")
    assert "def train" in _text(browser, "candidate-program")
    assert _text(browser, "candidate-diff") == "(no recorded parent)"
    assert len(_rows(browser, "lineage")) == 1
    assert _script_errors(browser) == []


def test_a_bad_run_folder_shows_an_error_on_the_page(site: tuple[str, Path], browser: Any) -> None:
    url, _ = site
    browser.get(f"{url}run?folder=garbage")
    box = _wait(browser, lambda b: b.find_element(By.ID, "error") if b.find_element(By.ID, "error").is_displayed()
                else None, "an error")
    assert "not a SQLite database" in box.text
    browser.get(f"{url}run?folder=nowhere")
    _wait(browser, lambda b: "no run folder 'nowhere'" in _text(b, "error"), "the missing folder's error")
    assert _script_errors(browser) == []


def test_a_nas_run_shows_its_epoch_curves_and_alphas(site: tuple[str, Path], browser: Any) -> None:
    url, _ = site
    browser.get(f"{url}run?folder=darts")
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#alpha-normal .main-svg"), "the α heatmap")
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#epochs-accuracy .main-svg"), "the accuracy curve")
    rows = _rows(browser, "genotypes")
    assert len(rows) == 3 and "changed" in rows[2] and "changed" not in rows[1]
    assert len(_rows(browser, "epoch-table")) == 3
    assert _script_errors(browser) == []


def _headers(browser: Any, table: str) -> list[str]:
    return browser.execute_script("return [...document.querySelectorAll(arguments[0])].map(h => h.innerText);",
                                  f"#{table} thead th")


def test_the_funnel_s_unseen_columns_fill_in_without_a_reload(site: tuple[str, Path], browser: Any) -> None:
    url, root = site
    browser.get(f"{url}run?folder=blind")
    _wait(browser, lambda b: "quadratic (unseen)" in _headers(b, "funnel"), "the unseen columns")
    assert _headers(browser, "funnel") == ["candidate", "hash", "proxy", "10x vs AdamW", "quadratic (unseen)",
                                           "markov-gru (unseen)", "unseen wins", "result"]
    with Store.for_run(root / "blind", create=False) as store:
        job = store.get_job("blind")
        assert job is not None
        ids = {c.text: c.id for c in store.list_candidates(job.id)}
    adamw, lion = ids[library.get("adamw").to_text()], ids[library.get("lion").to_text()]
    _wait(browser, lambda b: any(r.startswith(f"#{lion} ") and r.endswith("pending pending pending pending")
                                 for r in _rows(b, "funnel")), "lion waiting for its unseen sweeps")
    browser.execute_script("window.notReloaded = 7;")
    _record_unseen(root / "blind", [(adamw, "quadratic", 0, -0.02), (adamw, "quadratic", 1, -0.04),
                                    (adamw, "markov-gru", 0, 0.5), (adamw, "markov-gru", 1, 0.6),
                                    (lion, "quadratic", 0, -0.01), (lion, "quadratic", 1, -0.04),
                                    (lion, "markov-gru", 0, 0.55), (lion, "markov-gru", 1, 0.66)])
    _wait(browser, lambda b: any(r.startswith(f"#{lion} ") and "1.500 [-4.853, 7.853] 1.100 [1.100, 1.100] 2 of 2 "
                                 "passed" in r for r in _rows(b, "funnel")), "lion's unseen ratios, wins and verdict")
    assert browser.execute_script("return window.notReloaded;") == 7
    assert "Unseen tasks (never used by the search): quadratic, markov-gru; 2 seeds each" in _text(browser,
                                                                                                  "funnel-unseen")
    assert "unseen quadratic seed 1" in _text(browser, "funnel-baseline")
    assert _script_errors(browser) == []


def test_an_nsga2_run_shows_its_pareto_front(site: tuple[str, Path], browser: Any) -> None:
    url, _ = site
    browser.get(f"{url}run?folder=front")
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#pareto-plot .main-svg"), "the Pareto scatter")
    rows = _rows(browser, "pareto")
    assert [r.split()[0] for r in rows] == ["1", "2", "3"] and [r.split()[4] for r in rows] == ["2", "1", "0"]
    assert all("def train" in r for r in rows)  # each with its simplified program
    traces = browser.execute_script("return document.getElementById('pareto-plot').data.map(t => [t.name, t.x, t.y]);")
    assert traces[0][0] == "candidates" and sorted(traces[0][1]) == [0, 0, 1, 1, 2]
    assert traces[1] == ["Pareto front", [0, 1, 2], [0.9, 1.3, 1.4]]
    assert "3 on the front of 6 candidates" in _text(browser, "pareto-count")
    assert browser.find_element(By.ID, "pareto-section").is_displayed()
    browser.get(f"{url}run?folder={NAME}")  # not an nsga2 run: no section
    _wait(browser, lambda b: _text(b, "best") == "1.3000", "the run")
    assert not browser.find_element(By.ID, "pareto-section").is_displayed()
    assert _script_errors(browser) == []
