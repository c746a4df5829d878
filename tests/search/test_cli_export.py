"""``autodisco export``: a candidate of a run written as a standalone torch.optim module that imports and trains."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from _cli_runs import (
    CANDIDATES, LION_WITH_DEAD_CODE, NAME, BuiltRun, make_architecture_run, make_foreign, make_garbage, make_run,
)

from programs import library, parse, simplify
from programs.export import optimizer_source
from search.cli import main
from search.store import Store


@pytest.fixture
def run(tmp_path: Path) -> BuiltRun:
    return make_run(tmp_path / "runs")


def _export(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = main(["export", *argv])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = main(["export", *argv])
    out, err = capsys.readouterr()
    assert (status, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith("autodisco: error: ") and "Traceback" not in err, err
    return err


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _train(optimizer_class: type[torch.optim.Optimizer], lr: float, steps: int = 60) -> tuple[float, float]:
    """Loss of a tiny least-squares model before and after ``steps`` full-batch steps."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 5, generator=generator)
    targets = inputs @ torch.randn(5, 1, generator=generator) + 0.5
    model = torch.nn.Linear(5, 1)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 5, generator=generator))
        model.bias.zero_()
    optimizer = optimizer_class(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_exported_module_imports_and_trains(run: BuiltRun, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "my_lion.py"
    out = _export(capsys, [str(run.path), str(run.ids[2]), "-o", str(target), "--name", "MyLion"])
    lines = out.splitlines()
    assert lines[0].startswith(f"wrote {target}: class MyLion, candidate {run.ids[2]} of run '{NAME}'")
    assert lines[1:] == ["usage:  from my_lion import MyLion",
                         "        optimizer = MyLion(model.parameters(), lr=0.001)  # tune lr as for any new optimizer"]
    optimizer_class = _import(target).MyLion
    assert issubclass(optimizer_class, torch.optim.Optimizer)
    first, last = _train(optimizer_class, lr=0.02)
    assert last < 0.2 * first


def test_export_from_a_run_equals_exporting_the_program(run: BuiltRun, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _export(capsys, [str(run.path), str(run.ids[4]), "-o", str(tmp_path / "simple.py"), "--name", "Lion2"])
    _export(capsys, [str(run.path), str(run.ids[4]), "-o", str(tmp_path / "raw.py"), "--name", "Lion2",
                     "--no-simplify", "--lr", "3e-4"])
    simplified = (tmp_path / "simple.py").read_text()
    assert simplified == optimizer_source(simplify(parse(LION_WITH_DEAD_CODE)), "Lion2")
    assert simplified == optimizer_source(simplify(library.get("lion")), "Lion2")  # the dead cosh is gone: Lion
    raw = (tmp_path / "raw.py").read_text()
    assert raw == optimizer_source(parse(LION_WITH_DEAD_CODE), "Lion2", 3e-4) and "cosh" in raw
    assert inspect.signature(_import(tmp_path / "raw.py").Lion2).parameters["lr"].default == 3e-4


def test_simplified_and_raw_exports_train_identically(run: BuiltRun, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _export(capsys, [str(run.path), str(run.ids[4]), "-o", str(tmp_path / "simple.py"), "--name", "A"])
    _export(capsys, [str(run.path), str(run.ids[4]), "-o", str(tmp_path / "raw.py"), "--name", "A", "--no-simplify"])
    assert _train(_import(tmp_path / "simple.py").A, 0.01, 20) == _train(_import(tmp_path / "raw.py").A, 0.01, 20)


def test_default_name_and_path_and_hash_prefix(run: BuiltRun, capsys: pytest.CaptureFixture[str]) -> None:
    out = _export(capsys, [str(run.path), "0a0a"])  # adamw, the warm start
    expected = run.path / "exports" / f"discovered{run.ids[0]}.py"
    assert out.startswith(f"wrote {expected}: class Discovered{run.ids[0]}")
    assert expected.read_text() == optimizer_source(simplify(library.get("adamw")), f"Discovered{run.ids[0]}")
    assert "--force" in _refused(capsys, [str(run.path), "0a0a"])  # no silent overwrite of the default file either


def test_existing_file_needs_force(run: BuiltRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "mine.py"
    target.write_text("# my own work\n")
    assert "--force" in _refused(capsys, [str(run.path), str(run.ids[2]), "-o", str(target)])
    assert target.read_text() == "# my own work\n"
    _export(capsys, [str(run.path), str(run.ids[2]), "-o", str(target), "--force"])
    assert f"class Discovered{run.ids[2]}(" in target.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


@pytest.mark.parametrize("name", ["9Lives", "class", "my-opt", "Opt!", "ProgramOptimizer", "", "torch", "math",
                                  "check_lr", "EPS", "print", "Tensor", "_check_group", "params"])
def test_bad_name_is_refused_before_writing(run: BuiltRun, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            name: str) -> None:
    target = tmp_path / "opt.py"
    assert "name" in _refused(capsys, [str(run.path), str(run.ids[2]), "-o", str(target), "--name", name])
    assert not target.exists()


@pytest.mark.parametrize("output", ["opt.txt", "my-opt.py", "class.py", "missing/opt.py", "torch.py", "math.py",
                                    "typing.py", "numpy.py"])
def test_bad_output_is_refused(run: BuiltRun, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               output: str) -> None:
    _refused(capsys, [str(run.path), str(run.ids[2]), "-o", str(tmp_path / output)])
    assert not (tmp_path / output).exists()


@pytest.mark.parametrize("lr", ["-1", "0", "nan", "inf"])
def test_bad_lr_is_refused(run: BuiltRun, tmp_path: Path, capsys: pytest.CaptureFixture[str], lr: str) -> None:
    assert "--lr" in _refused(capsys, [str(run.path), str(run.ids[2]), "-o", str(tmp_path / "o.py"), "--lr", lr])
    assert not (tmp_path / "o.py").exists()


def test_unknown_and_ambiguous_candidates(run: BuiltRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "o.py")
    assert "ambiguous" in _refused(capsys, [str(run.path), "5c5c", "-o", target])
    assert "no candidate" in _refused(capsys, [str(run.path), "424242", "-o", target])
    assert "no candidate" in _refused(capsys, [str(run.path), "nope", "-o", target])
    assert not Path(target).exists()


def test_architecture_candidates_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nas = make_architecture_run(tmp_path)
    err = _refused(capsys, [str(nas.path), str(nas.ids[0]), "-o", str(tmp_path / "o.py")])
    assert "not an optimizer program" in err and "'architecture'" in err
    assert not (tmp_path / "o.py").exists()


def test_untrusted_program_text_is_refused(run: BuiltRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.for_run(run.path, create=False) as store:
        job = store.get_job(NAME)
        assert job is not None
        bad = store.add_candidate(job.id, kind="optimizer", text="import os\nos.system('echo pwned')\n",
                                  hash="e" * 32)
    _refused(capsys, [str(run.path), str(bad), "-o", str(tmp_path / "o.py")])
    assert not (tmp_path / "o.py").exists()


def test_database_url_needs_an_output(run: BuiltRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{run.db}"
    assert "-o" in _refused(capsys, [NAME, str(run.ids[2]), "--db", url])
    _export(capsys, [NAME, str(run.ids[2]), "--db", url, "-o", str(tmp_path / "from_db.py")])
    assert (tmp_path / "from_db.py").read_text() == optimizer_source(simplify(parse(CANDIDATES[2][0])),
                                                                      f"Discovered{run.ids[2]}")


def test_bad_run_folders_are_refused_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage, foreign = make_garbage(tmp_path), make_foreign(tmp_path)
    before = garbage.read_bytes(), foreign.read_bytes()
    (tmp_path / "bare").mkdir()
    target = str(tmp_path / "o.py")
    assert "no run folder" in _refused(capsys, [str(tmp_path / "nowhere"), "1", "-o", target])
    assert "has no results.db" in _refused(capsys, [str(tmp_path / "bare"), "1", "-o", target])
    assert "not a SQLite database" in _refused(capsys, [str(garbage.parent), "1", "-o", target])
    assert "not an autodisco results database" in _refused(capsys, [str(foreign.parent), "1", "-o", target])
    assert (garbage.read_bytes(), foreign.read_bytes()) == before
    assert not Path(target).exists()
