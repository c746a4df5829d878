"""Proxy tasks on ``fit``: flat parameters, a candidate program's step, divergence checks.

``train(task, make_step, seed=...)`` builds the task's data split, model and batch order from ``seed``, views
all parameters into one flat buffer ``w`` (and their gradients into one flat ``g``), and has ``fit`` run one epoch of
``task.steps`` ``ProgramStep``s: ``update, m, v = step(w, g, m, v, lr, t)``; ``w -= update``, with ``lr`` from the
task's schedule and ``t`` the 1-based step. It returns a metrics dict or raises ``EvaluationFailed`` with a precise
reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluators import data as datasets
from evaluators import plugins
from evaluators.errors import EvaluationFailed
from evaluators.fit import Diverged, LossGuard, TrainStep, fit
from evaluators.models import build
from evaluators.schedule import lr_schedule
from evaluators.tasks import ACCURACY, Task

Tensor = torch.Tensor
StepFn = Callable[[Tensor, Tensor, Tensor, Tensor, float, int], "tuple[Tensor, Tensor, Tensor]"]
MakeStep = Callable[[tuple[int, ...]], StepFn]  # segments (parameter sizes, in order) -> step function

CHECK_EVERY = 10  # steps between divergence checks (each one synchronises a GPU once)
TRAIN_LOSS_WINDOW = 10  # `train_loss` is the mean minibatch loss over the last steps
EVAL_CHUNK = 2048


@dataclass(frozen=True, eq=False)
class Setup:
    """Everything one evaluation trains on, built from (task, seed) on ``device``: model and data tensors there.

    ``batches[t - 1]`` holds the training indices of step ``t``.
    """

    task: Task
    model: nn.Module
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    batches: Tensor
    classification: bool

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets) if self.classification else F.mse_loss(outputs, targets)


def prepare(task: Task, seed: int, device: str | torch.device = "cpu", cache_dir: Path | str | None = None) -> Setup:
    """Build the split, the initial model and the batch order of ``task`` from ``seed`` (independent streams)."""
    split_seed, init_seed, batch_seed = np.random.SeedSequence(seed).generate_state(3)
    # the strides of a new tensor (``datasets._dense``): a pool's size-1 axis may come with any stride
    as_tensor = lambda array: datasets._dense(torch.from_numpy(np.ascontiguousarray(array))).to(device)  # noqa: E731
    if task.make_data is not None:  # a plug-in task: the user's data (for this seed) and model
        model, arrays, classification = plugins.materialize(task, seed, int(init_seed))
        x_train, y_train, x_val, y_val = (array.to(device) for array in arrays)
    else:
        pool = datasets.load(task.dataset, cache_dir)
        train_set, val_set = datasets.split(pool, task.n_val, np.random.default_rng(split_seed))
        model = build(task.model, pool, int(init_seed))
        x_train, y_train, x_val, y_val = map(as_tensor, (train_set.x, train_set.y, val_set.x, val_set.y))
        classification = pool.n_classes > 0
    batches = _batch_order(len(y_train), task.steps, task.batch_size, np.random.default_rng(batch_seed))
    return Setup(task, model.to(device), x_train, y_train, x_val, y_val, as_tensor(batches),
                 classification=classification)  # fmt: skip


def _batch_order(n: int, steps: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Epochs of shuffled indices laid end to end, cut into ``steps`` batches (an epoch may span two batches)."""
    epochs = math.ceil(steps * batch_size / n)
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return order[: steps * batch_size].reshape(steps, batch_size)


class FlatParameters:
    """Views every parameter of ``model`` into one flat buffer ``w`` and every gradient into one flat ``g``.

    After construction ``p.data`` and ``p.grad`` of each parameter are views of ``w`` and ``g`` (autograd adds
    into an existing ``.grad`` in place), so in-place updates of ``w`` are the model's weights and ``backward``
    fills ``g``. ``segments`` are the parameter sizes in order. Do not move the model afterwards.
    """

    def __init__(self, model: nn.Module) -> None:
        parameters = [p for p in model.parameters() if p.requires_grad]
        assert parameters, "the model has no trainable parameters"
        self.segments = tuple(p.numel() for p in parameters)
        first = parameters[0]
        self.w = torch.empty(sum(self.segments), device=first.device, dtype=first.dtype)
        self.g = torch.zeros_like(self.w)
        offset = 0
        for p, size in zip(parameters, self.segments):
            self.w[offset : offset + size].copy_(p.detach().reshape(-1))
            p.data = self.w[offset : offset + size].view_as(p)
            p.grad = self.g[offset : offset + size].view_as(p)
            offset += size


def train(
    task: Task,
    make_step: MakeStep,
    *,
    seed: int,
    lr: float | None = None,
    device: str | torch.device = "cpu",
    cache_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Train ``task`` with the step function ``make_step(segments)`` at base ``lr`` (None: ``task.base_lr``).

    Returns JSON-safe metrics: ``fitness`` (higher is better: validation accuracy, or -validation loss for
    ``NEG_LOSS`` tasks), ``val_loss``, ``val_accuracy`` (None for regression), ``train_loss`` (mean over the last
    steps), ``steps``, ``steps_per_s`` (training steps only), ``wall_time`` (the whole evaluation, seconds), ``lr``.
    Deterministic given (task, step function, seed, lr, device) except for the two timings.

    Raises ``EvaluationFailed`` on a NaN/inf minibatch loss, a loss above ``task.diverge_factor`` × the first
    step's, a non-finite validation loss, or running out of memory; the reason names the step.
    """
    started = time.perf_counter()
    base_lr = task.base_lr if lr is None else float(lr)
    setup = prepare(task, seed, device, cache_dir)
    flat = FlatParameters(setup.model)
    step = make_step(flat.segments)
    with plugins.forward_randomness(task, seed, flat.w.device):
        losses, seconds = _run(setup, flat, step, lr_schedule(base_lr, task.steps, task.warmup))
        metrics = _validate(setup)
    window = losses[-min(TRAIN_LOSS_WINDOW, task.steps) :]
    metrics.update(
        train_loss=float(window.mean()),
        steps=task.steps,
        steps_per_s=task.steps / max(seconds, 1e-9),
        wall_time=time.perf_counter() - started,
        lr=base_lr,
    )
    return metrics


class ProgramStep(TrainStep):
    """Step ``t`` of a proxy task: the minibatch's gradient into ``g``, then the candidate's update of ``w`` at the
    schedule's lr; the losses go to a ``LossGuard``."""

    def __init__(self, setup: Setup, flat: FlatParameters, step: StepFn, schedule: list[float]) -> None:
        self.setup, self.flat, self.step, self.schedule = setup, flat, step, schedule
        self.m, self.v = torch.zeros_like(flat.w), torch.zeros_like(flat.w)
        self.guard = LossGuard(len(schedule), setup.task.diverge_factor, CHECK_EVERY)
        self.t = 0

    def batches(self, epoch: int) -> range:
        return range(1, len(self.schedule) + 1)

    def __call__(self, t: int) -> tuple[Tensor, int, int]:
        self.t = t
        setup, w, g = self.setup, self.flat.w, self.flat.g
        index = setup.batches[t - 1]
        g.zero_()
        loss = setup.loss(setup.model(setup.x_train[index]), setup.y_train[index])
        loss.backward()
        loss = loss.detach()
        update, m, v = self.step(w, g, self.m, self.v, self.schedule[t - 1], t)
        w.sub_(update)
        self.m, self.v = _own(m, w, g), _own(v, w, g)
        self.guard.add(loss)
        return loss, 0, len(index)


def _run(setup: Setup, flat: FlatParameters, step: StepFn, schedule: list[float]) -> tuple[Tensor, float]:
    """The training steps; returns the minibatch losses (on the device) and the seconds they took."""
    program_step = ProgramStep(setup, flat, step, schedule)
    _synchronize(flat.w.device)
    started = time.perf_counter()
    try:
        fit(program_step, epochs=1)
    except Diverged as diverged:
        raise EvaluationFailed(str(diverged), diverged.step) from None
    except torch.OutOfMemoryError:
        raise EvaluationFailed(f"out of memory at step {program_step.t}", program_step.t) from None
    _synchronize(flat.w.device)
    return program_step.guard.losses, time.perf_counter() - started


def _own(state: Tensor, w: Tensor, g: Tensor) -> Tensor:
    """``state`` as a buffer of its own: a program may return ``w`` or ``g`` as state, which the loop overwrites."""
    if state.data_ptr() in (w.data_ptr(), g.data_ptr()):
        return state.clone()
    return state


@torch.no_grad()
def _validate(setup: Setup) -> dict[str, Any]:
    setup.model.eval()  # dropout off, BatchNorm's running statistics (the built-in models have neither)
    total_loss, correct, n = 0.0, 0, len(setup.y_val)
    for start in range(0, n, EVAL_CHUNK):
        outputs = setup.model(setup.x_val[start : start + EVAL_CHUNK])
        targets = setup.y_val[start : start + EVAL_CHUNK]
        total_loss += float(setup.loss(outputs, targets)) * len(targets)
        if setup.classification:
            correct += int((outputs.argmax(dim=1) == targets).sum())
    val_loss = total_loss / n
    if not math.isfinite(val_loss):
        steps = setup.task.steps
        name = "nan" if math.isnan(val_loss) else "inf"
        raise EvaluationFailed(f"{name} validation loss after step {steps}", steps)
    accuracy = correct / n if setup.classification else None
    fitness = accuracy if setup.task.fitness == ACCURACY else -val_loss
    return {"fitness": fitness, "val_loss": val_loss, "val_accuracy": accuracy}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
