"""The base methods few-shot NAS splits (``nas.fewshot.FewShotBackend``): DARTS and the one-shot NB201 supernet.

- ``DartsBackend``: a DARTS / sharpDARTS search (``nas.darts``: its supernet, its α/weight steps, its schedule);
  a state holds the supernet, the weights' SGD (momentum buffers), the ``Architect`` (α's Adam moments) and the
  batch-order generator. Score: accuracy and loss on the α (validation) split. Result: the winner's genotype.
- ``OneShotBackend``: the single-path NB201 supernet (``nas.oneshot``, trained by ``nas.oneshot_train``); a state
  holds the supernet (with its ``allowed`` mask), its SGD and the path/data sampler. Score: mean inherited
  accuracy (then loss) of a fixed sample of architectures from the subspace it may use. Result: the best of a
  larger sample of the winner's subspace by the inherited metric (``InheritConfig.metric``: loss by default) and,
  with a ground-truth table, Kendall τ and the top pick's rank — each table
  architecture scored by the last-generation sub-supernet whose subspace holds it (the leaves partition the
  space).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from evaluators.fit import evaluate
from nas import oneshot_train
from nas.architect import Architect
from nas.darts import Data, DartsConfig, _tensors, search_epoch
from nas.errors import NasError
from nas.fewshot import FewShotBackend
from nas.genotypes import Genotype
from nas.gradient_matching import Batch, DartsSplitSpace, OneShotSplitSpace, SplitSpace
from nas.nb201 import NB201Genotype
from nas.oneshot import InheritConfig, InheritedScore, OneShotSupernet, genotype_of, inherited_scores
from nas.oneshot_train import OneShotConfig, SupernetData
from nas.pada import Sampler, make_sampler
from nas.ranking import rank_correlation
from nas.supernet import Supernet


def random_batches(
    x: torch.Tensor, y: torch.Tensor, count: int, batch_size: int, generator: torch.Generator, device: Any
) -> list[Batch]:
    """``count`` disjoint random batches (fewer, or smaller, when the data run out)."""
    order = torch.randperm(len(y), generator=generator)[: count * batch_size]
    return [(x[i].to(device), y[i].to(device)) for i in order.split(batch_size) if len(i) > 1]


# -- DARTS -----------------------------------------------------------------------------------------------------------


@dataclass
class DartsState:
    """One DARTS sub-supernet: everything its training reads and writes."""

    model: Supernet
    w_optimizer: torch.optim.SGD
    architect: Architect
    generator: torch.Generator


class DartsBackend(FewShotBackend):
    """Few-shot DARTS: ``config`` is the DARTS search every lineage runs (its ``epochs`` the total); ``train_data``
    trains w, ``val_data`` trains α and scores the sub-supernets (as in ``nas.darts.search``)."""

    def __init__(self, config: DartsConfig, train_data: Data, val_data: Data, device: str | torch.device = "cpu"):
        self.config, self.device, self.epochs = config, device, config.epochs
        self.train = _tensors("train_data", train_data, config)
        self.val = _tensors("val_data", val_data, config)
        if self.train[0].shape[1:] != self.val[0].shape[1:]:
            raise NasError(f"train and validation inputs differ in shape: {self.train[0].shape[1:]} vs "
                           f"{self.val[0].shape[1:]}")  # fmt: skip
        self.space: SplitSpace = DartsSplitSpace()

    def root(self) -> DartsState:
        c, x = self.config, self.train[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            model = Supernet(c.net, in_channels=x.shape[1], dim=x.dim() - 2)
        model = model.to(self.device)
        w_optimizer = c.optimizer(model.weights())
        architect = Architect(model, w_optimizer, c.arch)
        return DartsState(model, w_optimizer, architect, torch.Generator().manual_seed(c.seed + 1))

    def model(self, state: DartsState) -> nn.Module:
        return state.model

    def train_epoch(self, state: DartsState, epoch: int) -> dict[str, float]:
        r = search_epoch(state.model, state.architect, state.w_optimizer, self.config, self.train, self.val,
                         state.generator, epoch, self.device)  # fmt: skip
        return {"lr": r.lr, "train_loss": r.train_loss, "train_accuracy": r.train_accuracy, "val_loss": r.val_loss,
                "val_accuracy": r.val_accuracy}  # fmt: skip

    def score(self, state: DartsState) -> tuple[float, float]:
        loss, accuracy = self._evaluate(state)
        return accuracy, loss

    def batches(self, count: int, generator: torch.Generator) -> list[Batch]:
        return random_batches(*self.train, count, self.config.batch_size, generator, self.device)

    def architecture_text(self, state: DartsState) -> str:
        return state.model.genotype().to_text()

    def finish(self, winner: DartsState, leaves: Sequence[DartsState]) -> tuple[Genotype, str, dict[str, Any]]:
        genotype = winner.model.genotype()
        loss, accuracy = self._evaluate(winner)
        return genotype, genotype.to_text(), {"val_loss": loss, "val_accuracy": accuracy}

    def _evaluate(self, state: DartsState) -> tuple[float, float]:
        return evaluate(state.model, *self.val, self.config.batch_size, self.device)


# -- the one-shot NAS-Bench-201 supernet ------------------------------------------------------------------------------


@dataclass
class OneShotState:
    """One single-path sub-supernet: the supernet (its ``allowed`` mask included), its SGD and its sampler."""

    supernet: OneShotSupernet
    optimizer: torch.optim.Optimizer
    sampler: Sampler


class OneShotBackend(FewShotBackend):
    """Few-shot over the one-shot NB201 supernet trained by ``config`` (its ``epochs`` the total, its sampler —
    uniform or PA&DA — restricted to each sub-supernet's subspace) on ``data``.

    A sub-supernet's score is the mean inherited accuracy (``inherit``) of ``score_archs`` architectures drawn from
    its subspace with ``config.seed`` (all of them when the subspace is that small). The result is the best of
    ``final_archs`` architectures of the winner's subspace; the metrics hold its inherited accuracy and every
    sampled architecture's (``scores``); with ``table`` (``{arch text: accuracy}``) they add the leaves' inherited
    accuracy of each table architecture (``table_scores``) and its rank correlation with the table (Kendall τ,
    Spearman ρ, ``n``, p-values).
    """

    def __init__(
        self,
        config: OneShotConfig,
        data: SupernetData,
        *,
        score_archs: int = 16,
        final_archs: int = 64,
        inherit: InheritConfig = InheritConfig(),
        table: Mapping[str, float] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if score_archs < 1 or final_archs < 1:
            raise NasError("OneShotBackend: score_archs and final_archs must be >= 1")
        self.config, self.data, self.inherit, self.table, self.device = config, data, inherit, table, device
        self.score_archs, self.final_archs, self.epochs = score_archs, final_archs, config.epochs
        self.space: SplitSpace = OneShotSplitSpace()

    def root(self) -> OneShotState:
        c = self.config
        supernet = oneshot_train.new_supernet(c, self.data.in_channels, self.data.dim).to(self.device)
        sampler = make_sampler(c.sampler, c.epochs, len(self.data.train[1]), c.seed)
        return OneShotState(supernet, oneshot_train.new_optimizer(c, supernet), sampler)

    def model(self, state: OneShotState) -> nn.Module:
        return state.supernet

    def train_epoch(self, state: OneShotState, epoch: int) -> dict[str, float]:
        record = oneshot_train.train_epoch(state.supernet, state.optimizer, state.sampler, self.data.train, epoch,
                                           self.config, self.device)  # fmt: skip
        return {"lr": record.lr, "train_loss": record.train_loss, "train_accuracy": record.train_accuracy}

    def score(self, state: OneShotState) -> tuple[float, float]:
        results = self._evaluate(state, subspace_sample(state.supernet, self.score_archs, self.config.seed))
        return float(np.mean([r.accuracy for r in results])), float(np.mean([r.loss for r in results]))

    def batches(self, count: int, generator: torch.Generator) -> list[Batch]:
        return random_batches(*self.data.train, count, self.config.batch_size, generator, self.device)

    def finish(
        self, winner: OneShotState, leaves: Sequence[OneShotState]
    ) -> tuple[NB201Genotype, str, dict[str, Any]]:
        candidates = subspace_sample(winner.supernet, self.final_archs, self.config.seed + 1)
        results = self._evaluate(winner, candidates)
        values = [r.value(self.inherit.metric) for r in results]
        best = int(np.argmax(values))
        metrics: dict[str, Any] = {"inherited_accuracy": results[best].accuracy, "inherited_loss": results[best].loss,
                                   "scores": {g.to_text(): v for g, v in zip(candidates, values)}}  # fmt: skip
        if self.table:
            predicted = self.table_scores(leaves)
            metrics.update(rank_correlation(predicted, self.table).to_dict(), table_scores=predicted)
        return candidates[best], candidates[best].to_text(), metrics

    def table_scores(self, leaves: Sequence[OneShotState]) -> dict[str, float]:
        """Each table architecture's ranking score (``InheritedScore.value`` of ``inherit.metric``) from the leaf
        whose subspace holds it."""
        owners: dict[int, list[NB201Genotype]] = {}
        for text in self.table or {}:
            genotype = NB201Genotype.from_text(text)
            owner = [i for i, leaf in enumerate(leaves) if leaf.supernet.allows(genotype)]
            if len(owner) != 1:
                raise NasError(f"{text} lies in {len(owner)} sub-supernets; the leaves must partition the space")
            owners.setdefault(owner[0], []).append(genotype)
        scores: dict[str, float] = {}
        for i, genotypes in owners.items():
            values = [r.value(self.inherit.metric) for r in self._evaluate(leaves[i], genotypes)]
            scores.update(zip((g.to_text() for g in genotypes), values))
        return scores

    def _evaluate(self, state: OneShotState, genotypes: Sequence[NB201Genotype]) -> list[InheritedScore]:
        return inherited_scores(state.supernet, genotypes, self.data.train[0], self.data.val, self.inherit,
                                self.device)  # fmt: skip


def subspace_sample(supernet: OneShotSupernet, count: int, seed: int) -> list[NB201Genotype]:
    """``count`` distinct architectures the supernet allows, drawn uniformly with ``seed`` (every one, in a fixed
    order, when the subspace has no more than ``count``)."""
    allowed = [np.flatnonzero(row) for row in supernet.allowed_mask()]
    size = int(np.prod([len(ops) for ops in allowed]))
    if size <= count:
        return [genotype_of(path) for path in itertools.product(*allowed)]
    rng, chosen = np.random.default_rng(seed), {}
    while len(chosen) < count:
        path = tuple(int(rng.choice(ops)) for ops in allowed)
        chosen.setdefault(path, genotype_of(path))
    return list(chosen.values())
