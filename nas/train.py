"""Training a genotype's evaluation network from scratch (DARTS's ``train.py``) on ``evaluators.fit``.

SGD with momentum and weight decay; the learning rate follows ``cosine_annealing`` (DARTS: 0.025 → 0 over the
epochs) or sharpDARTS's ``cosine_power_annealing`` by epoch; gradient norm clipped to 5. Options, on training
batches only: DARTS's CIFAR augmentation (``crop_flip``: random crop after zero-padding by 4, horizontal flip),
cutout (a square — on sequences a segment — of side ``cutout`` zeroed at a random centre),
drop-path with probability ``drop_path · (epoch − 1) / epochs`` (DARTS's linear ramp from 0), and an auxiliary head
whose loss is added with weight ``auxiliary_weight`` (DARTS: 0.4). After every epoch the validation split is
measured and a ``TrainEpoch`` goes to ``on_epoch``. A non-finite loss ends training with a failed ``TrainResult``
naming where it happened. Configurations and results are frozen dataclasses with ``to_dict`` / ``from_dict`` so
they travel to worker processes as JSON.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, ClassVar, Iterator, Mapping, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from evaluators.data import SPECS as DATASETS  # noqa: F401 (re-exported: the dataset specs training takes)
from evaluators.data import DataSplits
from evaluators.fit import Diverged, EpochStats, SGDConfig, TrainStep, evaluate, fit, shuffled_batches
from nas.errors import NasError
from nas.genotypes import Genotype
from nas.nb201 import NB201Genotype
from nas.nb201_network import NB201NetConfig, build_network
from nas.network import Network, NetworkConfig, count_parameters

Data = Union[TensorDataset, tuple[torch.Tensor, torch.Tensor]]
Pair = tuple[torch.Tensor, torch.Tensor]
TrainData = Union[DataSplits, tuple[Data, Data]]
CROP_PADDING = 4  # DARTS's CIFAR augmentation: RandomCrop(32, padding=4)


@dataclass(frozen=True)
class TrainConfig(SGDConfig):
    """How to train an evaluation network; the defaults are DARTS's CIFAR-10 settings (Liu et al. 2019) without the
    options (the paper adds ``crop_flip``, ``cutout=16``, ``drop_path=0.2``, ``auxiliary_weight=0.4``).

    The SGD fields are ``SGDConfig``'s. ``net``: the network (its ``auxiliary`` flag is set from
    ``auxiliary_weight > 0``); ``seed``: batch order, cutout and drop-path (``net.seed`` decides the initial weights).
    """

    error: ClassVar[type[Exception]] = NasError

    epochs: int = 600
    batch_size: int = 96
    net: NetworkConfig = field(default_factory=NetworkConfig)
    crop_flip: bool = False
    cutout: int = 0
    drop_path: float = 0.0
    auxiliary_weight: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cutout < 0:
            raise NasError(f"TrainConfig: cutout must be >= 0, got {self.cutout}")
        if not 0 <= self.drop_path < 1 or not 0 <= self.auxiliary_weight <= 1:
            raise NasError(f"TrainConfig: drop_path must be in [0, 1) and auxiliary_weight in [0, 1], got "
                           f"{self.drop_path} and {self.auxiliary_weight}")  # fmt: skip
        object.__setattr__(self, "net", replace(self.net, auxiliary=self.auxiliary_weight > 0))

    def drop_path_at(self, epoch: int) -> float:
        """The drop-path probability in ``epoch`` (1-based): DARTS's ``drop_path · (epoch − 1) / epochs``."""
        return self.drop_path * (epoch - 1) / self.epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["net"] = NetworkConfig.from_dict(known.get("net", {}))
        return cls(**known)


@dataclass(frozen=True)
class TrainEpoch:
    """One epoch: learning rate, drop-path probability, mean training loss/accuracy over its batches (with
    augmentation, without the auxiliary loss), validation loss/accuracy after it, and its duration."""

    epoch: int
    lr: float
    drop_path_prob: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainEpoch:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TrainResult:
    """The outcome: ``status`` "ok" or "failed" (then ``reason`` says why and where), every finished epoch, the
    final validation accuracy (None if no epoch finished), the parameters without the auxiliary head, seconds."""

    status: str
    reason: str | None
    history: tuple[TrainEpoch, ...]
    val_accuracy: float | None
    params: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "history": [e.to_dict() for e in self.history]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainResult:
        history = tuple(TrainEpoch.from_dict(e) for e in data["history"])
        return cls(data["status"], data["reason"], history, data["val_accuracy"], data["params"], data["seconds"])


def train_genotype(
    genotype: Genotype | NB201Genotype,
    data: TrainData,
    config: TrainConfig,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[TrainEpoch], None] | None = None,
    on_batch: Callable[[int, int, torch.Tensor], None] | None = None,
) -> TrainResult:
    """Train ``genotype``'s network from scratch on ``data`` (``DataSplits``: train / test, or a (train, validation)
    pair of ``TensorDataset``s or ``(x, y)``) and measure it on the second split after every epoch.

    One recipe for every search space: a DARTS ``Genotype`` builds DARTS's evaluation network (``config.net``), a
    NAS-Bench-201 cell the NB201 network (``config.net.C`` channels, ``config.net.layers`` cells per stage; no
    auxiliary head or drop-path); the training is the same. Inputs are ``(N, channels, L)`` or
    ``(N, channels, H, W)``; labels int64 below ``config.net.num_classes``. Deterministic given (genotype, data,
    config) on a device; the global RNGs are left as they were. Raises ``NasError`` for unusable data; a diverging
    run returns ``status="failed"``. ``on_batch(epoch, batch, loss)`` follows every step (``evaluators.fit.fit``).
    """
    train, val = _splits(data, config.net.num_classes)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=_cuda_devices(device)):
        torch.manual_seed(config.seed)
        model = _network(genotype, config.net, in_channels=train[0].shape[1], dim=train[0].dim() - 2).to(device)
        params = count_parameters(model)
        optimizer = config.optimizer(model.parameters())
        step = GenotypeStep(model, optimizer, config, train, val, torch.Generator().manual_seed(config.seed), device)
        history: list[TrainEpoch] = []

        def finished(record: TrainEpoch) -> None:
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)

        try:
            fit(step, config.epochs, scheduler=config.scheduler(optimizer), on_epoch=finished, on_batch=on_batch)
        except Diverged as diverged:
            return TrainResult("failed", str(diverged), tuple(history), None, params, time.perf_counter() - started)
    final = history[-1].val_accuracy
    return TrainResult("ok", None, tuple(history), final, params, time.perf_counter() - started)


def _network(genotype: Genotype | NB201Genotype, net: NetworkConfig, in_channels: int, dim: int) -> nn.Module:
    if isinstance(genotype, NB201Genotype):
        shape = NB201NetConfig(C=net.C, cells_per_stage=net.layers, num_classes=net.num_classes)
        return _SingleHead(build_network(genotype, shape, in_channels, dim, net.seed))
    return Network(genotype, net, in_channels=in_channels, dim=dim)


class _SingleHead(nn.Module):
    """A network with one output, seen as DARTS's ``(logits, auxiliary logits)`` network without drop-path."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.drop_path_prob = 0.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.network(x), None


class GenotypeStep(TrainStep):
    """One SGD step of an evaluation network: augmentation, drop-path, the auxiliary loss, gradient clipping; after
    each epoch the validation split is measured (``TrainEpoch``)."""

    def __init__(self, model: Network, optimizer: torch.optim.Optimizer, config: TrainConfig, train: Pair,
                 val: Pair, generator: torch.Generator, device: str | torch.device) -> None:
        self.model, self.optimizer, self.config, self.train, self.val = model, optimizer, config, train, val
        self.generator, self.device = generator, device
        self.epoch = self.index = 0

    def batches(self, epoch: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        return shuffled_batches(*self.train, self.config.batch_size, self.generator)

    def begin_epoch(self, epoch: int, lr: float | None) -> None:
        self.epoch, self.index = epoch, 0
        self.model.drop_path_prob = self.config.drop_path_at(epoch)

    def __call__(self, batch: tuple[int, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        config, generator = self.config, self.generator
        self.index += 1
        x, y = batch[1].to(self.device), batch[2].to(self.device)
        if config.crop_flip:
            x = crop_flip(x, CROP_PADDING, generator)
        if config.cutout:
            x = cutout(x, config.cutout, generator)
        logits, aux = self.model(x)
        loss = F.cross_entropy(logits, y)
        total = loss if aux is None else loss + config.auxiliary_weight * F.cross_entropy(aux, y)
        if not math.isfinite(total.item()):
            raise Diverged(f"training loss is {total.item()} at epoch {self.epoch}, step {self.index}")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        config.clip(self.model.parameters())
        self.optimizer.step()
        return loss.detach(), (logits.argmax(dim=1) == y).sum(), len(y)

    def end_epoch(self, stats: EpochStats) -> TrainEpoch:
        val_loss, val_accuracy = evaluate(self.model, *self.val, self.config.batch_size, self.device,
                                          logits_of=_logits)  # fmt: skip
        if not math.isfinite(val_loss):
            raise Diverged(f"validation loss is {val_loss} after epoch {stats.epoch}")
        return TrainEpoch(stats.epoch, stats.lr, self.model.drop_path_prob, stats.mean_loss(), stats.accuracy(),
                          val_loss, val_accuracy, time.perf_counter() - stats.started)  # fmt: skip


def _logits(output: tuple[torch.Tensor, Any]) -> torch.Tensor:
    return output[0]


def crop_flip(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` per example: zero-pad every spatial
    axis by ``padding``, crop the original size at a uniform offset, and reverse the last axis with probability 1/2
    (for sequences: a random shift and reversal)."""
    n, spatial = x.shape[0], x.shape[2:]
    padded = torch.nn.functional.pad(x, (padding, padding) * len(spatial))
    index: list[torch.Tensor] = [torch.arange(n, device=x.device).reshape(n, *[1] * len(spatial))]
    for axis, size in enumerate(spatial):
        offset = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        positions = offset[:, None] + torch.arange(size, device=x.device)
        shape = [n] + [1] * len(spatial)
        shape[1 + axis] = size
        index.append(positions.reshape(shape))
    cropped = padded.movedim(1, -1)[tuple(index)].movedim(-1, 1)  # (N, *S, C) gathered, channels back in place
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device).reshape(n, *[1] * (x.dim() - 1))
    # contiguous: the gathered tensor has channels-last strides, which would switch the convolutions to other
    # kernels (and crashed CPU backward with tiny channel counts)
    return torch.where(flip, cropped.flip(-1), cropped).contiguous()


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """DeVries & Taylor's cutout as in DARTS: per example, a centre uniform over the positions and every position
    within ``[c − length // 2, c + length // 2)`` on each spatial axis (clipped at the border) set to 0."""
    n, spatial = x.shape[0], x.shape[2:]
    window = torch.ones((n, 1, *spatial), dtype=torch.bool, device=x.device)
    for axis, size in enumerate(spatial):
        centre = torch.randint(0, size, (n, 1), generator=generator).to(x.device)
        position = torch.arange(size, device=x.device)
        inside = (position >= centre - length // 2) & (position < centre + length // 2)
        shape = [n, 1] + [1] * len(spatial)
        shape[2 + axis] = size
        window = window & inside.reshape(shape)
    mask = ~window
    return x * mask.to(x.dtype)


def _splits(data: TrainData, num_classes: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    train, val = (data.train, data.test) if isinstance(data, DataSplits) else data
    pairs = tuple(_tensors(name, part, num_classes) for name, part in (("train", train), ("validation", val)))
    (x_train, _), (x_val, _) = pairs
    if x_train.shape[1:] != x_val.shape[1:]:
        raise NasError(f"train and validation inputs differ in shape: {x_train.shape[1:]} vs {x_val.shape[1:]}")
    return pairs


def _tensors(name: str, data: Data, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data.tensors if isinstance(data, TensorDataset) else data
    if x.dim() not in (3, 4) or len(x) != len(y) or len(y) == 0:
        raise NasError(f"{name} data: expected inputs (N, channels, L) or (N, channels, H, W) and N labels, "
                       f"got {tuple(x.shape)} and {tuple(y.shape)}")  # fmt: skip
    if y.dtype != torch.long or y.min() < 0 or y.max() >= num_classes:
        raise NasError(f"{name} data: labels must be int64 in 0..{num_classes - 1}")
    return x.float(), y


def _cuda_devices(device: str | torch.device) -> list[int]:
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]
