"""Training the one-shot supernet on ``evaluators.fit``: a single-path step, the sampler (``nas.pada``) decides paths
and data.

Each step: the sampler draws a path (one allowed operation per edge), the batch goes through that path only, the
unweighted mean cross-entropy is back-propagated, the sampler observes the step (PA&DA: per-edge gradient norms of
the path's parametric operations and per-example importances from the logits), gradients are clipped and SGD
(momentum, weight decay, cosine-annealed learning rate per epoch) updates the weights. After each epoch the sampler
updates its distributions and ``on_epoch`` receives a ``OneShotEpoch``.

Data for the supernet (``supernet_data``): the dataset's training split, cut (seed 0, the same for every run) into
7/8 to train the weights and 1/8 held out as validation data for inherited-weight evaluation. Ground truth
(``nas.groundtruth``) uses the whole training split and the test split instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.data import DataSplits, get_dataset, split_dataset
from evaluators.files import save_torch
from evaluators.fit import EpochStats, SGDConfig, TrainStep, fit
from nas.errors import NasError
from nas.nb201 import NB201Genotype
from nas.nb201_network import NB201NetConfig
from nas.oneshot import InheritConfig, InheritedScore, OneShotSupernet, inherited_scores, path_grad_norms
from nas.pada import SAMPLERS, Sampler, make_sampler

DATASETS = ("mnist1d", "digits")
VAL_FRACTION = 1 / 8
SUPERNET_FILE = "supernet.pt"
Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class OneShotConfig(SGDConfig):
    """Supernet training: ``net`` shape, ``sampler`` ("fair", "uniform" or "pada"), ``paths_per_step`` paths whose
    gradients are summed before each SGD step (FairNAS: 5 with the "fair" sampler), and the SGD of ``SGDConfig``
    (``epochs``, ``lr`` cosine-annealed to ``lr_min``, ``momentum``, ``weight_decay``, gradient norm clipped to
    ``grad_clip``); ``seed`` decides the initial weights and every draw of the sampler.

    Defaults (fair sampling, 10 epochs) are the best protocol measured on the shipped MNIST-1D table
    (``bench/bench_oneshot.py``; README, "Ranking quality"): Kendall τ 0.601 ± 0.022 over 3 seeds ranking by loss."""

    error: ClassVar[type[Exception]] = NasError
    min_batch: ClassVar[int] = 2

    epochs: int = 10
    lr: float = 0.05
    weight_decay: float = 5e-4
    net: NB201NetConfig = field(default_factory=NB201NetConfig)
    sampler: str = "fair"
    paths_per_step: int = 1

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise NasError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.paths_per_step < 1:
            raise NasError(f"paths_per_step must be >= 1, got {self.paths_per_step}")
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> OneShotConfig:
        return cls(**{**values, "net": NB201NetConfig(**values["net"])})


@dataclass(frozen=True)
class OneShotEpoch:
    """One epoch: its learning rate, mean training loss and accuracy over the sampled paths, how many distinct
    examples it drew, its wall time, and the sampler's figures (``Sampler.describe``)."""

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    distinct_examples: int
    seconds: float
    sampler: dict[str, Any]


@dataclass(frozen=True)
class SupernetData:
    """Training inputs/labels for the weights and held-out validation data for inherited evaluation."""

    name: str
    train: Pair
    val: Pair
    in_channels: int
    dim: int
    num_classes: int


def supernet_data(name: str, limit: int | None = None) -> SupernetData:
    """The supernet's data for dataset ``name`` (see the module docstring); ``limit`` keeps the first ``limit``
    training and validation examples (tests)."""
    splits = load_dataset(name)
    train, val = split_dataset(splits.train, 1.0 - VAL_FRACTION, seed=0)
    x, y = train.tensors
    xv, yv = val.tensors
    if limit is not None:
        x, y, xv, yv = x[:limit], y[:limit], xv[:limit], yv[:limit]
    return SupernetData(name, (x, y), (xv, yv), splits.input_shape[0], splits.dim, splits.num_classes)


def load_dataset(name: str) -> DataSplits:
    """``mnist1d`` (sequences) or ``digits`` (8×8 images) from ``evaluators.data``; ``NasError`` for any other
    name. Generated once per process; callers must not modify the tensors."""
    if name not in DATASETS:
        raise NasError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return get_dataset(name)


def new_supernet(config: OneShotConfig, in_channels: int, dim: int) -> OneShotSupernet:
    """A supernet with initial weights drawn from ``config.seed`` (the global torch RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return OneShotSupernet(config.net, in_channels, dim)


def new_optimizer(config: OneShotConfig, supernet: OneShotSupernet) -> torch.optim.Optimizer:
    return config.optimizer(supernet.parameters())


def train_supernet(
    config: OneShotConfig,
    train: Pair,
    *,
    in_channels: int,
    dim: int,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[OneShotEpoch, OneShotSupernet], None] | None = None,
) -> tuple[OneShotSupernet, list[OneShotEpoch]]:
    """Train a new supernet on ``train`` (inputs ``(N, channels, *S)``, int64 labels) for ``config.epochs``.

    Deterministic given ``config`` on a given device. ``on_epoch(record, supernet)`` runs after every epoch (raise
    from it to stop). Returns the supernet and the epoch records.
    """
    x, y = train
    if len(y) < 2 or x.dim() != dim + 2:
        raise NasError(f"train data must be (N >= 2, channels, *S) with {dim} spatial axes, got {tuple(x.shape)}")
    supernet = new_supernet(config, in_channels, dim).to(device)
    optimizer = new_optimizer(config, supernet)
    step = SinglePathStep(supernet, optimizer, make_sampler(config.sampler, config.epochs, len(y), config.seed),
                          train, config, device)  # fmt: skip
    history = fit(step, config.epochs, scheduler=config.scheduler(optimizer),
                  on_epoch=None if on_epoch is None else lambda record: on_epoch(record, supernet))
    return supernet, history


def train_epoch(supernet: OneShotSupernet, optimizer: torch.optim.Optimizer, sampler: Sampler, train: Pair,
                epoch: int, config: OneShotConfig, device: str | torch.device = "cpu") -> OneShotEpoch:
    """One epoch (1-based) of single-path training with ``sampler``; closes the sampler's epoch (resumed runs and
    few-shot sub-supernets train epoch by epoch)."""
    step = SinglePathStep(supernet, optimizer, sampler, train, config, device)
    return fit(step, epoch, start_epoch=epoch, scheduler=config.scheduler(optimizer, start_epoch=epoch))[0]


class SinglePathStep(TrainStep):
    """Single-path training: each step the sampler draws a path, the batch goes through that path only, the sampler
    observes the step (PA&DA: the path's gradient norms and per-example importances); the sampler also orders the
    epoch's examples and closes the epoch."""

    def __init__(self, supernet: OneShotSupernet, optimizer: torch.optim.Optimizer, sampler: Sampler, train: Pair,
                 config: OneShotConfig, device: str | torch.device) -> None:
        self.model, self.optimizer, self.sampler, self.train = supernet, optimizer, sampler, train
        self.config, self.device = config, device
        self.order = np.empty(0, dtype=np.int64)

    def batches(self, epoch: int) -> list[np.ndarray]:
        self.order = self.sampler.epoch_indices(epoch)
        size = self.config.batch_size
        return [self.order[start : start + size] for start in range(0, len(self.order), size)]

    def __call__(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        if len(index) < 2:  # BatchNorm needs two examples
            return None
        supernet, sampler, (x, y) = self.model, self.sampler, self.train
        rows = torch.from_numpy(index)
        xb, yb = x[rows].to(self.device), y[rows].to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        paths = self.config.paths_per_step
        losses, hits = [], []
        for _ in range(paths):  # gradients of the paths add up (FairNAS); one path: plain SPOS
            genotype = sampler.sample(supernet.allowed_mask())
            logits = supernet(xb, genotype)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            # With several paths an operation two of them share carries both gradients: PA&DA's norms are then
            # those of the sum so far (exact for the "fair" sampler's blocks, where no operation repeats).
            norms = path_grad_norms(supernet, genotype) if sampler.wants_grad_norms else None
            sampler.observe(genotype, norms, index, logits, yb)
            losses.append(loss.detach())
            hits.append((logits.argmax(dim=1) == yb).sum())
        self.config.clip(supernet.parameters())
        self.optimizer.step()
        if paths == 1:
            return losses[0], hits[0], len(index)
        return torch.stack(losses).mean(), torch.div(torch.stack(hits).sum(), paths, rounding_mode="floor"), len(index)

    def end_epoch(self, stats: EpochStats) -> OneShotEpoch:
        self.sampler.end_epoch(stats.epoch)
        n = len(self.order)
        return OneShotEpoch(stats.epoch, stats.lr, stats.mean_loss(n), stats.accuracy(n), len(np.unique(self.order)),
                            time.perf_counter() - stats.started, self.sampler.describe())  # fmt: skip


def evaluate(supernet: OneShotSupernet, genotypes: Sequence[NB201Genotype], data: SupernetData,
             config: InheritConfig = InheritConfig(), device: str | torch.device = "cpu") -> list[InheritedScore]:
    """Inherited-weight validation accuracy and loss of each genotype (``nas.oneshot.inherited_scores``), BatchNorm
    recalibrated on ``data``'s training inputs and measured on its validation split; rank with
    ``InheritedScore.value(config.metric)``."""
    return inherited_scores(supernet, genotypes, data.train[0], data.val, config, device)


def score(supernet: OneShotSupernet, genotypes: Sequence[NB201Genotype], data: SupernetData,
          config: InheritConfig = InheritConfig(), device: str | torch.device = "cpu") -> list[float]:
    """Inherited-weight validation accuracy of each genotype (``evaluate``'s accuracies)."""
    return [s.accuracy for s in evaluate(supernet, genotypes, data, config, device)]


def save_supernet(path: str | Path, supernet: OneShotSupernet, config: OneShotConfig, dataset: str, epoch: int, *,
                  limit: int | None = None, optimizer: torch.optim.Optimizer | None = None,
                  sampler: dict[str, Any] | None = None, history: Sequence[dict[str, Any]] = ()) -> None:
    """Write the supernet to ``path`` atomically (temporary file, fsync, rename): ``{"state_dict", "config",
    "dataset", "limit", "in_channels", "dim", "epoch"}`` and, to continue training, ``"optimizer"`` (its state dict),
    ``"sampler"`` and ``"history"`` (JSON text). Tensors and plain values only: ``torch.load(weights_only=True)``."""
    state = {k: v.detach().cpu() for k, v in supernet.state_dict().items()}
    saved = {"state_dict": state, "config": config.to_dict(), "dataset": dataset, "limit": limit,
             "in_channels": supernet.in_channels, "dim": supernet.dim, "epoch": epoch,
             "optimizer": optimizer.state_dict() if optimizer is not None else None,
             "sampler": json.dumps(sampler), "history": json.dumps(list(history))}
    save_torch(path, saved)


@dataclass(frozen=True, eq=False)
class SavedSupernet:
    """A supernet read back by ``load_supernet`` with what it was trained with."""

    supernet: OneShotSupernet
    config: OneShotConfig
    dataset: str
    limit: int | None
    epoch: int


def load_supernet(path: str | Path, device: str | torch.device = "cpu") -> SavedSupernet:
    """Read a file written by ``save_supernet`` (never unpickles anything but tensors and plain values);
    ``NasError`` naming the file when it is not one."""
    try:
        saved = torch.load(Path(path), map_location="cpu", weights_only=True)
        config = OneShotConfig.from_dict(saved["config"])
        supernet = OneShotSupernet(config.net, int(saved["in_channels"]), int(saved["dim"]))
        supernet.load_state_dict(saved["state_dict"])
    except FileNotFoundError:
        raise NasError(f"no trained supernet {str(path)!r}") from None
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise NasError(f"{path}: not a supernet saved by autodisco ({type(error).__name__}: {error})") from None
    return SavedSupernet(supernet.to(device), config, str(saved["dataset"]), saved.get("limit"), int(saved["epoch"]))
