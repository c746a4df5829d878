"""``programs.export``: the exported module as a user meets it — hyperparameters, drop-in AdamW and Lion, schedulers,
GradScaler, torch.compile, hostile inputs, IEEE overflow, and lowering in linear time."""

from __future__ import annotations

import ast
import copy
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import programs
from programs import library
from programs.export import check_name, optimizer_class, optimizer_source
from programs.export_lowering import lower
from programs.program import SIGNATURE, Program, Statement


def _model(seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).to(dtype)


DATA = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
TARGET = torch.sin(DATA[:, :4] * 3)


def _loss(model: torch.nn.Module) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(DATA.to(next(model.parameters()).dtype)),
                                        TARGET.to(next(model.parameters()).dtype))


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int, after_step=lambda: None) -> torch.Tensor:
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(model).backward()
        optimizer.step()
        after_step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _lion_reference(params: list, state: dict, lr: float, betas: tuple[float, float], weight_decay: float) -> None:
    """Lion as published (Chen et al. 2023, and the reference implementations): decoupled decay, then the update."""
    b1, b2 = betas
    with torch.no_grad():
        for p in params:
            m = state.setdefault(p, torch.zeros_like(p))
            p.mul_(1 - lr * weight_decay)
            p.add_(torch.sign(b1 * m + (1 - b1) * p.grad), alpha=-lr)
            m.mul_(b2).add_(p.grad, alpha=1 - b2)


# -- hyperparameters ------------------------------------------------------------------------------------------------


def _keywords(cls: type) -> dict[str, object]:
    parameters = inspect.signature(cls).parameters
    assert all(p.kind is p.KEYWORD_ONLY for name, p in parameters.items() if name not in ("params", "lr"))
    return {name: p.default for name, p in parameters.items() if name != "params"}


def test_constants_become_hyperparameters_named_as_torch_names_them() -> None:
    assert _keywords(optimizer_class(library.get("adamw"))) == {
        "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "foreach": None}
    assert _keywords(optimizer_class(library.get("lion"), default_lr=1e-4)) == {
        "lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0, "foreach": None}
    assert _keywords(optimizer_class(library.get("momentum"))) == {
        "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "foreach": None}
    discovered = programs.parse("def train(w, g, m, v, lr):\n    m = interp(g, m, 0.8)\n"
                                "    update = tanh(m * 3.5) * lr + arcsinh(g) * 0.25 * lr\n    return update, m, v\n")
    assert _keywords(optimizer_class(discovered)) == {
        "lr": 1e-3, "betas": (0.8,), "c1": 3.5, "c2": 0.25, "weight_decay": 0.0, "foreach": None}


def test_readable_straight_line_module_of_60_to_150_lines() -> None:
    for name in ("adamw", "lion"):
        source = optimizer_source(library.get(name), "Exported")
        assert 60 <= len(source.splitlines()) <= 150, name
        assert "0.010000000000000009" not in source and "yield" not in source and "class Foreach" not in source
    lion = optimizer_source(library.get("lion"), "Lion")
    assert "    c = torch._foreach_lerp(grads, exp_avgs, beta1)\n" in lion
    assert "        exp_avg.lerp_(grad, 1 - beta2)\n" in lion
    assert "    torch._foreach_add_(params, c, alpha=-lr)\n" in lion


@pytest.mark.parametrize("kwargs,match", [
    ({"betas": (1.0, 0.9)}, "beta parameter at index 0"), ({"betas": (0.9, -0.1)}, "beta parameter at index 1"),
    ({"betas": (0.9,)}, "betas"), ({"betas": "0.9"}, "betas"), ({"eps": -1e-8}, "epsilon"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"weight_decay": math.nan}, "weight_decay"),
    ({"eps": True}, "epsilon"), ({"foreach": "yes"}, "foreach"),
])
def test_out_of_range_hyperparameters_are_refused(kwargs: dict, match: str) -> None:
    cls = optimizer_class(library.get("adamw"))
    with pytest.raises(ValueError, match=match):
        cls(_model().parameters(), **kwargs)
    optimizer = cls(list(_model().parameters())[:2])
    with pytest.raises(ValueError, match=match):
        optimizer.add_param_group({"params": list(_model().parameters())[2:], **kwargs})
    with pytest.raises(ValueError, match="c1"):
        optimizer_class(programs.parse("def train(w, g, m, v, lr):\n    update = g * 3.5 * lr\n"
                                       "    return update, m, v\n"))(_model().parameters(), c1=-3.5)  # keeps its sign


def test_hyperparameters_per_group_act_like_separate_optimizers() -> None:
    cls = optimizer_class(library.get("adamw"))
    settings = [{"betas": (0.8, 0.99), "weight_decay": 0.1}, {"eps": 1e-3, "lr": 3e-3}]
    together = _model()
    groups = [{"params": list(together.parameters())[:2], **settings[0]},
              {"params": list(together.parameters())[2:], **settings[1]}]
    got = _train(together, cls(groups, lr=1e-2), 10)
    apart = _model()
    optimizers = [cls(list(apart.parameters())[:2], lr=1e-2, **settings[0]),
                  cls(list(apart.parameters())[2:], **{"lr": 1e-2, **settings[1]})]
    for _ in range(10):
        for optimizer in optimizers:
            optimizer.zero_grad()
        _loss(apart).backward()
        for optimizer in optimizers:
            optimizer.step()
    assert torch.equal(got, torch.cat([p.detach().flatten() for p in apart.parameters()]))


# -- drop-in AdamW and Lion -----------------------------------------------------------------------------------------

ADAMW_SETTINGS = {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}


@pytest.mark.parametrize("foreach", [True, False])
def test_exported_adamw_takes_torch_adamw_arguments_and_follows_it(foreach: bool) -> None:
    exported = optimizer_class(library.get("adamw"), "AdamW")
    ours, theirs = _model(), _model()
    got = _train(ours, exported(ours.parameters(), foreach=foreach, **ADAMW_SETTINGS), 50)
    expected = _train(theirs, torch.optim.AdamW(theirs.parameters(), foreach=foreach, **ADAMW_SETTINGS), 50)
    # the language's protected division also adds 1e-8 to the bias corrections: 1e-7 relative at most here
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    assert (got - _train(_model(), exported(_model().parameters()), 0)).abs().max() > 1e-2  # it did train


def test_loading_a_torch_adamw_state_dict_continues_like_torch() -> None:
    model = _model(dtype=torch.float64)
    torch_adamw = torch.optim.AdamW(model.parameters(), **ADAMW_SETTINGS)
    _train(model, torch_adamw, 10)
    saved_model, saved = copy.deepcopy(model.state_dict()), copy.deepcopy(torch_adamw.state_dict())
    expected = _train(model, torch_adamw, 10)
    resumed = _model(dtype=torch.float64)
    resumed.load_state_dict(saved_model)
    exported = optimizer_class(library.get("adamw"))(resumed.parameters())  # defaults differ: the state dict sets them
    exported.load_state_dict(saved)
    assert exported.param_groups[0]["betas"] == (0.8, 0.99) and exported.param_groups[0]["eps"] == 1e-6
    got = _train(resumed, exported, 10)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("foreach", [True, False])
def test_exported_lion_takes_the_reference_arguments_and_follows_the_formula(foreach: bool) -> None:
    settings = {"lr": 3e-3, "betas": (0.95, 0.98), "weight_decay": 0.5}
    Lion = optimizer_class(library.get("lion"), "Lion", default_lr=1e-4)
    ours, theirs = _model(), _model()
    got = _train(ours, Lion(ours.parameters(), foreach=foreach, **settings), 50)
    state: dict = {}
    params = list(theirs.parameters())
    reference = torch.optim.SGD(params, lr=0.0)  # only for zero_grad; the step is the formula
    reference.step = lambda: _lion_reference(params, state, **settings)  # type: ignore[method-assign]
    expected = _train(theirs, reference, 50)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


# -- schedulers, GradScaler, torch.compile --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_one_cycle_lr_cycles_beta1(name: str) -> None:
    exported = optimizer_class(library.get(name))
    model = _model()
    optimizer = exported(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=20)  # cycle_momentum=True
    betas = []
    _train(model, optimizer, 10, after_step=lambda: (scheduler.step(), betas.append(optimizer.param_groups[0]["betas"])))
    assert len({b[0] for b in betas}) > 5 and all(b[1] == exported(model.parameters()).defaults["betas"][1]
                                                  for b in betas)
    if name == "adamw":  # and the step reads them: the same trajectory as torch's AdamW under the same schedule
        ours, theirs = _model(), _model()
        runs = []
        for m, optimizer in ((ours, exported(ours.parameters(), lr=1e-3)),
                             (theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-3))):
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=20)
            runs.append(_train(m, optimizer, 20, after_step=scheduler.step))
        torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=2e-6)


def test_reduce_on_plateau_and_sequential_lr() -> None:
    cls = optimizer_class(library.get("lion"))
    model = _model()
    optimizer = cls(model.parameters(), lr=1e-2)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    for _ in range(3):
        _train(model, optimizer, 1)
        plateau.step(1.0)  # no improvement: the lr halves
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 / 4)
    optimizer = cls(model.parameters(), lr=1e-2)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=2)
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
    sequential = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[2])
    moves = []
    for _ in range(4):
        before = next(model.parameters()).detach().clone()
        _train(model, optimizer, 1)
        moves.append((next(model.parameters()).detach() - before).abs().max().item())  # Lion moves by exactly lr
        sequential.step()
    assert moves == pytest.approx([1e-3, 5.5e-3, 1e-2, 5e-3], rel=1e-4)


def test_grad_scaler_unscales_and_skips_non_finite_steps() -> None:
    cls = optimizer_class(library.get("adamw"))
    scaled, plain = _model(), _model()
    optimizers = [cls(scaled.parameters(), lr=1e-2), cls(plain.parameters(), lr=1e-2)]
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for step in range(6):
        optimizers[0].zero_grad()
        loss = _loss(scaled) * (math.inf if step == 2 else 1.0)
        scaler.scale(loss).backward()
        scaler.step(optimizers[0])  # skipped at step 2 (non-finite gradients)
        scaler.update()
        if step != 2:
            _train(plain, optimizers[1], 1)
    got = torch.cat([p.detach().flatten() for p in scaled.parameters()])
    expected = torch.cat([p.detach().flatten() for p in plain.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_training_a_compiled_model() -> None:
    cls = optimizer_class(library.get("lion"))
    eager, compiled = _model(), _model()
    results = [_train(eager, cls(eager.parameters(), lr=1e-3), 5)]
    model = torch.compile(compiled, backend="eager")
    optimizer = cls(compiled.parameters(), lr=1e-3)
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(DATA), TARGET).backward()
        optimizer.step()
    results.append(torch.cat([p.detach().flatten() for p in compiled.parameters()]))
    torch.testing.assert_close(results[0], results[1])


# -- hostile inputs -------------------------------------------------------------------------------------------------

HOSTILE_NAMES = ["torch", "math", "check_lr", "EPS", "print", "Tensor", "_check_group", "__import__", "exec",
                 "annotations", "params", "step", "__class__", "ProgramOptimizer", "class", "a b", "x\"\"\"", "é",
                 "A" * 65, ""]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_names_that_would_break_the_module_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        check_name(name)
    with pytest.raises(ValueError, match="name"):
        optimizer_source(library.get("lion"), name)


HOSTILE_VARIABLES = ["__import__", "os", "torch", "math", "exec", "params", "step", "lr", "beta1", "c1", "s1",
                     "_fit", "exp_avg", "weight_decay", 'x"""; import os; """', "a\nimport os", "grad", "zip",
                     "tensor", "group", "self", "Tensor", "__builtins__", "é", "x" * 200]


def _hostile_program(names: list[str]) -> Program:
    """A program whose variables take the given names (built as IR: no parser between them and the exporter)."""
    statements = [Statement(names[0], "interp", ("g", "m", 0.9)), Statement(names[1], "cosh", (names[0],)),
                  Statement(names[2], "mul", (names[1], "lr")), Statement(names[3], "global_norm", (names[2],)),
                  Statement(names[4], "div", (names[2], names[3])), Statement("m", "interp", ("g", "m", 0.99)),
                  Statement("update", "add", (names[4], names[0]))]
    return Program(tuple(statements), ("update", "m", "v"), SIGNATURE)


ALLOWED_GLOBALS = {"annotations", "math", "torch", "Tensor", "__all__", "_check_group", "_check", "_f64", "_fit"}


@pytest.mark.parametrize("offset", range(0, len(HOSTILE_VARIABLES), 5))
def test_hostile_programs_define_nothing_but_the_optimizer(offset: int) -> None:
    names = (HOSTILE_VARIABLES * 2)[offset:offset + 5]
    program = _hostile_program(names)
    source = optimizer_source(program, "Safe")
    tree = ast.parse(source)
    for node in tree.body:  # a docstring, imports of math and torch, functions, the class: nothing else
        if isinstance(node, ast.Expr):
            assert node is tree.body[0] and isinstance(node.value, ast.Constant)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            assert {a.name for a in node.names} <= {"annotations", "math", "torch", "Tensor"}
        elif isinstance(node, ast.Assign):
            assert [t.id for t in node.targets] == ["__all__"]  # type: ignore[attr-defined]
        else:
            assert isinstance(node, (ast.FunctionDef, ast.ClassDef)), ast.dump(node)
    names_used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names_used & {"exec", "eval", "__import__", "open", "compile", "__builtins__", "getattr"}
    cls = optimizer_class(program, "Safe")
    module = inspect.getmodule(cls) or vars(__import__("sys").modules.get(cls.__module__, object))
    defined = {k for k in cls.__init__.__globals__ if not k.startswith("__") or k == "__all__"}
    assert defined - {"Safe"} <= ALLOWED_GLOBALS | {f"_single_tensor_safe", "_multi_tensor_safe"}, module
    reference = _reference_step(program)
    params = [torch.nn.Parameter(torch.tensor(row)) for row in reference[0]]
    for p, g in zip(params, reference[1]):
        p.grad = torch.tensor(g)
    cls(params, lr=0.1).step()
    np.testing.assert_allclose(np.stack([p.detach().numpy() for p in params]), reference[2], rtol=1e-7, atol=1e-9)


def _reference_step(program: Program) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    w, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    update, _, _ = programs.reference_step(program, w, g, np.zeros_like(w), np.zeros_like(w), 0.1, 1)
    return w, g, w - update


# -- IEEE semantics of overflowing constants -----------------------------------------------------------------------

OVERFLOWING = [
    "def train(w, g, m, v, lr):\n    k = exp(100.0)\n    m = interp(g, m, k)\n    update = m * lr\n"
    "    return update, m, v\n",
    "def train(w, g, m, v, lr):\n    k = power(10.0, 50.0)\n    update = g * k * lr\n    return update, m, v\n",
    "def train(w, g, m, v, lr):\n    k = cosh(1000.0)\n    update = max(g, k) * lr + g / (k - k)\n"
    "    return update, m, v\n",
]


@pytest.mark.parametrize("text", OVERFLOWING)
@pytest.mark.parametrize("foreach", [True, False])
def test_constants_overflowing_float32_follow_ieee_semantics(text: str, foreach: bool) -> None:
    program = programs.parse(text)
    w, g, expected = _reference_step(program)
    for dtype in (torch.float64, torch.float32):
        params = [torch.nn.Parameter(torch.tensor(row, dtype=dtype)) for row in w]
        for p, row in zip(params, g):
            p.grad = torch.tensor(row, dtype=dtype)
        optimizer_class(program)(params, lr=0.1, foreach=foreach).step()  # no RuntimeError
        got = np.stack([p.detach().double().numpy() for p in params])
        if dtype == torch.float64:
            np.testing.assert_allclose(got, expected, rtol=1e-7, equal_nan=True)
        else:  # float32 arithmetic: what overflows float32 is inf, with the reference's sign
            with np.errstate(over="ignore"):
                rounded = expected.astype(np.float32).astype(np.float64)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(rounded))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(rounded))


# -- linear-time lowering ------------------------------------------------------------------------------------------


def _long_program(length: int) -> Program:
    """A valid program of ``length`` statements that keeps lazy sums, in-place candidates and scalars busy."""
    cycle = [("a", "add", ("a", "g")), ("b", "mul", ("a", 0.5)), ("s", "mul", ("s", 1.0001)),
             ("a", "sub", ("a", "b")), ("c", "interp", ("a", "m", 0.9)), ("a", "mul", ("c", "s"))]
    statements = [Statement("a", "mul", ("g", 0.1)), Statement("s", "add", ("lr", 0.0))]
    while len(statements) < length - 2:
        statements += [Statement(*item) for item in cycle]
    statements = statements[:length - 2] + [Statement("m", "interp", ("g", "m", 0.9)),
                                            Statement("update", "mul", ("a", "lr"))]
    return Program(tuple(statements), ("update", "m", "v"), SIGNATURE)


@pytest.mark.timeout(60)  # quadratic lowering took 7 s for 1,000 statements and over 180 s for 10,000
def test_lowering_takes_linear_time() -> None:
    small = _long_program(1_000)
    w, g, expected = _reference_step(small)
    params = [torch.nn.Parameter(torch.tensor(row)) for row in w]
    for p, row in zip(params, g):
        p.grad = torch.tensor(row)
    optimizer_class(small)(params, lr=0.1).step()
    np.testing.assert_allclose(np.stack([p.detach().numpy() for p in params]), expected, rtol=1e-6)
    source = optimizer_source(_long_program(10_000), "Long")
    compile(source, "long.py", "exec")  # noqa: S102 - parses: no nesting too deep for Python
    assert len(lower(_long_program(10_000)).instructions) > 10_000


def test_the_readme_shows_a_real_exported_lion() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    marker = 'This is `optimizer_source(library.get("lion"), "Lion", 1e-4)`, exactly (a test keeps it so):\n\n```python\n'
    shown = readme[readme.index(marker) + len(marker):]
    assert shown[:shown.index("```\n")] == optimizer_source(library.get("lion"), "Lion", 1e-4)
