"""The one training loop: epochs, torch schedulers, resume from an epoch, divergence checks, the shared SGD config."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from evaluators.fit import Diverged, EpochStats, LossGuard, SGDConfig, TrainStep, fit, shuffled_batches
from evaluators.schedule import cosine_annealing, cosine_power_annealing


class LinearStep(TrainStep):
    """Least squares on made-up data: SGD steps on shuffled batches; the record is (epoch, lr, mean loss)."""

    def __init__(self, config: SGDConfig, n: int = 40) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = torch.nn.Linear(3, 1)
        self.optimizer = config.optimizer(self.model.parameters())
        self.generator = torch.Generator().manual_seed(config.seed)
        self.config = config
        self.begun: list[tuple[int, float | None]] = []

    def batches(self, epoch: int) -> Any:
        return shuffled_batches(self.x, self.y, self.config.batch_size, self.generator)

    def begin_epoch(self, epoch: int, lr: float | None) -> None:
        self.begun.append((epoch, lr))

    def __call__(self, batch: Any) -> tuple[torch.Tensor, int, int]:
        _, x, y = batch
        loss = torch.nn.functional.mse_loss(self.model(x).squeeze(1), y)
        if not torch.isfinite(loss):
            raise Diverged(f"loss is {loss.item()}")
        self.optimizer.zero_grad()
        loss.backward()
        self.config.clip(self.model.parameters())
        self.optimizer.step()
        return loss.detach(), 0, len(y)

    def end_epoch(self, stats: EpochStats) -> tuple[int, float | None, float]:
        return stats.epoch, stats.lr, stats.mean_loss()


CONFIG = SGDConfig(epochs=6, batch_size=8, lr=0.1, lr_min=0.001, lr_schedule="cosine_power", warmup_epochs=2)


def test_the_scheduler_is_torch_lambda_lr_with_the_exact_schedule() -> None:
    step = LinearStep(CONFIG)
    scheduler = CONFIG.scheduler(step.optimizer)
    records = fit(step, CONFIG.epochs, scheduler=scheduler)
    assert isinstance(scheduler, LambdaLR)
    expected = [cosine_power_annealing(e, 6, 0.1, 0.001, 2.0, 2) for e in range(1, 7)]
    assert [lr for _, lr, _ in records] == expected == [lr for _, lr in step.begun]  # exactly, not approximately
    assert [e for e, _, _ in records] == list(range(1, 7)) and records[-1][2] < records[0][2]
    cosine = dataclasses.replace(CONFIG, lr_schedule="cosine", warmup_epochs=0)
    assert [cosine.lr_at(e) for e in (1, 6)] == [cosine_annealing(e, 6, 0.1, 0.001) for e in (1, 6)]


def test_resuming_from_an_epoch_continues_exactly() -> None:
    whole = LinearStep(CONFIG)
    expected = fit(whole, CONFIG.epochs, scheduler=CONFIG.scheduler(whole.optimizer))
    first = LinearStep(CONFIG)
    head = fit(first, 3, scheduler=CONFIG.scheduler(first.optimizer))
    saved = copy.deepcopy({"model": first.model.state_dict(), "optimizer": first.optimizer.state_dict(),
                           "generator": first.generator.get_state()})
    second = LinearStep(CONFIG)  # fresh objects, as after a restart
    second.model.load_state_dict(saved["model"])
    second.optimizer.load_state_dict(saved["optimizer"])
    second.generator.set_state(saved["generator"])
    tail = fit(second, CONFIG.epochs, start_epoch=4, scheduler=CONFIG.scheduler(second.optimizer, start_epoch=4))
    assert head + tail == expected
    assert all(torch.equal(p, q) for p, q in zip(whole.model.parameters(), second.model.parameters()))


def test_a_diverging_step_stops_fit_after_the_epochs_already_reported() -> None:
    config = dataclasses.replace(CONFIG, lr=50.0, lr_min=0.0, grad_clip=None)
    step, seen = LinearStep(config), []
    with pytest.raises(Diverged, match="loss is (nan|inf)"):
        fit(step, config.epochs, scheduler=config.scheduler(step.optimizer), on_epoch=seen.append)
    assert 0 < len(seen) < config.epochs


def test_loss_guard_names_the_first_bad_step() -> None:
    guard = LossGuard(steps=30, factor=100.0, every=10)
    with pytest.raises(Diverged, match="^nan loss at step 1$"):
        guard.add(torch.tensor(float("nan")))
    guard = LossGuard(steps=30, factor=100.0, every=10)
    losses = [2.0] * 12 + [float("inf")]
    with pytest.raises(Diverged, match="^inf loss at step 13$") as raised:
        for loss in losses + [1.0] * 10:
            guard.add(torch.tensor(loss))
    assert raised.value.step == 13 and guard.t == 20  # found at the check after step 20
    guard = LossGuard(steps=5, factor=100.0, every=10)
    with pytest.raises(Diverged, match=r"^loss diverged at step 4: 300 > 100 × first-step loss 2$"):
        for loss in (2.0, 3.0, 4.0, 300.0, 1.0):  # the last step is always checked
            guard.add(torch.tensor(loss))


@pytest.mark.parametrize(("bad", "fragment"), [
    (dict(epochs=0), "epochs must be >= 1"), (dict(lr=0.0), "lr and grad_clip"), (dict(lr_min=1.0), "lr_min <= lr"),
    (dict(grad_clip=0.0), "grad_clip"), (dict(lr_schedule="step"), "lr_schedule must be one of"),
    (dict(warmup_epochs=6), r"warmup_epochs must be in 0\.\.5"), (dict(momentum=-1.0), "momentum"),
])  # fmt: skip
def test_bad_sgd_configurations_raise_the_subclass_error(bad: dict[str, Any], fragment: str) -> None:
    from nas import NasError
    from nas.darts import DartsConfig

    with pytest.raises(ValueError, match=f"SGDConfig.*{fragment}"):
        dataclasses.replace(CONFIG, **bad)
    with pytest.raises(NasError, match=f"DartsConfig.*{fragment}"):
        DartsConfig(**{"epochs": 6, **bad})


def test_nas_configs_share_the_sgd_fields_and_read_old_stored_keys() -> None:
    from nas.darts import DartsConfig
    from nas.groundtruth import TrainBudget
    from nas.oneshot_train import OneShotConfig
    from nas.train import TrainConfig

    for config in (DartsConfig(), TrainBudget(), OneShotConfig(), TrainConfig()):
        assert isinstance(config, SGDConfig)
    assert TrainBudget().nesterov and TrainBudget().grad_clip is None and TrainBudget().lr_min == 0.0
    stored = dataclasses.asdict(DartsConfig(epochs=3, lr=0.05))
    old = {("w_" + k if k in ("lr", "lr_min", "momentum", "weight_decay") else k): v for k, v in stored.items()}
    old.pop("nesterov")  # older runs had no such field
    assert DartsConfig.from_dict(old) == DartsConfig.from_dict(stored) == DartsConfig(epochs=3, lr=0.05)
