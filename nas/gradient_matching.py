"""Gradient matching between the operations of a supernet edge, and the split it suggests (GM-NAS, Hu et al. 2022;
Hu et al. 2022, GM-NAS).

**Distances.** For an edge ``e`` with operations ``O_e``: restrict ``e`` to each ``o ∈ O_e`` in turn, run the same
batch, and collect the gradient of every shared weight except ``e``'s own operations' weights (α is not a weight).
``distance(o1, o2) = 1 − cos(g_o1, g_o2)`` on the flattened gradients, averaged over batches: symmetric, exactly 0
on the diagonal, in [0, 2]. Operations without weights (pools, skip, none) still change the gradients of the
weights around them, so they are compared like any other; two all-zero gradients count as agreeing (distance 0).
The model is probed in training mode (batch statistics, as it trains) and left exactly as it was: restriction,
BatchNorm running statistics and mode are restored, and ``.grad`` is never touched.

**Partition.** Each edge's operations are split in two by minimum total within-group distance — equivalently the
maximum cut of the complete graph weighted by distance (``networkx``: ``similarity_graph`` carries ``distance``
and ``similarity = 1 − distance`` on every pair; ``nx.cut_size`` scores a partition). We search all 2-partitions
exhaustively (≤ 2^15 for the limit of 16 operations; 127 for the 8 DARTS operations) rather than run
``nx.stoer_wagner`` on the similarity graph: a minimum cut of similarity equals minimum within-group distance only
for a fixed group size, and Stoer–Wagner favours cutting off a single operation, whereas the exhaustive search
optimises the stated objective exactly and deterministically (ties: larger decisiveness, then the lexicographically
first groups). This is also what GM-NAS's own code does. The **decisiveness** of a partition is its mean
cross-group distance minus its mean within-group distance; the edge whose partition is most decisive is split
(ties: the first edge in ``EdgeId`` order).
"""

from __future__ import annotations

import abc
import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import NasError
from nas.oneshot import genotype_of
from nas.spaces import NB201_PRIMITIVES

MAX_OPS = 16
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True, order=True)
class EdgeId:
    """An edge of a supernet's cell: ``cell`` ("normal" / "reduce" for DARTS, "cell" for NAS-Bench-201) and its
    index in that cell's edge order. Text form ``cell:index``."""

    cell: str
    index: int

    def __str__(self) -> str:
        return f"{self.cell}:{self.index}"


class SplitSpace(abc.ABC):
    """How gradient matching reads and restricts one kind of supernet. Stateless: every method takes the model.

    Operations are named by their index in ``op_names(model, edge)``.
    """

    @abc.abstractmethod
    def edges(self, model: nn.Module) -> dict[EdgeId, tuple[int, ...]]:
        """Every edge, in order, with the operations it may use now."""

    @abc.abstractmethod
    def op_names(self, model: nn.Module, edge: EdgeId) -> tuple[str, ...]:
        """The names of all operations of ``edge`` (restricted or not), by index."""

    @abc.abstractmethod
    def restrict(self, model: nn.Module, edge: EdgeId, ops: Sequence[int]) -> None:
        """Let ``edge`` use only ``ops`` from now on."""

    @abc.abstractmethod
    def edge_parameters(self, model: nn.Module, edge: EdgeId) -> list[nn.Parameter]:
        """The weights of ``edge``'s own operations (in every cell that shares the edge)."""

    @abc.abstractmethod
    def weights(self, model: nn.Module) -> list[nn.Parameter]:
        """Every weight of the supernet (not architecture parameters)."""

    def sample(self, model: nn.Module, generator: torch.Generator) -> Any:
        """What one batch's comparisons share besides the data (a single-path supernet: the path of the other
        edges); ``None`` by default."""
        return None

    @abc.abstractmethod
    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, sample: Any) -> torch.Tensor:
        """The training loss of the (restricted) model on a batch, given ``sample``."""

    def full(self, model: nn.Module, edge: EdgeId) -> bool:
        """Whether ``edge`` is unsplit: it may still use every operation."""
        return len(self.edges(model)[edge]) == len(self.op_names(model, edge))


@dataclass(frozen=True)
class Partition:
    """Two groups of operation indices (the group holding the edge's first operation first) and the mean
    distance within groups (0 without a within-group pair) and across them."""

    groups: tuple[tuple[int, ...], tuple[int, ...]]
    within: float
    cross: float

    @property
    def decisiveness(self) -> float:
        """Mean cross-group distance minus mean within-group distance: how clearly the edge wants splitting."""
        return self.cross - self.within


# -- distances ------------------------------------------------------------------------------------------------------


def gradient_distances(
    model: nn.Module, space: SplitSpace, edge: EdgeId, batches: Sequence[Batch], generator: torch.Generator
) -> np.ndarray:
    """The (k × k) gradient-matching distances between the k operations ``edge`` may use (module docstring);
    ``generator`` feeds ``space.sample`` once per batch. The model is left as it was."""
    if not batches:
        raise NasError("gradient_distances needs at least one batch")
    own = {id(p) for p in space.edge_parameters(model, edge)}
    shared = [p for p in space.weights(model) if id(p) not in own]
    total = None
    with _probing(model, space, edge) as ops:
        for x, y in batches:
            sample = space.sample(model, generator)
            grads = torch.stack([_flat_gradient(model, space, edge, o, x, y, sample, shared) for o in ops])
            distances = cosine_distances(grads)
            total = distances if total is None else total + distances
    return _symmetric(total / len(batches))


def cosine_distances(vectors: torch.Tensor) -> np.ndarray:
    """``1 − cos`` between the rows of ``vectors`` (float64), clipped to [0, 2], 0 on the diagonal; a zero row is at
    distance 0 from another zero row and 1 from any other row."""
    v = vectors.detach().double()
    norms = torch.linalg.vector_norm(v, dim=1)
    unit = v / norms.clamp_min(torch.finfo(torch.float64).tiny)[:, None]
    similarity = unit @ unit.T
    zero = norms == 0
    similarity[zero[:, None] & zero[None, :]] = 1.0
    return _symmetric((1.0 - similarity).clamp(0.0, 2.0).cpu().numpy())


def _flat_gradient(
    model: nn.Module, space: SplitSpace, edge: EdgeId, op: int, x: torch.Tensor, y: torch.Tensor, sample: Any,
    params: list[nn.Parameter],
) -> torch.Tensor:  # fmt: skip
    space.restrict(model, edge, (op,))
    loss = space.loss(model, x, y, sample)
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    return torch.cat([g.reshape(-1) for g in grads])


@contextmanager
def _probing(model: nn.Module, space: SplitSpace, edge: EdgeId) -> Iterator[tuple[int, ...]]:
    """Training mode for the block; afterwards the edge's restriction, every buffer and the mode are restored."""
    ops = space.edges(model)[edge]
    buffers = [b.detach().clone() for b in model.buffers()]
    training = model.training
    model.train()
    try:
        yield ops
    finally:
        space.restrict(model, edge, ops)
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers):
                buffer.copy_(saved)
        model.train(training)


def _symmetric(distances: np.ndarray) -> np.ndarray:
    d = np.clip((distances + distances.T) / 2.0, 0.0, 2.0)
    np.fill_diagonal(d, 0.0)
    return d


# -- partition ------------------------------------------------------------------------------------------------------


def similarity_graph(distances: np.ndarray, ops: Sequence[int]) -> nx.Graph:
    """The complete graph on ``ops`` with ``distance`` and ``similarity = 1 − distance`` on every pair."""
    d = _check_distances(distances, len(ops))
    graph = nx.Graph()
    graph.add_nodes_from(ops)
    for i, j in itertools.combinations(range(len(ops)), 2):
        graph.add_edge(ops[i], ops[j], distance=float(d[i, j]), similarity=1.0 - float(d[i, j]))
    return graph


def partition_ops(distances: np.ndarray, ops: Sequence[int], min_group: int = 1) -> Partition:
    """The 2-partition of ``ops`` (groups of at least ``min_group``) with the least total within-group distance,
    found exhaustively on ``similarity_graph`` (see the module docstring for why, and the tie rules)."""
    ops = tuple(int(o) for o in ops)
    if min_group < 1 or len(ops) < 2 * min_group:
        raise NasError(f"cannot split {len(ops)} operations into two groups of at least {min_group}")
    if len(ops) > MAX_OPS:
        raise NasError(f"exhaustive partition handles at most {MAX_OPS} operations per edge, got {len(ops)}")
    graph = similarity_graph(distances, ops)
    total = graph.size(weight="distance")
    best: tuple[tuple[float, float, tuple[int, ...]], Partition] | None = None
    for first in _first_groups(ops, min_group):
        second = tuple(o for o in ops if o not in first)
        cross_sum = nx.cut_size(graph, first, second, weight="distance")
        partition = _partition(first, second, total - cross_sum, cross_sum)
        key = (total - cross_sum, -partition.decisiveness, first)
        if best is None or key < best[0]:
            best = (key, partition)
    assert best is not None  # len(ops) >= 2 * min_group leaves at least one partition
    return best[1]


def choose_split(partitions: Mapping[EdgeId, Partition]) -> EdgeId:
    """The edge whose partition is most decisive (ties: the first in ``EdgeId`` order)."""
    if not partitions:
        raise NasError("no edge left to split: every edge is already split or has too few operations")
    return min(partitions, key=lambda edge: (-partitions[edge].decisiveness, edge))


@dataclass(frozen=True)
class SplitPlan:
    """Gradient matching over a supernet's candidate edges: each one's distances and partition, and the edge to
    split (the most decisive)."""

    edge: EdgeId
    distances: Mapping[EdgeId, np.ndarray]
    partitions: Mapping[EdgeId, Partition]


def plan_split(
    model: nn.Module, space: SplitSpace, batches: Sequence[Batch], generator: torch.Generator, min_group: int = 1
) -> SplitPlan:
    """Distances and partitions on every unsplit edge with at least ``2 · min_group`` operations (the same
    ``batches`` for all), and the most decisive edge; ``NasError`` if no edge can be split."""
    allowed = space.edges(model)
    candidates = [e for e, ops in allowed.items() if space.full(model, e) and len(ops) >= 2 * min_group]
    distances = {e: gradient_distances(model, space, e, batches, generator) for e in candidates}
    partitions = {e: partition_ops(distances[e], allowed[e], min_group) for e in candidates}
    return SplitPlan(choose_split(partitions), distances, partitions)


def _first_groups(ops: tuple[int, ...], min_group: int) -> Iterator[tuple[int, ...]]:
    """Every group holding ``ops[0]`` whose complement is non-empty, both of at least ``min_group``."""
    rest = ops[1:]
    for size in range(min_group - 1, len(ops) - min_group):
        for others in itertools.combinations(rest, size):
            yield (ops[0], *others)


def _partition(first: tuple[int, ...], second: tuple[int, ...], within_sum: float, cross_sum: float) -> Partition:
    pairs = len(first) * (len(first) - 1) // 2 + len(second) * (len(second) - 1) // 2
    return Partition((first, second), within_sum / pairs if pairs else 0.0, cross_sum / (len(first) * len(second)))


def _check_distances(distances: np.ndarray, n: int) -> np.ndarray:
    d = np.asarray(distances, dtype=np.float64)
    if d.shape != (n, n) or not np.isfinite(d).all():
        raise NasError(f"distances must be a finite ({n}, {n}) matrix, got shape {d.shape}")
    if not np.allclose(d, d.T) or (np.diag(d) != 0).any() or d.min() < 0 or d.max() > 2:
        raise NasError("distances must be symmetric, 0 on the diagonal and within [0, 2]")
    return d


# -- the DARTS supernet ---------------------------------------------------------------------------------------------


class DartsSplitSpace(SplitSpace):
    """``nas.supernet.Supernet``: edge ``normal:i`` / ``reduce:i`` is row ``i`` of that cell type's α, shared by
    every cell of the type (so restricting it restricts all of them); the loss is the mixed (continuous) forward."""

    def edges(self, model: nn.Module) -> dict[EdgeId, tuple[int, ...]]:
        return {
            EdgeId(cell, i): tuple(int(o) for o in torch.nonzero(row).flatten())
            for cell in ("normal", "reduce") if _has_cell(model, cell)
            for i, row in enumerate(model.edge_mask(cell).cpu())
        }  # fmt: skip

    def op_names(self, model: nn.Module, edge: EdgeId) -> tuple[str, ...]:
        return model.config.primitives

    def restrict(self, model: nn.Module, edge: EdgeId, ops: Sequence[int]) -> None:
        model.restrict_edge(edge.cell, edge.index, ops)

    def edge_parameters(self, model: nn.Module, edge: EdgeId) -> list[nn.Parameter]:
        return [p for cell in _cells(model, edge.cell) for p in cell.edges[edge.index].parameters()]

    def weights(self, model: nn.Module) -> list[nn.Parameter]:
        return model.weights()

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, sample: Any) -> torch.Tensor:
        return F.cross_entropy(model(x), y)


def _cells(model: nn.Module, cell: str) -> list[nn.Module]:
    return [c for c in model.cells if c.reduction == (cell == "reduce")]


def _has_cell(model: nn.Module, cell: str) -> bool:
    """Whether the supernet has a cell of this type (tiny test nets may have only reduction cells)."""
    return bool(_cells(model, cell))


# -- the one-shot NAS-Bench-201 supernet ------------------------------------------------------------------------------


class OneShotSplitSpace(SplitSpace):
    """``nas.oneshot.OneShotSupernet``: edge ``cell:k`` is NB201 edge ``k`` (``EDGES`` order) of every cell. The
    loss runs one path: ``sample`` draws an allowed operation for every edge once per batch, so all operations of
    the edge under test are compared on the same path of the other edges (as GM-NAS does for single-path
    supernets); the edge under test runs the operation it is restricted to."""

    def edges(self, model: nn.Module) -> dict[EdgeId, tuple[int, ...]]:
        return {EdgeId("cell", k): tuple(int(o) for o in np.flatnonzero(row)) for k, row in
                enumerate(model.allowed_mask())}  # fmt: skip

    def op_names(self, model: nn.Module, edge: EdgeId) -> tuple[str, ...]:
        return NB201_PRIMITIVES

    def restrict(self, model: nn.Module, edge: EdgeId, ops: Sequence[int]) -> None:
        names = self.op_names(model, edge)
        model.restrict(edge.index, [names[o] for o in ops])

    def edge_parameters(self, model: nn.Module, edge: EdgeId) -> list[nn.Parameter]:
        return [p for op in self.op_names(model, edge) for p in model.op_parameters(edge.index, op)]

    def weights(self, model: nn.Module) -> list[nn.Parameter]:
        return list(model.parameters())

    def sample(self, model: nn.Module, generator: torch.Generator) -> Any:
        return [ops[int(torch.randint(len(ops), (1,), generator=generator))] for ops in self.edges(model).values()]

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, sample: Any) -> torch.Tensor:
        allowed = list(self.edges(model).values())
        path = [op if op in ops else ops[0] for op, ops in zip(sample, allowed)]
        return F.cross_entropy(model(x, genotype_of(path)), y)
