"""The test tree itself: pytest's default import mode needs unique module basenames across tests/ folders."""

from __future__ import annotations

import collections
from pathlib import Path


def test_test_modules_have_unique_basenames() -> None:
    names = collections.Counter(p.name for p in Path(__file__).parent.rglob("*.py") if p.name != "conftest.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_the_algorithm_packages_never_import_the_engine() -> None:
    """``programs/``, ``hashing/``, ``evaluators/`` and ``nas/`` are pure algorithms: no import of ``search`` at any
    level, inside functions included (read from the syntax tree, so a string or comment cannot fool it)."""
    import ast

    root = Path(__file__).parent.parent
    offenders = []
    for package in ("programs", "hashing", "evaluators", "nas"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                offenders += [f"{path.relative_to(root)}:{node.lineno}: {name}" for name in names
                              if name == "search" or name.startswith("search.")]
    assert offenders == []


HEAVY = ("torch", "sqlalchemy", "numpy", "optuna", "ray", "flask", "tqdm", "nas", "evaluators", "programs", "hashing")


def _imported_after(code: str) -> list[str]:
    """The ``HEAVY`` packages imported by ``code`` in a fresh interpreter (this one has them loaded already)."""
    import json
    import subprocess
    import sys

    probe = f"{code}\nimport json, sys; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cli_parser_imports_nothing_heavy_and_its_copied_constants_match() -> None:
    """``autodisco --help`` and a typo answer at once: building the parser imports only the standard library and the
    command modules — no torch, SQLAlchemy, numpy, Optuna, Ray, Flask, tqdm, nor the algorithm packages."""
    assert _imported_after("from search.cli._main import build_parser; build_parser()") == []
    assert _imported_after("from search.cli import main\ntry: main(['serch'])\nexcept SystemExit: pass") == []

    from nas.oneshot_train import DATASETS
    from nas.pada import SAMPLERS
    from search import funnel, jobs, kinds, store
    from search.cli import _architecture, _common, _nas_oneshot, _validate

    assert (_nas_oneshot.DATASETS, _nas_oneshot.SAMPLERS) == (DATASETS, SAMPLERS)
    assert _common.DB_WAIT_S == jobs.DB_WAIT_S
    assert (_architecture.SPACES, _architecture.TASKS, _architecture.SCRATCH, _architecture.SUPERNET_PREFIX) == (
        kinds.SPACES, kinds.TASKS, kinds.SCRATCH, kinds.SUPERNET_PREFIX)
    budget = kinds.ScratchBudget()
    assert _architecture.SCRATCH_DEFAULTS == {name: getattr(budget, name) for name in _architecture.SCRATCH_DEFAULTS}
    assert _validate.STAGES == funnel.STAGES
    assert _common.RESULTS_FILE == store.RESULTS_FILE


def test_runs_list_and_show_import_only_what_reads_the_database(tmp_path: Path) -> None:
    """``runs list`` and ``runs show`` of a run whose checkpoint holds its progress (every run the runner wrote) read
    it with SQLAlchemy alone: no torch, numpy, Optuna, Ray, Flask, nor the program or architecture code."""
    from search.jobs._base import PROGRESS_KEY
    from search.store import Store

    with Store.for_run(tmp_path / "runs" / "hunt") as store:
        job = store.create_job("hunt", kind="optimizer", config={"method": "search", "tasks": ["mnist1d-mlp"]}, seed=0)
        candidate = store.add_candidate(job.id, kind="optimizer", text="def train(w, g, m, v, lr):\n"
                                        "    update = g * lr\n    return update, m, v\n", hash="ab" * 16)
        store.finish_evaluation(store.add_evaluation(job.id, candidate, key="c", task="mnist1d-mlp", seed=0),
                                status="ok", fitness=1.0)
        store.save_checkpoint(job.id, {PROGRESS_KEY: {"done": 1, "total": 4, "unit": "eval"}})
    root = tmp_path / "runs"
    for argv in (["runs", "list", "--root", str(root)], ["runs", "show", str(root / "hunt")]):
        code = f"from search.cli import main\nassert main({argv!r}) == 0"
        assert _imported_after(code) == ["sqlalchemy"], argv
