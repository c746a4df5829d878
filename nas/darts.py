"""DARTS / sharpDARTS architecture search on ``evaluators.fit``: the bilevel step.

Each step (``BilevelStep``) takes one training batch and one validation batch (the caller splits the data, DARTS:
50/50): first the architecture step on α (``Architect``, first or second order), then the weight step on w (SGD with
momentum, weight decay and gradient clipping). The weights' learning rate follows ``cosine_annealing`` (DARTS) or
``cosine_power_annealing`` (sharpDARTS) by epoch. After every epoch the step measures the validation split, derives
the genotype and reports an ``EpochRecord`` to ``on_epoch`` — the hook through which the engine records progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping, Union

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from evaluators.fit import EpochStats, SGDConfig, TrainStep, evaluate, fit, shuffled_batches
from nas import darts_state
from nas.architect import Architect, ArchitectConfig
from nas.errors import NasError
from nas.genotypes import Genotype
from nas.spaces import SHARPDARTS_PRIMITIVES
from nas.supernet import Supernet, SupernetConfig

Data = Union[TensorDataset, tuple[torch.Tensor, torch.Tensor]]
Pair = tuple[torch.Tensor, torch.Tensor]
Alpha = tuple[tuple[float, ...], ...]


LEGACY_KEYS = {"w_lr": "lr", "w_lr_min": "lr_min", "w_momentum": "momentum", "w_weight_decay": "weight_decay"}
"""Stored configurations before the SGD fields were shared (``SGDConfig``) named the weights' fields so."""


@dataclass(frozen=True)
class DartsConfig(SGDConfig):
    """A DARTS search; the defaults are the paper's (Liu et al. 2019, DARTS).

    ``net``: the supernet; ``arch``: α's optimizer and the order; the weights w: ``SGDConfig`` (SGD ``lr`` annealed
    to ``lr_min`` by ``lr_schedule`` — "cosine", or "cosine_power" with ``lr_power`` and ``warmup_epochs`` —,
    momentum, weight decay, gradient norm clipped to ``grad_clip``); ``seed`` decides the weights' initialisation and
    the batch order.
    """

    error: ClassVar[type[Exception]] = NasError

    epochs: int = 50
    lr_min: float = 0.001
    net: SupernetConfig = field(default_factory=SupernetConfig)
    arch: ArchitectConfig = field(default_factory=ArchitectConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DartsConfig:
        """The configuration of ``dataclasses.asdict`` (``w_lr`` etc. of older runs read as ``lr`` etc.)."""
        settings = {LEGACY_KEYS.get(k, k): v for k, v in data.items()}
        settings["net"] = SupernetConfig(**settings["net"])
        settings["arch"] = ArchitectConfig(**{**settings["arch"], "betas": tuple(settings["arch"]["betas"])})
        return cls(**settings)


def sharpdarts_config(**overrides: object) -> DartsConfig:
    """sharpDARTS's search (Hundt et al. 2019): its primitives, Max-W weighting, cosine power annealing (power 2, 5
    warm-up epochs); ``net`` / ``arch`` / other ``DartsConfig`` fields may be overridden."""
    net = overrides.pop("net", SupernetConfig(primitives=SHARPDARTS_PRIMITIVES, weighting="max-w"))
    settings: dict[str, object] = {"lr_schedule": "cosine_power", "lr_power": 2.0, "warmup_epochs": 5}
    settings.update(overrides)
    return DartsConfig(net=net, **settings)  # type: ignore[arg-type]


@dataclass(frozen=True)
class EpochRecord:
    """What one search epoch did: the learning rate, mean training loss/accuracy over its steps, validation
    loss/accuracy (evaluation mode) after it, α (raw logits, rows = edges) and the genotype α selects."""

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    alpha_normal: Alpha
    alpha_reduce: Alpha
    genotype: Genotype
    seconds: float


@dataclass(frozen=True)
class DartsResult:
    """The derived genotype (from the final α) and the record of every epoch."""

    genotype: Genotype
    history: tuple[EpochRecord, ...]
    config: DartsConfig


def search(
    config: DartsConfig,
    train_data: Data,
    val_data: Data,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    *,
    resume: Mapping[str, Any] | None = None,
    on_state: Callable[[dict[str, Any]], None] | None = None,
    on_batch: Callable[[int, int, torch.Tensor], None] | None = None,
) -> DartsResult:
    """Run a DARTS search: ``train_data`` trains w, ``val_data`` trains α and measures each epoch.

    Data are ``TensorDataset``s (or ``(x, y)`` pairs) of inputs ``(N, channels, *S)`` — ``S`` of 1 axis for
    sequences, 2 for images — and integer class labels below ``config.net.num_classes``. Deterministic given
    ``config`` on a given device. ``on_epoch`` is called after every epoch (raise from it to stop the search).
    ``on_state`` receives, before ``on_epoch``, the state after each epoch (``nas.darts_state.capture``: save it
    with ``torch.save``); passing one back as ``resume`` continues the search after that epoch exactly.
    ``on_batch(epoch, batch, loss)`` follows every step (``evaluators.fit.fit``: for progress inside long epochs).
    """
    x_train, y_train = _tensors("train_data", train_data, config)
    x_val, y_val = _tensors("val_data", val_data, config)
    if x_train.shape[1:] != x_val.shape[1:]:
        raise NasError(f"train and validation inputs differ in shape: {x_train.shape[1:]} vs {x_val.shape[1:]}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Supernet(config.net, in_channels=x_train.shape[1], dim=x_train.dim() - 2)
    model = model.to(device)
    w_optimizer = config.optimizer(model.weights())
    architect = Architect(model, w_optimizer, config.arch)
    generator = torch.Generator().manual_seed(config.seed + 1)
    history: list[EpochRecord] = []
    start = 1
    if resume is not None:
        start = darts_state.restore(resume, model, w_optimizer, architect.optimizer, generator, history)

    def finished(record: EpochRecord) -> None:
        history.append(record)
        if on_state is not None:
            on_state(darts_state.capture(record.epoch, model, w_optimizer, architect.optimizer, generator, history))
        if on_epoch is not None:
            on_epoch(record)

    if start <= config.epochs:
        step = BilevelStep(model, architect, w_optimizer, config, (x_train, y_train), (x_val, y_val), generator, device)
        fit(step, config.epochs, start_epoch=start, scheduler=config.scheduler(w_optimizer, start), on_epoch=finished,
            on_batch=on_batch)
    return DartsResult(history[-1].genotype, tuple(history), config)


class BilevelStep(TrainStep):
    """DARTS's step on a (training batch, validation batch) pair: α by the architect, then w by SGD; after each
    epoch the validation split is measured and the genotype derived (``EpochRecord``)."""

    def __init__(self, model: Supernet, architect: Architect, w_optimizer: torch.optim.Optimizer,
                 config: DartsConfig, train: Pair, val: Pair, generator: torch.Generator,
                 device: str | torch.device) -> None:
        self.model, self.architect, self.w_optimizer, self.config = model, architect, w_optimizer, config
        self.train, self.val, self.generator, self.device = train, val, generator, device
        self.weights = model.weights()

    def batches(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        size, generator = self.config.batch_size, self.generator
        return zip(shuffled_batches(*self.train, size, generator), shuffled_batches(*self.val, size, generator))

    def __call__(self, batch: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
        (_, x, y), (_, x_val, y_val) = batch
        x, y, x_val, y_val = (t.to(self.device) for t in (x, y, x_val, y_val))
        self.architect.step(x, y, x_val, y_val)  # α first, then w
        self.w_optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        torch.autograd.backward(loss, inputs=self.weights)
        self.config.clip(self.weights)
        self.w_optimizer.step()
        return loss.detach(), (logits.argmax(dim=1) == y).sum(), len(y)

    def end_epoch(self, stats: EpochStats) -> EpochRecord:
        model = self.model
        val_loss, val_accuracy = evaluate(model, *self.val, self.config.batch_size, self.device)
        return EpochRecord(
            stats.epoch, stats.lr, stats.mean_loss(), stats.accuracy(), val_loss, val_accuracy,
            _alpha(model.alpha_normal), _alpha(model.alpha_reduce), model.genotype(),
            time.perf_counter() - stats.started,
        )  # fmt: skip


def search_epoch(model: Supernet, architect: Architect, w_optimizer: torch.optim.Optimizer, config: DartsConfig,
                 train: Pair, val: Pair, generator: torch.Generator, epoch: int,
                 device: str | torch.device = "cpu") -> EpochRecord:
    """Epoch ``epoch`` (1-based) of a search whose state is these objects (few-shot sub-supernets train so)."""
    step = BilevelStep(model, architect, w_optimizer, config, train, val, generator, device)
    return fit(step, epoch, start_epoch=epoch, scheduler=config.scheduler(w_optimizer, epoch))[0]


def _tensors(name: str, data: Data, config: DartsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data.tensors if isinstance(data, TensorDataset) else data
    if x.dim() not in (3, 4) or len(x) != len(y) or len(y) == 0:
        raise NasError(f"{name}: expected inputs (N, channels, L) or (N, channels, H, W) and N labels, "
                       f"got {tuple(x.shape)} and {tuple(y.shape)}")  # fmt: skip
    if y.dtype != torch.long or y.min() < 0 or y.max() >= config.net.num_classes:
        raise NasError(f"{name}: labels must be int64 in 0..{config.net.num_classes - 1}")
    return x.float(), y


def _alpha(alpha: torch.Tensor) -> Alpha:
    return tuple(tuple(float(v) for v in row) for row in alpha.detach().cpu().tolist())
