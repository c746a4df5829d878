"""The one-shot (SPOS-style, single-path) supernet over the NAS-Bench-201 cell, and inherited-weight evaluation.

``OneShotSupernet`` has ``nas.nb201_network``'s skeleton; every edge of every cell holds all five NB201 operations
(``NB201_PRIMITIVES``, each with its own weights), and a forward pass takes one ``NB201Genotype`` and runs only
that genotype's operation on each edge — in every cell, since a NAS-Bench-201 network repeats one cell. Any of the
15,625 architectures is then a path through shared weights.

**Restriction** (few-shot NAS splits a supernet by partitioning an edge's operations): ``allowed`` is a (6, 5)
boolean buffer, edge × operation; ``restrict(edge, ops)`` narrows one edge, the samplers of ``nas.pada`` draw only
allowed operations, and a forward pass with a disallowed genotype raises ``NasError``. The mask is a buffer, so
``state_dict()`` / ``load_state_dict()`` and ``copy.deepcopy`` carry it with the weights.

**Inherited-weight evaluation** (``inherited_accuracy``): the weights are used as trained, but BatchNorm statistics
are recalibrated per architecture: the running statistics the supernet gathered are an average over every path
it sampled, wrong for any single one. For each architecture the BatchNorm buffers are reset and re-estimated
exactly (cumulative average, ``momentum=None``) from a few fixed training batches in training mode, then the
architecture is measured in evaluation mode. We prefer this to BatchNorm without running statistics (batch
statistics at test time) because then a prediction depends on which validation examples share its batch and the
statistics come from the data being scored; recalibration costs a few forward passes per architecture and is
deterministic (the same seeded batches for every architecture). It works on a copy: the supernet is untouched.

**Ranking metric** (``InheritConfig.metric``): each architecture gets its validation accuracy *and* its mean
validation cross-entropy (``InheritedScore``); rankings use ``−loss`` by default. Accuracy on a few hundred
held-out examples is quantised (steps of 1/N) and ties many cells, while the loss also counts how confident the
right and wrong answers are; on the shipped MNIST-1D table ranking by loss raised Kendall τ by about 0.1 (README,
"Ranking quality").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import NasError
from nas.nb201 import NB201Genotype
from nas.nb201_network import EDGES, NB201Macro, NB201NetConfig, cell_forward
from nas.ops import make_op
from nas.spaces import NB201_PRIMITIVES

PARAMETRIC = frozenset({"nor_conv_1x1", "nor_conv_3x3"})
"""NB201 operations with weights (``skip_connect`` is the identity at stride 1; pools and ``none`` have none)."""

N_EDGES = len(EDGES)
N_OPS = len(NB201_PRIMITIVES)


def op_indices(genotype: NB201Genotype) -> tuple[int, ...]:
    """The index in ``NB201_PRIMITIVES`` of each edge's operation, edges in ``EDGES`` order."""
    return tuple(NB201_PRIMITIVES.index(op) for op, _ in genotype.edges())


def genotype_of(indices: Sequence[int]) -> NB201Genotype:
    """The genotype choosing ``NB201_PRIMITIVES[indices[k]]`` on edge ``k`` (inverse of ``op_indices``)."""
    ops = [NB201_PRIMITIVES[int(i)] for i in indices]
    if len(ops) != N_EDGES:
        raise NasError(f"an NB201 cell has {N_EDGES} edges, got {len(ops)} operation indices")
    return NB201Genotype((tuple(ops[0:1]), tuple(ops[1:3]), tuple(ops[3:6])))


class ChoiceCell(nn.Module):
    """A cell whose edge ``k`` holds every NB201 operation (``edges[k][o]`` is ``NB201_PRIMITIVES[o]``)."""

    def __init__(self, C: int, dim: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleList(make_op(op, C, 1, True, dim) for op in NB201_PRIMITIVES) for _ in EDGES
        )

    def forward(self, x: torch.Tensor, choice: Sequence[int]) -> torch.Tensor:
        return cell_forward(x, lambda k, h: self.edges[k][choice[k]](h))


class OneShotSupernet(NB201Macro):
    """The single-path supernet (see the module docstring). ``forward(x, genotype)`` runs one architecture.

    Copy a supernet with ``copy.deepcopy`` or ``state_dict()`` (weights and the ``allowed`` mask together).
    """

    allowed: torch.Tensor

    def __init__(self, config: NB201NetConfig, in_channels: int, dim: int) -> None:
        super().__init__(config, in_channels, dim, lambda C: ChoiceCell(C, dim))
        self.in_channels = in_channels
        self.register_buffer("allowed", torch.ones(N_EDGES, N_OPS, dtype=torch.bool))

    def forward(self, x: torch.Tensor, genotype: NB201Genotype) -> torch.Tensor:
        choice = op_indices(genotype)
        if not self.allows(genotype):
            raise NasError(f"{genotype.to_text()} uses an operation this supernet's edges do not allow "
                           f"(allowed: {self.allowed_ops()})")
        return self.run(x, lambda cell, h: cell(h, choice))

    # -- restriction (few-shot splits) ----------------------------------------------------------------------------

    def restrict(self, edge: int, ops: Iterable[str]) -> None:
        """Allow only ``ops`` on ``edge`` (0..5, ``EDGES`` order) from now on; ``NasError`` for an unknown
        operation, a bad edge, or an empty set."""
        names = tuple(ops)
        if not 0 <= edge < N_EDGES:
            raise NasError(f"edge must be in 0..{N_EDGES - 1}, got {edge}")
        unknown = [op for op in names if op not in NB201_PRIMITIVES]
        if unknown or not names:
            raise NasError(f"restrict edge {edge}: need a non-empty subset of {NB201_PRIMITIVES}, got {names}")
        mask = torch.tensor([op in names for op in NB201_PRIMITIVES], dtype=torch.bool, device=self.allowed.device)
        self.allowed[edge] = mask

    def allowed_ops(self) -> tuple[tuple[str, ...], ...]:
        """The operations each edge allows, edges in ``EDGES`` order."""
        mask = self.allowed_mask()
        return tuple(tuple(op for op, ok in zip(NB201_PRIMITIVES, row) if ok) for row in mask)

    def allowed_mask(self) -> np.ndarray:
        """``allowed`` as a (6, 5) numpy boolean array (what the samplers take)."""
        return self.allowed.detach().cpu().numpy().copy()

    def allows(self, genotype: NB201Genotype) -> bool:
        """Whether every operation of ``genotype`` is allowed on its edge."""
        mask = self.allowed_mask()
        return all(mask[k, o] for k, o in enumerate(op_indices(genotype)))

    # -- parameters by (edge, operation) --------------------------------------------------------------------------

    def op_parameters(self, edge: int, op: str) -> list[nn.Parameter]:
        """The weights of operation ``op`` on ``edge`` in every cell (empty for operations without weights)."""
        o = NB201_PRIMITIVES.index(op)
        return [p for cell in self.cells() for p in cell.edges[edge][o].parameters()]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Every weight outside the cells' edges (stem, reduction blocks, head): what all paths share."""
        return [p for name, p in self.named_parameters() if ".edges." not in name]


@torch.no_grad()
def path_grad_norms(supernet: OneShotSupernet, genotype: NB201Genotype) -> np.ndarray:
    """After a backward pass through ``genotype``: per edge, the L2 norm of the gradient of its operation's
    weights over all cells; NaN for operations without weights."""
    norms = np.full(N_EDGES, np.nan)
    for k, (op, _) in enumerate(genotype.edges()):
        grads = [p.grad for p in supernet.op_parameters(k, op) if p.grad is not None]
        if op in PARAMETRIC and grads:
            norms[k] = float(torch.sqrt(sum((g.detach().float() ** 2).sum() for g in grads)))
    return norms


METRICS = ("loss", "accuracy")
"""What an inherited-weight ranking orders by: ``"loss"`` (lowest validation cross-entropy first) or ``"accuracy"``."""


@dataclass(frozen=True)
class InheritConfig:
    """Inherited-weight evaluation: BatchNorm recalibrated on ``calibration_batches`` training batches of
    ``batch_size`` drawn once from ``seed``, then accuracy and loss on the validation data in batches of
    ``batch_size``; rankings order by ``metric`` (``METRICS``)."""

    calibration_batches: int = 4
    batch_size: int = 256
    seed: int = 0
    metric: str = "loss"

    def __post_init__(self) -> None:
        if self.calibration_batches < 1 or self.batch_size < 1:
            raise NasError("InheritConfig: calibration_batches and batch_size must be >= 1")
        if self.metric not in METRICS:
            raise NasError(f"InheritConfig: metric must be one of {', '.join(METRICS)}, got {self.metric!r}")


@dataclass(frozen=True)
class InheritedScore:
    """One architecture with inherited weights: validation ``accuracy`` and mean cross-entropy ``loss``."""

    accuracy: float
    loss: float

    def value(self, metric: str) -> float:
        """The ranking score for ``metric`` (higher is better): the accuracy, or minus the loss."""
        if metric not in METRICS:
            raise NasError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        return self.accuracy if metric == "accuracy" else -self.loss


@torch.no_grad()
def inherited_scores(
    supernet: OneShotSupernet,
    genotypes: Sequence[NB201Genotype],
    calibration_x: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor],
    config: InheritConfig = InheritConfig(),
    device: str | torch.device = "cpu",
) -> list[InheritedScore]:
    """Validation accuracy and loss of each genotype with the supernet's weights (BatchNorm recalibrated per
    genotype on ``calibration_x``, training inputs). Deterministic; the supernet itself is not modified."""
    model = copy.deepcopy(supernet).to(device)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.momentum = None  # cumulative average: exact statistics of the calibration batches
    batches = _calibration_batches(calibration_x, config)
    x_val, y_val = val
    results = []
    for genotype in genotypes:
        for bn in norms:
            bn.reset_running_stats()
        model.train()
        for xb in batches:
            model(xb.to(device), genotype)
        model.eval()
        correct, loss = 0, 0.0
        for start in range(0, len(y_val), config.batch_size):
            xb, yb = x_val[start : start + config.batch_size].to(device), y_val[start : start + config.batch_size]
            logits = model(xb, genotype).cpu()
            correct += int((logits.argmax(dim=1) == yb).sum())
            loss += float(F.cross_entropy(logits.float(), yb, reduction="sum"))
        results.append(InheritedScore(correct / len(y_val), loss / len(y_val)))
    return results


def inherited_accuracy(
    supernet: OneShotSupernet,
    genotypes: Sequence[NB201Genotype],
    calibration_x: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor],
    config: InheritConfig = InheritConfig(),
    device: str | torch.device = "cpu",
) -> list[float]:
    """Validation accuracy of each genotype with the supernet's weights (``inherited_scores``)."""
    return [s.accuracy for s in inherited_scores(supernet, genotypes, calibration_x, val, config, device)]


def _calibration_batches(x: torch.Tensor, config: InheritConfig) -> list[torch.Tensor]:
    order = torch.from_numpy(np.random.default_rng(config.seed).permutation(len(x)))
    size = min(config.batch_size, len(x))
    count = min(config.calibration_batches, max(1, len(x) // size))
    return [x[order[i * size : (i + 1) * size]] for i in range(count)]
