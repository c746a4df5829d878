"""The one training loop, ``fit``: epochs of steps, with the step plugged in.

Every trainer is a ``TrainStep`` — what the batches of an epoch are and what one step does with a batch — run by
``fit(step, epochs)``:

- proxy tasks and the optimizer search (``evaluators.loop``): a candidate program's update of flat parameters;
- genotype training (``nas.train``), ground-truth tables (``nas.groundtruth``): plain SGD steps;
- one-shot supernets (``nas.oneshot_train``): a single-path step whose path and data come from a sampler;
- DARTS (``nas.darts``): the bilevel step, the architect's α update then the weights' SGD update.

``fit`` owns what is the same for all: the epoch loop (from ``start_epoch``, to continue a run), the learning
rate from a torch ``LRScheduler`` stepped between epochs, the model's training mode, the per-epoch statistics
(``EpochStats``: losses and hits gathered on the device, read once at the end of the epoch) and the epoch hook.
Divergence checks: a step raises ``Diverged`` saying where it happened, or keeps a ``LossGuard``
(a NaN/inf loss or one above a multiple of the first, checked every few steps without a per-step sync).

``SGDConfig`` holds the SGD fields every epoch-scheduled trainer shares (the NAS configurations extend it); its
``scheduler`` is torch's ``LambdaLR`` giving each epoch exactly ``lr_at(epoch)`` — cosine annealing (DARTS) or
cosine power annealing (sharpDARTS).
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from evaluators.schedule import SCHEDULES, scheduled_lr

Tensor = torch.Tensor


class Diverged(Exception):
    """A non-finite or exploding loss; the message says where. ``step``: the 1-based step, if known."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class SGDConfig:
    """SGD training by epochs: ``epochs`` of batches of ``batch_size``, learning rate ``lr`` annealed to ``lr_min``
    by ``lr_schedule`` ("cosine", or "cosine_power" with ``lr_power`` and ``warmup_epochs``), ``momentum``
    (``nesterov`` or not), ``weight_decay``, gradient norm clipped to ``grad_clip`` (None: not clipped); ``seed``
    decides what the trainer draws (initial weights, batch order, ...).

    Subclasses (the NAS configurations) change the defaults, add their own fields, and name the exception their
    bad input raises (``error``) and the smallest batch they accept (``min_batch``).
    """

    error: ClassVar[type[Exception]] = ValueError
    min_batch: ClassVar[int] = 1

    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    nesterov: bool = False
    grad_clip: float | None = 5.0
    lr_schedule: str = "cosine"
    lr_power: float = 2.0
    warmup_epochs: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if self.epochs < 1 or self.batch_size < self.min_batch:
            raise self.error(f"{owner}: epochs must be >= 1 and batch_size >= {self.min_batch}, got {self.epochs} "
                             f"and {self.batch_size}")  # fmt: skip
        if self.lr_schedule not in SCHEDULES:
            raise self.error(f"{owner}.lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise self.error(f"{owner}.warmup_epochs must be in 0..{self.epochs - 1}, got {self.warmup_epochs}")
        clip_ok = self.grad_clip is None or self.grad_clip > 0
        if not (self.lr > 0 and 0 <= self.lr_min <= self.lr and clip_ok and self.lr_power >= 1):
            raise self.error(f"{owner}: lr and grad_clip must be > 0, 0 <= lr_min <= lr, lr_power >= 1")
        if self.momentum < 0 or self.weight_decay < 0:
            raise self.error(f"{owner}: momentum and weight_decay must be >= 0")

    def lr_at(self, epoch: int) -> float:
        """The learning rate in ``epoch`` (1-based)."""
        return scheduled_lr(self.lr_schedule, epoch, self.epochs, self.lr, self.lr_min, self.lr_power,
                            self.warmup_epochs)  # fmt: skip

    def optimizer(self, parameters: Iterable[nn.Parameter]) -> torch.optim.SGD:
        return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                               nesterov=self.nesterov)  # fmt: skip

    def scheduler(self, optimizer: torch.optim.Optimizer, start_epoch: int = 1) -> LambdaLR:
        """torch's ``LambdaLR`` on ``optimizer``, at the lr of ``start_epoch``; each ``step()`` moves one epoch on."""
        return epoch_scheduler(optimizer, self.lr_at, start_epoch)

    def clip(self, parameters: Iterable[Tensor]) -> None:
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(parameters, self.grad_clip)


def epoch_scheduler(optimizer: torch.optim.Optimizer, lr_at: Callable[[int], float], start_epoch: int = 1) -> LambdaLR:
    """A ``LambdaLR`` whose lr in epoch ``e`` (1-based) is exactly ``lr_at(e)``: its base lr is 1, so the factor it
    multiplies by is the lr itself (no rounding). Starts at ``start_epoch`` (resume)."""
    for group in optimizer.param_groups:
        group["initial_lr"] = 1.0
    return LambdaLR(optimizer, lambda index: lr_at(index + 1), last_epoch=start_epoch - 2)


@dataclass
class EpochStats:
    """What the steps of one epoch returned: mean loss per batch (detached), hits, batch sizes; ``lr`` and the
    seconds from the epoch's start to the end of its steps."""

    epoch: int
    lr: float | None
    losses: list[Tensor] = field(default_factory=list)
    hits: list[Tensor | int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0

    @property
    def seen(self) -> int:
        return sum(self.sizes)

    def loss_sum(self) -> float:
        """Σ batch mean loss × batch size, summed in batch order as Python floats."""
        total = 0.0
        for loss, n in zip(self.losses, self.sizes):
            total += loss.item() * n
        return total

    def mean_loss(self, denominator: int | None = None) -> float:
        return self.loss_sum() / (denominator or self.seen)

    def accuracy(self, denominator: int | None = None) -> float:
        correct = 0
        for hits in self.hits:
            correct += int(hits)
        return correct / (denominator or self.seen)


class TrainStep(abc.ABC):
    """One kind of training for ``fit``: its batches and its step.

    ``model`` (if any) is put in training mode at the start of every epoch. ``begin_epoch`` / ``end_epoch`` are
    optional hooks (the sampler's epoch, drop-path, measuring validation data, ...); ``end_epoch``'s return value
    is the epoch's record in ``fit``'s result. A step returns ``(loss, hits, n)``: the minibatch's mean loss
    (detached, on the device — ``fit`` does not synchronise on it), its correct predictions (a tensor, an int, or
    0) and its size; or None for a batch it skipped. A step that diverges raises ``Diverged``.
    """

    model: nn.Module | None = None

    @abc.abstractmethod
    def batches(self, epoch: int) -> Iterable[Any]:
        """The batches of ``epoch`` (1-based), in order."""

    @abc.abstractmethod
    def __call__(self, batch: Any) -> tuple[Tensor, Tensor | int, int] | None:
        """One optimisation step on ``batch``."""

    def begin_epoch(self, epoch: int, lr: float | None) -> None:
        """Before the first batch of ``epoch`` (after the learning rate is set)."""

    def end_epoch(self, stats: EpochStats) -> Any:
        """After the last batch; returns the epoch's record (by default ``stats``)."""
        return stats


def fit(
    step: TrainStep,
    epochs: int,
    *,
    start_epoch: int = 1,
    scheduler: LRScheduler | None = None,
    on_epoch: Callable[[Any], None] | None = None,
    on_batch: Callable[[int, int, Tensor], None] | None = None,
) -> list[Any]:
    """Run epochs ``start_epoch..epochs`` of ``step``; returns each epoch's record (``step.end_epoch``), which also
    goes to ``on_epoch`` (raise from it to stop). ``scheduler`` gives the learning rate: it must hold the rate of
    ``start_epoch`` already and is stepped between epochs. ``on_batch(epoch, batch, loss)`` follows every step that
    returned (``batch`` counts the epoch's batches from 1; ``loss`` is the step's, on its device: reading it waits
    for the device, so a progress line reads it only when it prints)."""
    records = []
    for epoch in range(start_epoch, epochs + 1):
        if scheduler is not None and epoch > start_epoch:
            scheduler.step()
        lr = scheduler.get_last_lr()[0] if scheduler is not None else None
        stats = EpochStats(epoch, lr)
        step.begin_epoch(epoch, lr)
        if step.model is not None:
            step.model.train()
        losses, hits, sizes = stats.losses, stats.hits, stats.sizes
        for number, batch in enumerate(step.batches(epoch), start=1):
            out = step(batch)
            if out is not None:
                losses.append(out[0])
                hits.append(out[1])
                sizes.append(out[2])
                if on_batch is not None:
                    on_batch(epoch, number, out[0])
        stats.seconds = time.perf_counter() - stats.started
        record = step.end_epoch(stats)
        records.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return records


class LossGuard:
    """Divergence checks of a run of ``steps`` minibatch losses without a sync per step: the first loss must be
    finite (messages as ``EvaluationFailed`` reasons: "nan loss at step 1"); every ``every`` steps, and at the last,
    the losses since the previous check must be finite and at most ``factor`` × the first. Raises ``Diverged`` naming
    the first bad step. ``losses[:t]`` holds the losses of steps 1..t (on their device)."""

    def __init__(self, steps: int, factor: float, every: int = 10) -> None:
        self.steps, self.factor, self.every = steps, factor, every
        self.limit = math.inf
        self.losses = torch.empty(0)
        self.t = 0

    def add(self, loss: Tensor) -> None:
        """Record the next step's loss and check when due."""
        if self.t == 0:
            self.losses = torch.empty(self.steps, device=loss.device, dtype=torch.float32)
        self.losses[self.t] = loss
        self.t = t = self.t + 1
        if t == 1:
            self.limit = first_loss_limit(loss, self.factor)
        if t % self.every == 0 or t == self.steps:
            check_losses(self.losses, max(t - self.every, 0), t, self.limit, self.factor)


def first_loss_limit(first: Tensor | float, factor: float) -> float:
    """The largest loss allowed after a first minibatch loss ``first``: ``factor`` × it; ``Diverged`` if it is not
    finite ("nan loss at step 1")."""
    value = float(first)
    if not math.isfinite(value):
        raise Diverged(f"{_nonfinite_name(value)} loss at step 1", 1)
    return factor * max(value, 1e-12)


def check_losses(losses: Tensor, start: int, stop: int, limit: float, factor: float) -> None:
    """``Diverged`` naming the first step in ``losses[start:stop]`` (steps ``start + 1 .. stop``) whose loss is not
    finite or over ``limit``; one device sync when all is well."""
    window = losses[start:stop]
    bad = ~torch.isfinite(window) | (window > limit)
    if not bool(bad.any()):
        return
    offset = int(bad.nonzero()[0, 0])
    value, step = float(window[offset]), start + offset + 1
    if not math.isfinite(value):
        raise Diverged(f"{_nonfinite_name(value)} loss at step {step}", step)
    raise Diverged(f"loss diverged at step {step}: {value:.4g} > {factor:g} × first-step loss {limit / factor:.4g}",
                   step)


def _nonfinite_name(value: float) -> str:
    return "nan" if math.isnan(value) else "inf"


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, device: str | torch.device,
             logits_of: Callable[[Any], Tensor] = lambda out: out) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in evaluation mode on ``(x, y)`` in chunks of ``batch_size``
    (``logits_of`` picks the logits from the model's output)."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        logits = logits_of(model(xb))
        total_loss += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == yb).sum())
    return total_loss / len(y), correct / len(y)


def shuffled_batches(x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator,
                     drop_single: bool = False) -> Iterator[tuple[int, Tensor, Tensor]]:
    """``(start, x, y)`` batches of one random permutation drawn from ``generator``; ``drop_single``: leave out a
    last batch of one example (it would break BatchNorm)."""
    order = torch.randperm(len(y), generator=generator)
    stop = len(y) - 1 if drop_single else len(y)
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        yield start, x[index], y[index]
