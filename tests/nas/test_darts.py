from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.data import TensorDataset

from nas import NasError
from nas.architect import Architect, ArchitectConfig
from nas.darts import DartsConfig, EpochRecord, search, sharpdarts_config
from nas.genotypes import Genotype
from nas.supernet import Supernet, SupernetConfig

PRIMS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
NET = SupernetConfig(layers=3, C=4, steps=2, multiplier=2, num_classes=3, primitives=PRIMS)


def _data(n: int, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def _model_and_optimizer(lr: float) -> tuple[Supernet, torch.optim.SGD]:
    torch.manual_seed(0)
    model = Supernet(NET, in_channels=1, dim=1).double()
    return model, torch.optim.SGD(model.weights(), lr=lr, momentum=0.9, weight_decay=3e-4)


def test_first_order_is_the_validation_gradient() -> None:
    model, w_opt = _model_and_optimizer(0.1)
    (xt, yt), (xv, yv) = _data(8, (1, 8), 1), _data(8, (1, 8), 2)
    xt, xv = xt.double(), xv.double()
    got = Architect(model, w_opt, ArchitectConfig(order=1)).hypergradient(xt, yt, xv, yv)
    expected = torch.autograd.grad(F.cross_entropy(model(xv), yv), model.arch_parameters())
    assert all(torch.allclose(g, e) for g, e in zip(got, expected))


def test_second_order_matches_the_exact_hypergradient() -> None:
    """The finite-difference Hessian-vector product against exact double backprop through the virtual step (a
    small radius in float64: DARTS's 0.01 crosses ReLU / max-pool kinks and is only a rough approximation)."""
    xi = 0.5
    model, w_opt = _model_and_optimizer(xi)
    (xt, yt), (xv, yv) = _data(8, (1, 8), 1), _data(8, (1, 8), 2)
    xt, xv = xt.double(), xv.double()
    architect = Architect(model, w_opt, ArchitectConfig(order=2, fd_radius=1e-5))
    state = {n: b.clone() for n, b in model.named_buffers()}
    weights_before = [w.detach().clone() for w in model.weights()]
    got = architect.hypergradient(xt, yt, xv, yv)

    names = [n for n, _ in model.named_parameters() if not n.startswith("alpha_")]
    weights = model.weights()

    def loss(ws: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = {n: b.clone() for n, b in state.items()} | dict(zip(names, ws))
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    grads = torch.autograd.grad(loss(weights, xt, yt), weights, create_graph=True)
    unrolled = [w - xi * (g + 3e-4 * w) for w, g in zip(weights, grads)]
    exact = torch.autograd.grad(loss(unrolled, xv, yv), model.arch_parameters())
    first = torch.autograd.grad(loss(weights, xv, yv), model.arch_parameters())
    for g, e, f in zip(got, exact, first):
        error = (g - e).norm() / e.norm()
        assert error < 1e-6, error
        assert (f - e).norm() / e.norm() > 0.5  # the implicit term matters here
    assert all(torch.equal(w, b) for w, b in zip(model.weights(), weights_before))  # w untouched


def test_architect_step_moves_only_alpha() -> None:
    model, w_opt = _model_and_optimizer(0.1)
    (xt, yt), (xv, yv) = _data(8, (1, 8), 1), _data(8, (1, 8), 2)
    before = [w.detach().clone() for w in model.weights()]
    alpha = model.alpha_normal.detach().clone()
    Architect(model, w_opt, ArchitectConfig(order=2)).step(xt.double(), yt, xv.double(), yv)
    assert not torch.equal(model.alpha_normal, alpha)
    assert all(torch.equal(w, b) for w, b in zip(model.weights(), before))


@pytest.mark.parametrize(
    ("config", "shape"),
    [
        (DartsConfig(net=NET, arch=ArchitectConfig(order=1), epochs=2, batch_size=8), (3, 8, 8)),
        (DartsConfig(net=NET, arch=ArchitectConfig(order=2), epochs=1, batch_size=8), (3, 8, 8)),
        (sharpdarts_config(net=dataclasses.replace(NET, weighting="max-w"), epochs=2, warmup_epochs=1, batch_size=8),
         (1, 16)),
    ],
    ids=["first-order-2d", "second-order-2d", "sharpdarts-1d"],
)
def test_tiny_search_end_to_end(config: DartsConfig, shape: tuple[int, ...]) -> None:
    records: list[EpochRecord] = []
    train, val = TensorDataset(*_data(16, shape, 1)), _data(16, shape, 2)
    result = search(config, train, val, device="cpu", on_epoch=records.append)
    assert isinstance(result.genotype, Genotype) and result.genotype.steps() == 2
    assert result.history == tuple(records) and [r.epoch for r in records] == list(range(1, config.epochs + 1))
    assert {op for op, _ in result.genotype.normal + result.genotype.reduce} <= set(PRIMS) - {"none"}
    last = records[-1]
    assert len(last.alpha_normal) == 5 and len(last.alpha_normal[0]) == 4
    initial = Supernet(config.net, in_channels=shape[0], dim=len(shape) - 1).alpha_reduce
    assert not torch.allclose(torch.tensor(last.alpha_reduce), initial)  # the architecture steps moved α
    assert 0 <= last.val_accuracy <= 1 and last.train_loss > 0 and last.lr == config.lr_at(config.epochs)
    assert last.genotype == result.genotype
    if config.arch.order == 1:  # deterministic given the config
        again = search(config, train, val)
        assert again.history[-1].alpha_reduce == last.alpha_reduce


def test_search_input_errors() -> None:
    config = DartsConfig(net=NET, epochs=1)
    x, y = _data(8, (3, 8, 8), 0)
    with pytest.raises(NasError, match="labels must be int64 in 0..2"):
        search(config, (x, y + 5), (x, y))
    with pytest.raises(NasError, match="expected inputs"):
        search(config, (x.flatten(1), y), (x, y))
    with pytest.raises(NasError, match="differ in shape"):
        search(config, (x, y), (x[:, :1], y))
    with pytest.raises(NasError, match="warmup_epochs"):
        DartsConfig(epochs=3, warmup_epochs=3)
    with pytest.raises(NasError, match="order"):
        ArchitectConfig(order=3)
