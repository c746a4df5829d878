"""Ground truth for one-shot ranking: NAS-Bench-201 architectures trained from scratch on a small budget.

``train_from_scratch`` trains one ``NB201Network`` (``nas.nb201_network``) on the dataset's whole training split and
measures it on the test split: SGD with Nesterov momentum and weight decay, learning rate cosine-annealed to 0 by
epoch (NAS-Bench-201's recipe, shortened), every architecture with the same initial seed and batch order.

``GroundTruthTable`` is the shipped JSON format: ``{"metadata": {...}, "accuracy": {arch: accuracy}, "failed": {arch:
reason}}`` (metadata: the command that made it, dataset, seed, budget, date, seconds); ``write_table`` replaces the
file atomically. The engine builds tables on its workers as a job (``autodisco nas groundtruth``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nas.darts import evaluate
from nas.datasets import DataSplits
from nas.errors import NasError
from nas.nb201 import NB201Genotype
from nas.nb201_network import NB201NetConfig, build_network
from nas.oneshot import genotype_of
from nas.schedules import cosine_annealing
from nas.spaces import NB201_PRIMITIVES

TABLE_FORMAT = 1
SPECIAL = tuple(NB201Genotype.from_text(text) for text in (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|",
))  # fmt: skip
"""Always in a sampled table: the five uniform cells, NAS-Bench-201's best CIFAR-10 cell, and a ResNet block."""


@dataclass(frozen=True)
class TrainBudget:
    """Training from scratch: network shape (``C``, ``cells_per_stage``, ``reduction``), ``epochs``, ``batch_size``,
    SGD ``lr`` (cosine to 0), Nesterov ``momentum``, ``weight_decay``; ``seed`` decides initial weights and batch order."""

    C: int = 8
    cells_per_stage: int = 1
    reduction: str = "pool"
    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.C, self.cells_per_stage, self.epochs) < 1 or self.batch_size < 2:
            raise NasError(f"TrainBudget: C, cells_per_stage and epochs must be >= 1, batch_size >= 2, got {self}")
        if not self.lr > 0 or self.momentum < 0 or self.weight_decay < 0:
            raise NasError("TrainBudget: lr must be > 0, momentum and weight_decay >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScratchResult:
    """Test accuracy and loss, final-epoch training accuracy and loss, parameter count, seconds."""

    accuracy: float
    test_loss: float
    train_accuracy: float
    train_loss: float
    params: int
    seconds: float


def train_from_scratch(genotype: NB201Genotype, data: DataSplits, budget: TrainBudget,
                       device: str | torch.device = "cpu", limit: int | None = None) -> ScratchResult:
    """Train ``genotype`` on ``data.train`` for ``budget`` and measure it on ``data.test`` (``limit``: use only the
    first ``limit`` examples of each split — tests). Deterministic on a given device. A non-finite loss raises
    ``NasError``."""
    started = time.perf_counter()
    x, y = data.train.tensors
    x_test, y_test = data.test.tensors
    if limit is not None:
        x, y, x_test, y_test = x[:limit], y[:limit], x_test[:limit], y_test[:limit]
    net_config = NB201NetConfig(budget.C, budget.cells_per_stage, num_classes=data.num_classes,
                                reduction=budget.reduction)
    model = build_network(genotype, net_config, data.input_shape[0], data.dim, budget.seed).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=budget.lr, momentum=budget.momentum, nesterov=True,
                                weight_decay=budget.weight_decay)
    generator = torch.Generator().manual_seed(budget.seed)
    train_loss = train_accuracy = 0.0
    for epoch in range(1, budget.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = cosine_annealing(epoch, budget.epochs, budget.lr, 0.0)
        train_loss, train_accuracy = _epoch(model, optimizer, x, y, budget.batch_size, generator, device)
    test_loss, accuracy = evaluate(model, x_test, y_test, 512, device)
    params = sum(p.numel() for p in model.parameters())
    return ScratchResult(accuracy, test_loss, train_accuracy, train_loss, params, time.perf_counter() - started)


def _epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
           batch_size: int, generator: torch.Generator, device: str | torch.device) -> tuple[float, float]:
    model.train()
    order = torch.randperm(len(y), generator=generator)
    total, correct, seen = 0.0, 0, 0
    for start in range(0, len(y) - 1, batch_size):  # a last batch of one would break BatchNorm
        index = order[start : start + batch_size]
        xb, yb = x[index].to(device), y[index].to(device)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        if not torch.isfinite(loss):
            raise NasError(f"loss became {loss.item()} at example {start}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(yb)
        correct += int((logits.argmax(1) == yb).sum())
        seen += len(yb)
    return total / seen, correct / seen


def sample_architectures(n: int, seed: int) -> list[NB201Genotype]:
    """``n`` distinct architectures of the 15,625: ``SPECIAL`` first, then uniform draws from ``seed``."""
    space = len(NB201_PRIMITIVES) ** 6
    if not 1 <= n <= space:
        raise NasError(f"the number of architectures must be in 1..{space}, got {n}")
    chosen = list(SPECIAL[:n])
    taken = {g.to_text() for g in chosen}
    rng = np.random.default_rng(seed)
    for code in rng.permutation(space):
        if len(chosen) == n:
            break
        genotype = genotype_of(np.unravel_index(int(code), (len(NB201_PRIMITIVES),) * 6))
        if genotype.to_text() not in taken:
            chosen.append(genotype)
            taken.add(genotype.to_text())
    return chosen


@dataclass
class GroundTruthTable:
    """``accuracy``: arch text → test accuracy; ``failed``: arch text → reason; ``metadata``: how it was made."""

    metadata: dict[str, Any]
    accuracy: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "metadata": self.metadata, "accuracy": self.accuracy, "failed": self.failed}

    @property
    def dataset(self) -> str | None:
        return self.metadata.get("dataset")


def load_table(path: str | Path) -> GroundTruthTable:
    """Read a table; ``NasError`` naming the file for a missing, unreadable or malformed one."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NasError(f"no ground-truth table {str(path)!r}; make one with 'autodisco nas groundtruth'") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NasError(f"{path}: not a ground-truth table ({error})") from None
    accuracy = raw.get("accuracy") if isinstance(raw, dict) else None
    if not isinstance(accuracy, dict) or not all(isinstance(v, (int, float)) for v in accuracy.values()):
        raise NasError(f"{path}: not a ground-truth table (expected 'accuracy': {{arch: number}})")
    for text in accuracy:
        NB201Genotype.from_text(text)  # GenotypeError names the bad entry
    return GroundTruthTable(dict(raw.get("metadata") or {}), {k: float(v) for k, v in accuracy.items()},
                            dict(raw.get("failed") or {}))


def write_table(table: GroundTruthTable, path: str | Path) -> None:
    """Write ``table`` to ``path`` atomically (a temporary file renamed over it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
    with os.fdopen(handle, "w") as file:
        json.dump(table.to_json(), file, indent=1, sort_keys=False)
        file.write("\n")
    os.chmod(temporary, 0o644)  # mkstemp makes it private; a table is data to share
    os.replace(temporary, target)


def default_table_path(dataset: str) -> Path | None:
    """The table shipped with the package for ``dataset`` (``nas/data/nb201_<dataset>.json``), if there is one."""
    candidate = Path(str(resources.files("nas") / "data" / f"nb201_{dataset}.json"))
    return candidate if candidate.is_file() else None
