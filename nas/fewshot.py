"""Few-shot NAS by gradient matching (GM-NAS, Hu et al. 2022): split a supernet into sub-supernets
along the edges where its operations disagree, train them apart, keep the best.

The schedule, for ``splits = K`` and ``split_every = s`` (DARTS space in the paper: K = 3, s = 2):

1. Train the supernet to epoch ``s``. At epochs ``s, 2s, …, Ks`` every live sub-supernet is split: gradient-matching
   distances on every unsplit edge (``nas.gradient_matching``, the same batches for all edges), each edge's
   operations partitioned in two, the most decisive edge cut. The two children are deep copies of the parent —
   weights, α, optimizer states (momentum, Adam moments), batch-order RNG, sampler — with the edge restricted to
   one group each; both then train on from the parent's epoch. So ``2^K`` sub-supernets after the last split.
2. Successive halving over the remaining epochs up to ``epochs``: ``K`` rounds (one without splits); each round
   trains every survivor for its share of the epochs (equal shares, the remainder in the last round), then keeps
   the better half by the backend's score (validation accuracy, then lower loss, then the lower id); the last
   round keeps one, the winner. With ``halving=False`` every sub-supernet trains to the end and the best wins.
3. The winner's architecture: DARTS derives its genotype from α (within the restrictions); the one-shot backend
   takes the best sampled architecture of its subspace by inherited accuracy.

Every lineage trains ``epochs`` epochs in total, on its own copy of the learning-rate schedule, as the paper does.
Progress is reported through ``on_event`` (``Subnet`` when one is born, ``SubnetEpoch``, ``SplitRecord``,
``HalvingRound``); raising from it, or Ctrl-C, stops the search with everything reported so far kept by the caller.
Everything random flows from the backend's seeds and ``FewShotConfig.seed``.
"""

from __future__ import annotations

import abc
import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from nas.errors import NasError
from nas.gradient_matching import Batch, EdgeId, Partition, SplitSpace, plan_split

T = TypeVar("T")


@dataclass(frozen=True)
class FewShotConfig:
    """Splits at epochs ``split_every · k`` for ``k = 1..splits``; gradient matching over ``distance_batches``
    training batches; partition groups of at least ``min_group`` operations (GM-NAS's DARTS code: 2);
    ``halving`` picks the winner by successive halving (else all train to the end); ``seed`` draws the distance
    batches (and the paths of a single-path supernet)."""

    splits: int = 3
    split_every: int = 2
    distance_batches: int = 3
    min_group: int = 1
    halving: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.splits < 0 or self.split_every < 1 or self.distance_batches < 1 or self.min_group < 1:
            raise NasError("FewShotConfig: splits must be >= 0; split_every, distance_batches, min_group >= 1")

    def split_epochs(self) -> tuple[int, ...]:
        """The epochs after which the sub-supernets split."""
        return tuple(self.split_every * k for k in range(1, self.splits + 1))

    def round_lengths(self, epochs: int) -> tuple[int, ...]:
        """Epochs of each selection round after the last split (their sum reaches ``epochs``)."""
        rounds = max(1, self.splits) if self.halving else 1
        remaining = epochs - self.split_every * self.splits
        if remaining < rounds:
            raise NasError(f"{epochs} epochs are too few for {self.splits} splits every {self.split_every} epochs "
                           f"and {rounds} selection round(s): need at least {self.split_every * self.splits + rounds}")
        base = remaining // rounds
        return (base,) * (rounds - 1) + (remaining - base * (rounds - 1),)


# -- records ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subnet:
    """A sub-supernet: its id (the root is 0; children numbered as they are born), its parent, the epoch it was
    born at, and the operations each restricted edge may use (``edge text → op names``, the latest split last)."""

    id: int
    parent: int | None
    born: int
    restrictions: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class SubnetEpoch:
    """One training epoch of a sub-supernet: the backend's metrics (e.g. lr, train/val loss and accuracy), the
    architecture it currently selects (text; empty if the backend has none per epoch) and the wall time."""

    subnet: int
    epoch: int
    metrics: Mapping[str, float]
    architecture: str
    seconds: float


@dataclass(frozen=True)
class EdgeScore:
    """Gradient matching on one unsplit edge: its operations, their distance matrix, the partition (op names)
    and its mean within / cross distances and decisiveness."""

    edge: str
    ops: tuple[str, ...]
    distances: tuple[tuple[float, ...], ...]
    groups: tuple[tuple[str, ...], tuple[str, ...]]
    within: float
    cross: float
    decisiveness: float


@dataclass(frozen=True)
class SplitRecord:
    """One split: the sub-supernet split, at which epoch, along which edge into which groups (children in the same
    order), every candidate edge's score, and the seconds gradient matching took."""

    subnet: int
    epoch: int
    edge: str
    groups: tuple[tuple[str, ...], tuple[str, ...]]
    children: tuple[int, int]
    scores: tuple[EdgeScore, ...]
    seconds: float


@dataclass(frozen=True)
class HalvingRound:
    """A selection round: the epoch it ended at, ``(subnet, accuracy, loss)`` best first, and the ids kept."""

    round: int
    epoch: int
    ranking: tuple[tuple[int, float, float], ...]
    kept: tuple[int, ...]


@dataclass(frozen=True)
class FewShotResult:
    """The winner's id, its architecture (object and text), the backend's final metrics (e.g. Kendall τ), and
    everything reported on the way."""

    winner: int
    architecture: Any
    text: str
    metrics: Mapping[str, Any]
    subnets: tuple[Subnet, ...]
    splits: tuple[SplitRecord, ...]
    rounds: tuple[HalvingRound, ...]
    history: tuple[SubnetEpoch, ...]


Event = Subnet | SubnetEpoch | SplitRecord | HalvingRound


# -- backends ---------------------------------------------------------------------------------------------------------


class FewShotBackend(abc.ABC):
    """One base method's sub-supernets. A *state* is everything one sub-supernet trains with (model, optimizers,
    RNGs, ...); ``clone`` must deep-copy all of it. ``space`` tells gradient matching how to read the model."""

    space: SplitSpace
    epochs: int

    @abc.abstractmethod
    def root(self) -> Any:
        """The state of a fresh supernet."""

    @abc.abstractmethod
    def model(self, state: Any) -> nn.Module:
        """The supernet of ``state``."""

    @abc.abstractmethod
    def train_epoch(self, state: Any, epoch: int) -> dict[str, float]:
        """Train ``state`` for epoch ``epoch`` (1-based) and return its metrics."""

    @abc.abstractmethod
    def score(self, state: Any) -> tuple[float, float]:
        """``(accuracy, loss)`` for selection: higher accuracy, then lower loss, is better."""

    @abc.abstractmethod
    def batches(self, count: int, generator: torch.Generator) -> list[Batch]:
        """``count`` training batches for gradient matching, on the model's device."""

    def architecture_text(self, state: Any) -> str:
        """The architecture ``state`` selects now, as text ("" if the method has none before the end)."""
        return ""

    @abc.abstractmethod
    def finish(self, winner: Any, leaves: Sequence[Any]) -> tuple[Any, str, dict[str, Any]]:
        """The winner's architecture (object, text) and final metrics; ``leaves`` are every last-generation
        state, the winner included, in id order."""

    def clone(self, state: Any) -> Any:
        """A deep copy of ``state`` (by default ``copy.deepcopy``, which keeps optimizer ↔ parameter links)."""
        return copy.deepcopy(state)


# -- the search -------------------------------------------------------------------------------------------------------


@dataclass
class _Live:
    info: Subnet
    state: Any
    epoch: int


def search(
    backend: FewShotBackend, config: FewShotConfig, on_event: Callable[[Event], None] | None = None
) -> FewShotResult:
    """Few-shot NAS with ``backend`` (see the module docstring). Deterministic given the configurations."""
    lengths = config.round_lengths(backend.epochs)
    log = _Log(on_event)
    generator = torch.Generator().manual_seed(config.seed)
    live = [_Live(log.born(Subnet(0, None, 0, ())), backend.root(), 0)]
    for split_epoch in config.split_epochs():
        for sub in live:
            _train(backend, sub, split_epoch, log)
        live = [child for sub in live for child in _split(backend, sub, config, generator, log)]
    leaves = sorted(live, key=lambda sub: sub.info.id)
    winner = successive_halving(
        leaves, lengths, lambda sub, n: _train(backend, sub, sub.epoch + n, log),
        lambda sub: backend.score(sub.state), lambda sub: sub.info.id, log.round, leaves[0].epoch,
    )  # fmt: skip
    architecture, text, metrics = backend.finish(winner.state, [sub.state for sub in leaves])
    return FewShotResult(winner.info.id, architecture, text, metrics, *log.records())


def successive_halving(
    candidates: Sequence[T],
    lengths: Sequence[int],
    advance: Callable[[T, int], None],
    score: Callable[[T], tuple[float, float]],
    ident: Callable[[T], int],
    on_round: Callable[[HalvingRound], None] | None = None,
    start: int = 0,
) -> T:
    """Successive halving: for each round, ``advance(c, length)`` every survivor, rank by ``score`` (higher
    accuracy, then lower loss, then lower ``ident``) and keep the better half (rounded up) — one in the last
    round. ``on_round`` sees each round, its epoch counted from ``start``. Returns the winner."""
    if not candidates or not lengths:
        raise NasError("successive_halving needs candidates and at least one round")
    survivors, epoch = list(candidates), start
    for r, length in enumerate(lengths, start=1):
        for c in survivors:
            advance(c, length)
        epoch += length
        scored = sorted(((c, *score(c)) for c in survivors), key=lambda t: (-t[1], t[2], ident(t[0])))
        keep = 1 if r == len(lengths) else math.ceil(len(survivors) / 2)
        survivors = [t[0] for t in scored[:keep]]
        if on_round is not None:
            ranking = tuple((ident(c), float(acc), float(loss)) for c, acc, loss in scored)
            on_round(HalvingRound(r, epoch, ranking, tuple(ident(c) for c in survivors)))
    return survivors[0]


def _train(backend: FewShotBackend, sub: _Live, until: int, log: _Log) -> None:
    while sub.epoch < until:
        started = time.perf_counter()
        metrics = backend.train_epoch(sub.state, sub.epoch + 1)
        sub.epoch += 1
        text = backend.architecture_text(sub.state)
        log.epoch(SubnetEpoch(sub.info.id, sub.epoch, metrics, text, time.perf_counter() - started))


def split_children(backend: FewShotBackend, state: Any, edge: EdgeId, groups: Sequence[Sequence[int]]) -> list[Any]:
    """One child per group: a ``backend.clone`` of ``state`` with ``edge`` restricted to the group."""
    children = []
    for group in groups:
        child = backend.clone(state)
        backend.space.restrict(backend.model(child), edge, tuple(group))
        children.append(child)
    return children


def _split(
    backend: FewShotBackend, sub: _Live, config: FewShotConfig, generator: torch.Generator, log: _Log
) -> list[_Live]:
    started = time.perf_counter()
    space, model = backend.space, backend.model(sub.state)
    batches = backend.batches(config.distance_batches, generator)
    plan = plan_split(model, space, batches, generator, config.min_group)
    allowed, names = space.edges(model), space.op_names(model, plan.edge)
    groups = plan.partitions[plan.edge].groups
    children = []
    for group, state in zip(groups, split_children(backend, sub.state, plan.edge, groups)):
        restriction = (str(plan.edge), tuple(names[o] for o in group))
        info = Subnet(log.next_id(), sub.info.id, sub.epoch, (*sub.info.restrictions, restriction))
        children.append(_Live(log.born(info), state, sub.epoch))
    scores = tuple(
        _edge_score(e, space.op_names(model, e), allowed[e], plan.distances[e], p) for e, p in plan.partitions.items()
    )
    log.split(SplitRecord(sub.info.id, sub.epoch, str(plan.edge), tuple(c.info.restrictions[-1][1] for c in children),
                          tuple(c.info.id for c in children), scores, time.perf_counter() - started))  # fmt: skip
    return children


def _edge_score(
    edge: EdgeId, names: Sequence[str], ops: Sequence[int], distances: np.ndarray, partition: Partition
) -> EdgeScore:
    label = {o: names[o] for o in ops}
    return EdgeScore(
        str(edge), tuple(label[o] for o in ops), tuple(tuple(float(v) for v in row) for row in distances),
        tuple(tuple(label[o] for o in g) for g in partition.groups), partition.within, partition.cross,
        partition.decisiveness,
    )  # fmt: skip


class _Log:
    """Collects the records of a search and forwards each to ``on_event`` as it happens."""

    def __init__(self, on_event: Callable[[Event], None] | None) -> None:
        self.on_event = on_event
        self.subnets: list[Subnet] = []
        self.splits: list[SplitRecord] = []
        self.rounds: list[HalvingRound] = []
        self.history: list[SubnetEpoch] = []

    def next_id(self) -> int:
        return len(self.subnets)

    def born(self, info: Subnet) -> Subnet:
        return self._add(self.subnets, info)

    def epoch(self, record: SubnetEpoch) -> None:
        self._add(self.history, record)

    def split(self, record: SplitRecord) -> None:
        self._add(self.splits, record)

    def round(self, record: HalvingRound) -> None:
        self._add(self.rounds, record)

    def records(self) -> tuple[tuple[Subnet, ...], tuple[SplitRecord, ...], tuple[HalvingRound, ...],
                               tuple[SubnetEpoch, ...]]:  # fmt: skip
        return tuple(self.subnets), tuple(self.splits), tuple(self.rounds), tuple(self.history)

    def _add(self, records: list[T], record: T) -> T:
        records.append(record)
        if self.on_event is not None:
            self.on_event(record)
        return record
