"""The validation job (``RUN/validate``) survives Ctrl-C and ``kill -9`` of its process group: ``autodisco resume``
records each sweep once. (Beside ``test_job_kinds.py``, not in it: the test runner gives each file to one worker
process, and these two long chains run in parallel so.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from search.cli import main
from search.jobs._registry import job_progress
from search.store import Store


def test_validate_survives_ctrl_c_then_kill_9_and_resume_records_each_sweep_once(tmp_path: Path) -> None:
    """The validation job (``RUN/validate``): its sweeps are the units; Optuna studies resume with their trials, so
    the record is compared by sweep, not by value."""
    from programs import library, parse
    from search.jobs._search import SearchConfig
    from search.kinds import OptimizerKind

    run = tmp_path / "hunt"
    kind = OptimizerKind()
    with Store.for_run(run) as store:  # a finished proxy search of four programs
        job = store.create_job("hunt", kind="optimizer", config={"method": "search", **SearchConfig(
            tasks=("quadratic",), warm_start=(library.get("adamw").to_text(),)).to_json()}, seed=0)
        for birth, (name, fitness) in enumerate([("lion", 1.3), ("momentum", 1.2), ("sgd", 1.1), ("signsgd", 1.0)]):
            program = parse(library.get(name).to_text())
            candidate = store.add_candidate(job.id, kind="optimizer", text=program.to_text(),
                                            hash=kind.functional_hash(program), birth=birth)
            evaluation = store.add_evaluation(job.id, candidate, key=f"c{candidate}", task="quadratic", seed=0)
            store.finish_evaluation(evaluation, status="ok", fitness=fitness, metrics={})
        store.set_job_status(job.id, "finished")

    def sweeps() -> int:
        if not (run / "results.db").exists():
            return 0
        with Store.for_run(run, create=False) as store:
            record = store.get_job("hunt/validate")
            return int(job_progress(store, record)["done"] or 0) if record is not None else 0

    argv = ["validate", str(run), "-k", "4", "--trials", "2", "--stages", "10x", "--workers", "1", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    for command, units, sig in ((argv, 1, signal.SIGINT), (["resume", str(run), "--quiet"], 3, signal.SIGKILL)):
        process = subprocess.Popen([sys.executable, "-m", "search.cli._main", *command], cwd=tmp_path, env=env,
                                   start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None and sweeps() < units:
            time.sleep(0.05)
        assert process.poll() is None, f"it ended before it could be interrupted: {process.stderr.read()}"
        os.killpg(process.pid, sig)
        assert process.wait(timeout=120) == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    assert main(["resume", str(run), "--quiet"]) == 0
    with Store.for_run(run, create=False) as store:
        record = store.get_job("hunt/validate")
        keys = [e.key for e in store.list_evaluations(store.get_job("hunt").id) if e.key.startswith("validate:")]
        assert record.status == "finished" and sweeps() == len(keys) == 5  # AdamW and the four, once each
    assert len(set(keys)) == len(keys)
