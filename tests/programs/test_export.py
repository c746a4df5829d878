"""``programs.export``: exported optimizers against torch.optim, the reference semantics, the compiled program, and
their own module written to a file; torch.optim conventions."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

import programs
from programs import library
from programs.export import optimizer_class, optimizer_source

from program_samples import HAND_WRITTEN, random_program  # tests/programs/program_samples.py

GLOBAL_PROGRAM = """
def train(w, g, m, v, lr, t):
    c = clip_by_global_norm(g, 0.5)
    m = interp(c, m, 0.9)
    s = norm(m) + global_norm(m) * cosine_sim(g, m)
    update = (m / (s + 1.0) + w * 0.1) * lr
    return update, m, v
"""


def _mlp(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    return model.to(dtype)


def _train(model: torch.nn.Module, step: Callable[[], None], steps: int = 100) -> torch.Tensor:
    data = torch.randn(32, 8, generator=torch.Generator().manual_seed(1), dtype=next(model.parameters()).dtype)
    target = torch.sin(data[:, :4] * 3)
    for _ in range(steps):
        model.zero_grad()
        torch.nn.functional.mse_loss(model(data), target).backward()
        step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _lion_step(params: list[torch.nn.Parameter], state: dict, lr: float, b1: float = 0.9, b2: float = 0.99) -> None:
    """Lion (Chen et al. 2023): c = b1 m + (1 - b1) g; w -= lr sign(c); m = b2 m + (1 - b2) g."""
    with torch.no_grad():
        for p in params:
            m = state.setdefault(p, torch.zeros_like(p))
            c = b1 * m + (1 - b1) * p.grad
            p -= lr * torch.sign(c)
            state[p] = b2 * m + (1 - b2) * p.grad


# adam/adamw: the language's division adds 1e-8 to the bias-correction denominators too (1e-5 relative at t = 1),
# hence the looser tolerance; the exact program semantics are checked against the reference below.
TORCH_REFERENCES = {
    "adamw": (lambda ps, lr: torch.optim.AdamW(ps, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), 3e-5),
    "adam": (lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.999), eps=1e-8), 3e-5),
    "sgd": (lambda ps, lr: torch.optim.SGD(ps, lr=lr), 1e-6),
    "momentum": (lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9), 1e-6),
    "nesterov": (lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True), 1e-6),
}


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("name", sorted(TORCH_REFERENCES))
def test_library_optimizers_match_torch(name: str, foreach: bool) -> None:
    make, atol = TORCH_REFERENCES[name]
    lr = 1e-2 if name in ("adam", "adamw") else 5e-2
    ours, theirs = _mlp(), _mlp()
    exported = optimizer_class(library.get(name))(ours.parameters(), lr=lr, foreach=foreach)
    reference = make(list(theirs.parameters()), lr)
    got, expected = _train(ours, exported.step), _train(theirs, reference.step)
    assert (got - expected).abs().max().item() < atol
    assert (got - _train(_mlp(), lambda: None, steps=0)).abs().max() > 100 * atol  # it did train


@pytest.mark.parametrize("foreach", [True, False])
def test_lion_matches_the_lion_formula(foreach: bool) -> None:
    ours, theirs = _mlp(), _mlp()
    exported = optimizer_class(library.get("lion"))(ours.parameters(), lr=1e-3, foreach=foreach)
    state: dict = {}
    params = list(theirs.parameters())
    got = _train(ours, exported.step)
    expected = _train(theirs, lambda: _lion_step(params, state, 1e-3))
    assert (got - expected).abs().max().item() < 1e-6


def _reference_run(program: programs.Program, foreach: bool, rng: np.random.Generator, k: int = 3, n: int = 4,
                   steps: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Parameters after ``steps`` steps of the exported optimizer and of ``programs.reference_step``."""
    w = rng.normal(size=(k, n))
    params = [torch.nn.Parameter(torch.tensor(row)) for row in w]
    optimizer = optimizer_class(program)(params, lr=0.05, foreach=foreach)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, steps + 1):
        grad = rng.normal(size=(k, n))
        for p, row in zip(params, grad):
            p.grad = torch.tensor(row)
        optimizer.step()
        update, m, v = programs.reference_step(program, w, grad, m, v, 0.05, t)
        w = w - update
    return np.stack([p.detach().numpy() for p in params]), w


@pytest.mark.parametrize("foreach", [True, False])
def test_programs_match_the_reference_semantics(foreach: bool) -> None:
    rng = np.random.default_rng(0)
    samples = [library.get(name) for name in library.names()] + [programs.parse(t) for t in HAND_WRITTEN]
    samples += [random_program(rng, int(rng.integers(1, 12)), share) for share in (0.0, 0.6) for _ in range(60)]
    samples.append(programs.parse(GLOBAL_PROGRAM))
    for program in samples:
        with np.errstate(all="ignore"):
            got, expected = _reference_run(program, foreach, rng)
        np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9, equal_nan=True, err_msg=str(program))


SHAPES = [(3, 4), (4,), (), (2, 3, 2), (5,)]


def _flat_run(program: programs.Program, params: list[torch.Tensor], grads: list[torch.Tensor], steps: int) -> torch.Tensor:
    """The compiled program on the flat concatenation (float64): per-tensor segments, global over all."""
    compiled = programs.compile(program, [p.numel() for p in params])
    w = torch.cat([p.detach().double().flatten() for p in params])
    g = torch.cat([x.double().flatten() for x in grads])
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t in range(1, steps + 1):
        update, m, v = compiled(w, g * t, m, v, 0.05, t)
        w = w - update
    return w


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("dtypes", ["float64", "mixed"])
def test_reductions_cover_tensors_and_the_whole_group(foreach: bool, dtypes: str) -> None:
    program = programs.parse(GLOBAL_PROGRAM)
    generator = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(s, generator=generator, dtype=torch.float64)) for s in SHAPES]
    if dtypes == "mixed":  # two buckets (float32, float64) meet at each global reduction
        params = [torch.nn.Parameter(p.detach().float()) if i % 2 else p for i, p in enumerate(params)]
    grads = [torch.randn(s, generator=generator, dtype=torch.float64) for s in SHAPES]
    expected = _flat_run(program, params, grads, steps=3)
    optimizer = optimizer_class(program)(params, lr=0.05, foreach=foreach)
    for t in range(1, 4):
        for p, g in zip(params, grads):
            p.grad = (g * t).to(p.dtype)
        optimizer.step()
    got = torch.cat([p.detach().double().flatten() for p in params])
    tolerance = 1e-12 if dtypes == "float64" else 1e-5
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)


def test_parameters_without_gradients_are_skipped_and_keep_their_own_step() -> None:
    ours, theirs = _mlp(), _mlp()
    exported = optimizer_class(library.get("adamw"))(ours.parameters(), lr=1e-2, foreach=True)
    reference = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.01, foreach=True)
    for model, optimizer in ((ours, exported), (theirs, reference)):
        bias = list(model.parameters())[1]

        def step(model=model, optimizer=optimizer, bias=bias, calls=[0]) -> None:  # noqa: B006
            calls[0] += 1
            if calls[0] % 3 == 0:
                bias.grad = None  # skipped this step: its step count lags
            optimizer.step()

        _train(model, step, steps=20)
    got = torch.cat([p.detach().flatten() for p in ours.parameters()])
    expected = torch.cat([p.detach().flatten() for p in theirs.parameters()])
    assert (got - expected).abs().max() < 3e-5
    bias = list(ours.parameters())[1]
    assert exported.state[bias]["step"] == 14


def _import(path: Path, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing the generated file, as a user would
    return module


@pytest.mark.parametrize("text", ["adamw", "lion", "nesterov", GLOBAL_PROGRAM, HAND_WRITTEN[0], HAND_WRITTEN[3]])
def test_module_written_to_a_file_behaves_like_the_class(text: str, tmp_path: Path) -> None:
    program = library.get(text) if text in library.names() else programs.parse(text)
    path = tmp_path / "discovered_optimizer.py"
    path.write_text(optimizer_source(program, "Discovered", default_lr=0.01))
    generated = _import(path, f"discovered_{abs(hash(text))}").Discovered
    built = optimizer_class(program, "Discovered", default_lr=0.01)
    assert inspect.getdoc(generated) == inspect.getdoc(built)
    assert inspect.signature(generated) == inspect.signature(built)
    for foreach in (True, False):
        models = [_mlp(torch.float64), _mlp(torch.float64)]
        optimizers = [cls(m.parameters(), foreach=foreach) for cls, m in zip((generated, built), models)]
        results = [_train(m, o.step, steps=5) for m, o in zip(models, optimizers)]
        assert torch.equal(results[0], results[1])
        for p, q in zip(models[0].parameters(), models[1].parameters()):
            states = optimizers[0].state[p], optimizers[1].state[q]
            assert states[0].keys() == states[1].keys()
            assert all(torch.equal(states[0][k], states[1][k]) for k in states[0] if k != "step")


def test_source_needs_only_torch() -> None:
    source = optimizer_source(library.get("adamw"), "AdamWDiscovered")
    imports = {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "math", "torch"}
    assert "m = interp(g, m, beta1)" in source and "update = (m_hat / sqrt(v_hat) + w * weight_decay) * lr" in source


@pytest.mark.parametrize("lr", [-1e-3, math.nan, math.inf, "0.1", True, None])
def test_bad_learning_rates_are_rejected(lr: object) -> None:
    cls = optimizer_class(library.get("lion"))
    with pytest.raises(ValueError, match="learning rate"):
        cls(_mlp().parameters(), lr=lr)
    with pytest.raises(ValueError, match="learning rate"):
        cls([{"params": _mlp().parameters(), "lr": lr}])


def test_bad_arguments_are_rejected() -> None:
    cls = optimizer_class(library.get("lion"))
    with pytest.raises(ValueError, match="foreach"):
        cls(_mlp().parameters(), foreach="yes")
    with pytest.raises(ValueError, match="identifier"):
        optimizer_class(library.get("lion"), name="not a name")
    with pytest.raises(ValueError, match="learning rate"):
        optimizer_class(library.get("lion"), default_lr=-1.0)


def test_defaults_groups_and_docstring() -> None:
    cls = optimizer_class(library.get("lion"), "Lion", default_lr=1e-4)
    assert cls.__name__ == "Lion" and "sign(c)" in cls.__doc__ and issubclass(cls, torch.optim.Optimizer)
    model = _mlp()
    first, second = list(model.parameters())[:2], list(model.parameters())[2:]
    optimizer = cls([{"params": first}, {"params": second, "lr": 0.5}])
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 0.5]
    before = [p.detach().clone() for p in model.parameters()]
    _train(model, optimizer.step, steps=1)
    moved = [(p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before)]
    assert moved[0] == pytest.approx(1e-4, rel=1e-3) and moved[2] == pytest.approx(0.5, rel=1e-3)  # |sign| = 1


def test_closure_is_evaluated_with_gradients() -> None:
    model = _mlp()
    optimizer = optimizer_class(library.get("adamw"))(model.parameters())
    data = torch.randn(4, 8)
    calls = []

    def closure() -> torch.Tensor:
        calls.append(1)
        optimizer.zero_grad()
        loss = model(data).square().mean()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert calls == [1] and loss.grad_fn is not None  # evaluated with gradients enabled, and returned
    assert all(optimizer.state[p]["step"] == 1 for p in model.parameters())


@pytest.mark.parametrize("foreach", [True, False])
def test_state_dict_round_trip_resumes_identically(foreach: bool) -> None:
    cls = optimizer_class(library.get("adamw"))
    model = _mlp(torch.float64)
    optimizer = cls(model.parameters(), lr=1e-2, foreach=foreach)
    _train(model, optimizer.step, steps=5)
    saved_model, saved_state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    assert {k for s in saved_state["state"].values() for k in s} == {"step", "exp_avg", "exp_avg_sq"}
    expected = _train(model, optimizer.step, steps=5)
    resumed = _mlp(torch.float64)
    resumed.load_state_dict(saved_model)
    resumed_optimizer = cls(resumed.parameters(), lr=123.0, foreach=foreach)
    resumed_optimizer.load_state_dict(saved_state)
    assert resumed_optimizer.param_groups[0]["lr"] == 1e-2
    assert torch.equal(_train(resumed, resumed_optimizer.step, steps=5), expected)


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the state buffers (the step counters aside)."""
    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for k, v in s.items()
               if isinstance(v, torch.Tensor) and k != "step")


def test_state_is_lazy_and_only_what_the_program_reads() -> None:
    model = _mlp()
    frozen = list(model.parameters())[0]
    frozen.requires_grad_(False)
    expected = {"adamw": {"step", "exp_avg", "exp_avg_sq"}, "lion": {"step", "exp_avg"}, "sgd": {"step"},
                "rmsprop": {"step", "exp_avg_sq"}}
    reference = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert not optimizer_class(library.get("adamw"))(model.parameters()).state  # nothing before the first step
    _train(model, reference.step, steps=1)
    for name, keys in expected.items():
        optimizer = optimizer_class(library.get(name))(model.parameters())
        _train(model, optimizer.step, steps=1)
        assert frozen not in optimizer.state  # no gradient, no state
        assert all(set(s) == keys for s in optimizer.state.values()), name
        ratio = _state_bytes(optimizer) / _state_bytes(reference)
        assert ratio == pytest.approx((len(keys) - 1) / 2), name  # AdamW keeps two buffers


def test_sparse_gradients_are_rejected() -> None:
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    optimizer = optimizer_class(library.get("lion"))(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        optimizer.step()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_cuda_matches_cpu(name: str) -> None:
    cls = optimizer_class(library.get(name))
    results = []
    for device in ("cpu", "cuda"):
        model = _mlp(torch.float64).to(device)
        optimizer = cls(model.parameters(), lr=1e-3)
        assert optimizer.param_groups[0]["foreach"] is None
        data = torch.randn(32, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)
        for _ in range(10):
            optimizer.zero_grad()
            model(data).square().mean().backward()
            optimizer.step()
        results.append(torch.cat([p.detach().cpu().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name,kernels", [
    ("adamw", ["lerp_", "mul_", "addcmul_", "sqrt", "mul_", "add_", "mul_", "addcdiv_"]),  # torch's AdamW: 8 too
    ("lion", ["lerp", "sign_", "lerp_", "axpy_"]),
    ("momentum", ["mul_", "axpy_", "axpy_"]),
    ("rmsprop", ["mul_", "addcmul_", "sqrt", "add_", "addcdiv_"]),
])
def test_known_optimizers_lower_to_fused_kernels(name: str, kernels: list[str]) -> None:
    from programs.export_lowering import lower

    lowered = lower(library.get(name))
    assert [ins.op for ins in lowered.instructions if ins.kind == "kernel"] == kernels


def test_works_with_lr_schedulers() -> None:
    model = _mlp()
    optimizer = optimizer_class(library.get("signsgd"))(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for expected_move in (0.1, 0.05):
        before = next(model.parameters()).detach().clone()
        _train(model, optimizer.step, steps=1)
        scheduler.step()
        assert (next(model.parameters()).detach() - before).abs().max().item() == pytest.approx(expected_move, rel=1e-5)
