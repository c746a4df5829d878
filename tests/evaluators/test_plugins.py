"""Plug-in tasks (``evaluators.plugins``): resolving ``MODULE:ATTRIBUTE`` and entry points, the data/model contract
checked with one clear line per mistake, training them one at a time and batched (or not, when vmap cannot)."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

from evaluators import PluginError, Task, TaskError, evaluate, evaluate_batch, get_task, user_task
from evaluators import plugins
from evaluators.batched import train_batch
from evaluators.loop import train
from programs import library
from programs.compile import compile as compile_program

HEADER = """\
import numpy as np
import torch
from torch import nn
from evaluators import ACCURACY, NEG_LOSS, user_task

def data(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((96, 4)).astype(np.float32)
    y = (x @ np.arange(1.0, 5.0, dtype=np.float32))[:, None]
    return x[:64], y[:64], x[64:], y[64:]

def labels(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((96, 4)).astype(np.float32)
    return x[:64], (x[:64, 0] > 0).astype(np.int64), x[64:], (x[64:, 0] > 0).astype(np.int64)

def linear():
    return nn.Linear(4, 1)
"""


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Writes a module (``HEADER`` + the given body) under a fresh name on sys.path; returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.forget()
    written: list[str] = []

    def write(body: str, header: str = HEADER) -> str:
        name = f"plugin_{uuid.uuid4().hex[:10]}"
        (tmp_path / f"{name}.py").write_text(header + textwrap.dedent(body))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)
    plugins.forget()


def test_a_plugin_task_is_resolved_by_reference_and_named_by_it(plugin_module: Callable[[str], str]) -> None:
    module = plugin_module("task = user_task(data, linear, steps=20, batch_size=16, base_lr=0.05, fitness=NEG_LOSS)\n")
    task = get_task(f"{module}:task")
    assert isinstance(task, Task) and task.name == f"{module}:task" and task.steps == 20
    assert get_task(f"{module}:task") is task  # resolved once per process


@pytest.mark.parametrize(("body", "words"), [
    ("", ["has no attribute 'task'", "tasks there: none"]),
    ("task = data\n", ["is a function, not an evaluators.Task", "user_task"]),
    ("from evaluators import get_task\ntask = get_task('quadratic')\n", ["without its own data and model"]),
    ("raise RuntimeError('broken at import')\n", ["importing module", "RuntimeError: broken at import"]),
    ("import not_a_module_anywhere\n", ["importing module", "No module named 'not_a_module_anywhere'"]),
])
def test_a_bad_plugin_module_is_one_clear_line(plugin_module: Callable[[str], str], body: str,
                                               words: list[str]) -> None:
    module = plugin_module(body)
    with pytest.raises(PluginError) as raised:
        get_task(f"{module}:task")
    message = str(raised.value)
    assert "\n" not in message and f"{module}:task" in message
    for word in words:
        assert word in message


def test_a_missing_module_names_it_and_how_to_put_it_on_the_path() -> None:
    with pytest.raises(PluginError, match=r"cannot import module 'no_such_pkg\.tasks'.*current directory.*PYTHONPATH"):
        get_task("no_such_pkg.tasks:task")


@pytest.mark.parametrize("name", ["my tasks:task", "tasks:1st", "a..b:task", "os:path.join", "task:"])
def test_a_malformed_reference_is_refused_before_importing(name: str) -> None:
    with pytest.raises(TaskError, match="MODULE:ATTRIBUTE"):
        get_task(name)


def test_scales_give_the_funnel_variants_and_widen_through_the_builder(plugin_module: Callable[[str], str]) -> None:
    module = plugin_module("""\
        def model(width=1):
            return nn.Sequential(nn.Linear(4, 8 * width), nn.Tanh(), nn.Linear(8 * width, 1))
        task = user_task(data, model, steps=20, batch_size=16, base_lr=0.01, fitness=NEG_LOSS, warmup=2,
                         scales={"10x": (2, 3)})
        plain = user_task(data, linear, steps=20, batch_size=16, base_lr=0.01, fitness=NEG_LOSS)
        """)
    big = get_task(f"{module}:task@10x")
    assert (big.name, big.steps, big.warmup, big.base_name) == (f"{module}:task@10x", 60, 6, f"{module}:task")
    setup_widths = [m.out_features for m in plugins.check(f"{module}:task@10x").make_model(width=2).modules()
                    if isinstance(m, torch.nn.Linear)]
    assert setup_widths == [16, 1]
    assert train(big, lambda s: compile_program(library.get("adamw"), s), seed=0)["steps"] == 60
    with pytest.raises(PluginError, match=r"has no scale '100x' \(it defines: @10x\)"):
        get_task(f"{module}:task@100x")
    with pytest.raises(PluginError, match=r"no scale '10x' \(it defines: none\)"):
        get_task(f"{module}:plain@10x")


def test_user_task_refuses_a_bad_budget_fitness_or_scale() -> None:
    def data(seed: int) -> None:
        return None

    def model() -> torch.nn.Module:
        return torch.nn.Linear(1, 1)

    with pytest.raises(PluginError, match="steps and batch_size"):
        user_task(data, model, steps=0, batch_size=8, base_lr=0.1)
    with pytest.raises(PluginError, match="base_lr"):
        user_task(data, model, steps=10, batch_size=8, base_lr=-1.0)
    with pytest.raises(PluginError, match="fitness"):
        user_task(data, model, steps=10, batch_size=8, base_lr=0.1, fitness="loss")
    with pytest.raises(PluginError, match="width multiplier, steps multiplier"):
        user_task(data, model, steps=10, batch_size=8, base_lr=0.1, scales={"10x": (2,)})
    with pytest.raises(PluginError, match="must take width="):
        user_task(data, model, steps=10, batch_size=8, base_lr=0.1, scales={"10x": (2, 3)})
    with pytest.raises(PluginError, match="lr_range"):
        user_task(data, model, steps=10, batch_size=8, base_lr=0.1, lr_range=(1.0, 0.1))
    with pytest.raises(PluginError, match="callables"):
        user_task("data", model, steps=10, batch_size=8, base_lr=0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(("body", "words"), [
    ("def broken(seed):\n    raise ValueError('no file here')\n"
     "task = user_task(broken, linear, steps=5, batch_size=8, base_lr=0.1, fitness=NEG_LOSS)\n",
     "its data(0) raised ValueError: no file here"),
    ("task = user_task(lambda seed: data(seed)[:3], linear, steps=5, batch_size=8, base_lr=0.1, fitness=NEG_LOSS)\n",
     "must return (x_train, y_train, x_val, y_val), got a tuple of 3"),
    ("task = user_task(lambda seed: (*data(seed)[:3], data(seed)[3][:5]), linear, steps=5, batch_size=8, "
     "base_lr=0.1, fitness=NEG_LOSS)\n", "x_val and y_val must hold the same number"),
    ("task = user_task(data, linear, steps=5, batch_size=8, base_lr=0.1)\n",
     "floating point (a regression) but its fitness is accuracy"),
    ("def bad():\n    raise TypeError('wrong size')\n"
     "task = user_task(data, bad, steps=5, batch_size=8, base_lr=0.1, fitness=NEG_LOSS)\n",
     "its model builder raised TypeError: wrong size"),
    ("task = user_task(data, lambda: 'a model', steps=5, batch_size=8, base_lr=0.1, fitness=NEG_LOSS)\n",
     "must return a torch.nn.Module, got a str"),
    ("task = user_task(data, lambda: nn.Linear(3, 1), steps=5, batch_size=8, base_lr=0.1, fitness=NEG_LOSS)\n",
     "the model raised on a training minibatch of shape (8, 4)"),
    ("task = user_task(data, lambda: nn.Linear(4, 2), steps=5, batch_size=8, base_lr=0.1, fitness=NEG_LOSS)\n",
     "outputs (8, 2) must have the targets' shape (8, 1)"),
    ("task = user_task(labels, lambda: nn.Linear(4, 1), steps=5, batch_size=8, base_lr=0.1)\n",
     "logits of shape (N, classes) = (8, >= 2), got (8, 1)"),
])
def test_the_first_build_checks_the_contract_in_one_line(plugin_module: Callable[[str], str], body: str,
                                                         words: str) -> None:
    module = plugin_module(body)
    with pytest.raises(PluginError) as raised:
        plugins.check(f"{module}:task")
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_a_plugin_trains_like_a_builtin_task_and_batched_rows_equal_it(plugin_module: Callable[[str], str]) -> None:
    module = plugin_module("task = user_task(labels, lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), "
                           "nn.Linear(8, 2)), steps=30, batch_size=16, base_lr=0.01)\n")
    name = f"{module}:task"
    programs = [library.get(n) for n in ("adamw", "sgd", "lion")]
    alone = [evaluate({"program": p.to_text(), "task": name, "seed": 3}) for p in programs]
    assert all(r["status"] == "ok" for r in alone) and 0.5 < alone[0]["metrics"]["fitness"] <= 1.0
    batched = evaluate_batch(programs, name, seed=3)
    assert [r["metrics"]["batch"] for r in batched] == [3, 3, 3]
    for one, row in zip(alone, batched):
        assert row["metrics"]["fitness"] == pytest.approx(one["metrics"]["fitness"], abs=1e-6)
        assert row["metrics"]["val_loss"] == pytest.approx(one["metrics"]["val_loss"], rel=1e-4)
    again = evaluate({"program": programs[0].to_text(), "task": name, "seed": 3})
    assert again["metrics"]["val_loss"] == alone[0]["metrics"]["val_loss"]  # reproducible from the seed


def test_a_model_vmap_cannot_batch_is_trained_one_program_at_a_time(plugin_module: Callable[[str], str]) -> None:
    module = plugin_module("task = user_task(data, lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), "
                           "nn.Linear(8, 1)), steps=10, batch_size=16, base_lr=0.01, fitness=NEG_LOSS)\n")
    task = get_task(f"{module}:task")
    assert "vmap cannot batch its model" in (plugins.batch_problem(task) or "")
    assert plugins.batch_problem(get_task("quadratic")) is None
    programs = [library.get("adamw"), library.get("sgd")]
    rows = train_batch(task, programs, seed=0)
    assert [row["batch"] for row in rows] == [1, 1]  # type: ignore[index]
    alone = train(task, lambda s: compile_program(programs[1], s), seed=0)
    assert rows[1]["val_loss"] == alone["val_loss"]  # type: ignore[index]


def test_a_model_that_draws_in_its_forward_pass_trains_the_same_every_time(
        plugin_module: Callable[[str], str]) -> None:
    module = plugin_module("task = user_task(data, lambda: nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), "
                           "nn.Linear(16, 1)), steps=15, batch_size=16, base_lr=0.01, fitness=NEG_LOSS)\n")
    name = f"{module}:task"
    assert "randomness" in (plugins.batch_problem(get_task(name)) or "")
    request = {"program": library.get("adamw").to_text(), "task": name, "seed": 2}
    first = evaluate(request)
    torch.rand(7)  # the caller's generator moved on: the evaluation does not depend on it
    again = evaluate(request)
    assert first["status"] == "ok" and first["metrics"]["val_loss"] == again["metrics"]["val_loss"]
    assert first["metrics"]["train_loss"] == again["metrics"]["train_loss"]
    other = evaluate({**request, "seed": 4})
    assert other["metrics"]["train_loss"] != first["metrics"]["train_loss"]


def test_a_task_that_raises_in_a_worker_is_a_failed_evaluation_with_its_reason(
        plugin_module: Callable[[str], str]) -> None:
    module = plugin_module("""\
        def flaky(seed):
            if seed == 1:
                raise OSError('the data disk is gone')
            return data(seed)

        class Breaks(nn.Linear):
            calls = 0
            def forward(self, x):
                Breaks.calls += 1
                if Breaks.calls > 5:
                    raise RuntimeError('the model broke at call 6')
                return super().forward(x)

        task = user_task(flaky, linear, steps=5, batch_size=8, base_lr=0.1, fitness=NEG_LOSS)
        breaks = user_task(data, lambda: Breaks(4, 1), steps=20, batch_size=8, base_lr=0.1, fitness=NEG_LOSS)
        """)
    from search.executor._worker import call

    adamw = library.get("adamw").to_text()
    assert evaluate({"program": adamw, "task": f"{module}:task", "seed": 0})["status"] == "ok"
    failed = evaluate({"program": adamw, "task": f"{module}:task", "seed": 1})
    assert failed["status"] == "failed" and "its data(1) raised OSError: the data disk is gone" in failed["error"]
    outcome = call("search.kinds.workers:evaluate_optimizer", {"program": adamw, "tasks": [f"{module}:breaks"]})
    assert outcome["status"] == "failed" and outcome["error"] == "RuntimeError: the model broke at call 6"


def test_a_resumed_run_whose_module_is_gone_fails_in_one_line() -> None:
    from search.kinds import OptimizerKind

    OptimizerKind().check_tasks(("quadratic",))
    with pytest.raises(PluginError, match="cannot import module 'gone_since_the_run'"):
        OptimizerKind().check_tasks(("gone_since_the_run:task",))


def test_an_installed_entry_point_names_a_task(plugin_module: Callable[[str], str], tmp_path: Path) -> None:
    module = plugin_module("task = user_task(data, linear, steps=5, batch_size=8, base_lr=0.1, fitness=NEG_LOSS)\n"
                           "not_a_task = 3\n")
    info = tmp_path / "my_plugin_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[autodisco.tasks]\nmy-regression = {module}:task\n"
                                           f"broken = {module}:not_a_task\nmissing = {module}_gone:task\n")
    plugins.forget()  # the entry points are read once per process
    task = get_task("my-regression")
    assert task.name == "my-regression" and task.make_data is not None
    assert plugins.check("my-regression").steps == 5
    with pytest.raises(PluginError, match=r"entry point 'broken' \(.*:not_a_task\) is a int, not an evaluators.Task"):
        get_task("broken")
    with pytest.raises(PluginError, match="loading the entry point .* raised ModuleNotFoundError"):
        get_task("missing")
    with pytest.raises(TaskError, match="installed plug-ins: broken, missing, my-regression"):
        get_task("nothing-by-that-name")
