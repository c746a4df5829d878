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


def test_the_cli_parser_imports_no_torch_and_its_copied_choices_match() -> None:
    """``autodisco --help`` answers at once: building the parser imports neither torch nor the algorithm packages.
    (A fresh interpreter: this one has torch loaded already.)"""
    import subprocess
    import sys

    code = ("import sys; from search.cli._main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'nas', 'evaluators') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
    from nas.oneshot_train import DATASETS
    from nas.pada import SAMPLERS
    from search.cli import _nas_oneshot

    assert (_nas_oneshot.DATASETS, _nas_oneshot.SAMPLERS) == (DATASETS, SAMPLERS)
