"""``bench/gpu_session.sh`` runs on a GPU machine that CI never sees: what can drift here is checked here (its
syntax, the files it names, the options it passes to the benches)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_session.sh"


def test_the_script_parses_and_refuses_an_unknown_verb() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.fail("bash is needed to check bench/gpu_session.sh")
    assert subprocess.run([bash, "-n", str(SCRIPT)]).returncode == 0
    refused = subprocess.run([bash, str(SCRIPT), "launch"], capture_output=True, text=True)
    assert refused.returncode == 2 and "usage" in refused.stderr


def test_the_files_it_names_exist() -> None:
    text = SCRIPT.read_text()
    named = set(re.findall(r"\b((?:tests|bench)/[\w/]+\.py)\b", text))
    assert {"bench/bench_batched.py", "bench/bench_driver.py", "tests/evaluators/test_batched_train.py"} <= named
    assert [path for path in sorted(named) if not (ROOT / path).is_file()] == []


@pytest.mark.parametrize("bench", ["bench_batched.py", "bench_driver.py", "bench_export.py"])
def test_the_benches_take_the_options_it_passes(bench: str) -> None:
    text = SCRIPT.read_text()
    lines = " ".join(line for line in text.replace("\\\n", " ").splitlines() if f"bench/{bench}" in line)
    options = set(re.findall(r"(?<=\s)(--[a-z][a-z-]*)", lines))
    assert options, f"no options passed to {bench}?"
    shown = subprocess.run([sys.executable, str(ROOT / "bench" / bench), "--help"], capture_output=True, text=True,
                           cwd=ROOT, check=True).stdout
    assert sorted(option for option in options if option not in shown) == []
