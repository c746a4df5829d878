"""Samplers of one-shot supernet training: which path each step trains, and which examples each epoch sees.

``UniformSampler`` is SPOS's baseline: each edge's operation uniformly among the allowed ones, every example once
per epoch in a random order. ``FairSampler`` is FairNAS's strict fairness (Chu et al. 2021): steps come in blocks of
``n`` (the most operations an edge allows, 5 unrestricted); within a block every edge runs each of its allowed
operations exactly once, in an order drawn afresh per edge and block — so after every block each operation has
been trained equally often, not just in expectation (an edge restricted to fewer operations cycles through its
own permutation). With ``OneShotConfig.paths_per_step = n`` one block is one optimiser step (FairNAS's gradient
accumulation). ``PADASampler`` is PA&DA (Lu et al. 2023, Lu et al. 2023, PA&DA), importance sampling of paths
and data that lowers the variance of the supernet's gradient:

- **Path.** After each backward pass, the gradient norm of the sampled parametric operation on each edge (over all
  cells); at the end of an epoch, each operation's importance ``g`` is the mean of its norms during that epoch
  (kept from earlier epochs when it was not sampled). Operations without weights (none, skip_connect, avg_pool_3x3)
  have no gradient: they get the mean importance of the parametric operations of the same edge — neither favoured
  nor starved (our choice; the paper defines importance for parametric operations only); so does a parametric
  operation not yet sampled. Edge by edge, over the
  allowed operations: ``p_path = τ·g/Σg + (1 − τ)/n_allowed``.
- **Data.** The importance of example ``i`` is ``‖softmax(z_i) − onehot(y_i)‖₂`` from the logits the training
  forward pass already computed (no extra backward), the latest value of the epoch (examples not drawn keep their
  previous value; never-seen ones get the mean). ``p_data = τ·g/Σg + (1 − τ)/N``, and the next epoch draws ``N``
  indices with replacement from it. The loss stays the unweighted mean over the batch.
- **Schedule.** ``τ = epoch / epochs`` with ``epoch`` the number of finished epochs: the first epoch is uniform
  (a plain permutation of the data), the last uses ``τ = (epochs − 1)/epochs``.

Every random choice comes from one numpy Generator seeded by ``seed``; ``state_dict()`` is JSON-safe and exact.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch

from nas.errors import NasError
from nas.nb201 import NB201Genotype
from nas.oneshot import N_EDGES, N_OPS, PARAMETRIC, genotype_of
from nas.spaces import NB201_PRIMITIVES

SAMPLERS = ("uniform", "fair", "pada")
_PARAMETRIC_COLUMNS = np.array([op in PARAMETRIC for op in NB201_PRIMITIVES])


def pada_tau(epoch: int, epochs: int) -> float:
    """PA&DA's mixing weight after ``epoch`` finished epochs: ``epoch / epochs``."""
    if not 0 <= epoch <= epochs or epochs < 1:
        raise NasError(f"epoch must be in 0..epochs ({epochs}), got {epoch}")
    return epoch / epochs


def path_probabilities(importance: np.ndarray, tau: float, allowed: np.ndarray) -> np.ndarray:
    """Per edge (row), ``τ·g/Σg + (1 − τ)/n`` over the allowed operations (0 elsewhere); ``g`` is
    ``importance`` (6, 5); an edge whose allowed importances are all zero or unknown is uniform."""
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.shape != (N_EDGES, N_OPS) or not allowed.any(axis=1).all():
        raise NasError(f"allowed must be a ({N_EDGES}, {N_OPS}) boolean mask with an operation on every edge")
    g = np.where(allowed, np.nan_to_num(np.asarray(importance, dtype=np.float64), nan=0.0), 0.0)
    uniform = allowed / allowed.sum(axis=1, keepdims=True)
    total = g.sum(axis=1, keepdims=True)
    normalised = np.divide(g, total, out=uniform.copy(), where=total > 0)
    return tau * normalised + (1.0 - tau) * uniform


def data_probabilities(importance: np.ndarray, tau: float) -> np.ndarray:
    """``τ·g/Σg + (1 − τ)/N`` over the ``N`` examples (uniform when every importance is zero)."""
    g = np.asarray(importance, dtype=np.float64)
    n = len(g)
    total = g.sum()
    normalised = g / total if total > 0 else np.full(n, 1.0 / n)
    return tau * normalised + (1.0 - tau) / n


def sample_importance(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """``‖softmax(z) − onehot(y)‖₂`` per example: PA&DA's data importance, from the forward pass alone."""
    with torch.no_grad():
        p = torch.softmax(logits.detach().float(), dim=1)
        p[torch.arange(len(y), device=p.device), y] -= 1.0
        return p.norm(dim=1).cpu().numpy().astype(np.float64)


class Sampler(abc.ABC):
    """Chooses each epoch's data order and each step's path. One instance per training run.

    The loop calls ``epoch_indices(epoch)`` once per epoch (1-based), then per step ``sample(allowed)``, and after
    the backward pass ``observe(...)``; ``end_epoch(epoch)`` closes the epoch. ``wants_grad_norms`` tells the loop
    whether ``observe`` needs per-edge gradient norms (they cost a little to compute).
    """

    name: str = ""
    wants_grad_norms: bool = False

    def __init__(self, epochs: int, n_train: int, seed: int) -> None:
        if epochs < 1 or n_train < 1:
            raise NasError(f"sampler: epochs and n_train must be >= 1, got {epochs} and {n_train}")
        self.epochs, self.n_train, self.seed = epochs, n_train, seed
        self.rng = np.random.default_rng(seed)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """The training examples of ``epoch`` in order (default: a permutation)."""
        return self.rng.permutation(self.n_train)

    def sample(self, allowed: np.ndarray) -> NB201Genotype:
        """The path of the next step: one allowed operation per edge, drawn from ``path_probabilities``."""
        p = self.probabilities(allowed)
        return genotype_of([self.rng.choice(N_OPS, p=row) for row in p])

    @abc.abstractmethod
    def probabilities(self, allowed: np.ndarray) -> np.ndarray:
        """(6, 5): each edge's distribution over operations, zero outside ``allowed``."""

    def observe(self, genotype: NB201Genotype, grad_norms: np.ndarray | None, indices: np.ndarray,
                logits: torch.Tensor, y: torch.Tensor) -> None:
        """What a training step saw (default: nothing to learn)."""

    def end_epoch(self, epoch: int) -> None:
        """Close ``epoch`` (1-based): update the distributions for the next one (default: nothing)."""

    def describe(self) -> dict[str, Any]:
        """JSON-safe figures of the current distributions, for the epoch records."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state, exact: a loaded sampler draws what this one would have."""
        return {"name": self.name, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise NasError(f"sampler state is for {state.get('name')!r}, not {self.name!r}")
        self.rng.bit_generator.state = state["rng"]


class UniformSampler(Sampler):
    """SPOS: every allowed operation equally likely on each edge; each epoch a permutation of the data."""

    name = "uniform"

    def probabilities(self, allowed: np.ndarray) -> np.ndarray:
        return path_probabilities(np.zeros((N_EDGES, N_OPS)), 0.0, allowed)


class FairSampler(Sampler):
    """FairNAS strict fairness (see the module docstring): each block of steps runs every allowed operation of
    every edge once. The block in progress is part of the state, so a resumed run draws what this one would."""

    name = "fair"

    def __init__(self, epochs: int, n_train: int, seed: int) -> None:
        super().__init__(epochs, n_train, seed)
        self.block: list[list[int]] = []  # per edge, the operation of each step of the block
        self.position = 0
        self.block_mask: list[list[bool]] = []

    def sample(self, allowed: np.ndarray) -> NB201Genotype:
        mask = np.asarray(allowed, dtype=bool)
        self.probabilities(mask)  # validates the mask
        finished = not self.block or self.position >= len(self.block[0])
        if finished or mask.tolist() != self.block_mask:  # a few-shot split may narrow an edge mid-block
            self._new_block(mask)
        choice = [row[self.position] for row in self.block]
        self.position += 1
        return genotype_of(choice)

    def _new_block(self, mask: np.ndarray) -> None:
        size = int(mask.sum(axis=1).max())
        block = []
        for row in mask:
            ops = self.rng.permutation(np.flatnonzero(row))
            block.append([int(ops[i % len(ops)]) for i in range(size)])
        self.block, self.position, self.block_mask = block, 0, mask.tolist()

    def probabilities(self, allowed: np.ndarray) -> np.ndarray:
        """Each edge's long-run frequency of every operation (uniform over the allowed ones)."""
        return path_probabilities(np.zeros((N_EDGES, N_OPS)), 0.0, allowed)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "block": self.block, "position": self.position, "block_mask": self.block_mask}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.block = [[int(o) for o in row] for row in state["block"]]
        self.position = int(state["position"])
        self.block_mask = [[bool(v) for v in row] for row in state["block_mask"]]


class PADASampler(Sampler):
    """PA&DA (see the module docstring). ``path`` / ``data`` switch either half off (ablations)."""

    name = "pada"
    wants_grad_norms = True

    def __init__(self, epochs: int, n_train: int, seed: int, *, path: bool = True, data: bool = True) -> None:
        super().__init__(epochs, n_train, seed)
        self.use_path, self.use_data = path, data
        self.wants_grad_norms = path
        self.tau = 0.0
        self.path_importance = np.full((N_EDGES, N_OPS), np.nan)
        self.data_importance = np.full(n_train, np.nan)
        self.data_p = np.full(n_train, 1.0 / n_train)
        self._norm_sum = np.zeros((N_EDGES, N_OPS))
        self._norm_count = np.zeros((N_EDGES, N_OPS), dtype=np.int64)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        if not self.use_data or epoch <= 1:
            return self.rng.permutation(self.n_train)
        return self.rng.choice(self.n_train, size=self.n_train, replace=True, p=self.data_p)

    def probabilities(self, allowed: np.ndarray) -> np.ndarray:
        return path_probabilities(self.path_importance, self.tau if self.use_path else 0.0, allowed)

    def observe(self, genotype: NB201Genotype, grad_norms: np.ndarray | None, indices: np.ndarray,
                logits: torch.Tensor, y: torch.Tensor) -> None:
        if self.use_path and grad_norms is not None:
            for k, (op, _) in enumerate(genotype.edges()):
                if np.isfinite(grad_norms[k]):
                    o = NB201_PRIMITIVES.index(op)
                    self._norm_sum[k, o] += grad_norms[k]
                    self._norm_count[k, o] += 1
        if self.use_data:
            self.data_importance[np.asarray(indices)] = sample_importance(logits, y)

    def end_epoch(self, epoch: int) -> None:
        self.tau = pada_tau(epoch, self.epochs)
        seen = self._norm_count > 0
        self.path_importance[seen] = self._norm_sum[seen] / self._norm_count[seen]
        self.path_importance = _fill_nonparametric(self.path_importance)
        self._norm_sum[:], self._norm_count[:] = 0.0, 0
        known = np.isfinite(self.data_importance)
        if known.any():
            filled = np.where(known, self.data_importance, self.data_importance[known].mean())
            self.data_p = data_probabilities(filled, self.tau)

    def describe(self) -> dict[str, Any]:
        p = self.probabilities(np.ones((N_EDGES, N_OPS), dtype=bool))
        return {"tau": self.tau, "path_p": np.round(p, 4).tolist(),
                "data_p_max_over_uniform": float(self.data_p.max() * self.n_train)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "tau": self.tau, "path_importance": _json(self.path_importance),
                "data_importance": _json(self.data_importance), "data_p": self.data_p.tolist(),
                "norm_sum": self._norm_sum.tolist(), "norm_count": self._norm_count.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tau = float(state["tau"])
        self.path_importance = _array(state["path_importance"])
        self.data_importance = _array(state["data_importance"])
        self.data_p = np.asarray(state["data_p"], dtype=np.float64)
        self._norm_sum = np.asarray(state["norm_sum"], dtype=np.float64)
        self._norm_count = np.asarray(state["norm_count"], dtype=np.int64)


def make_sampler(name: str, epochs: int, n_train: int, seed: int) -> Sampler:
    """``"uniform"``, ``"fair"`` or ``"pada"``; ``NasError`` naming the choices otherwise."""
    if name == "uniform":
        return UniformSampler(epochs, n_train, seed)
    if name == "fair":
        return FairSampler(epochs, n_train, seed)
    if name == "pada":
        return PADASampler(epochs, n_train, seed)
    raise NasError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def _fill_nonparametric(importance: np.ndarray) -> np.ndarray:
    """Operations without a measured importance (no weights, or never sampled) take the mean importance of the
    edge's measured parametric operations (NaN while there is none)."""
    filled = importance.copy()
    for k in range(N_EDGES):
        measured = importance[k, _PARAMETRIC_COLUMNS]
        measured = measured[np.isfinite(measured)]
        missing = ~_PARAMETRIC_COLUMNS | ~np.isfinite(importance[k])
        filled[k, missing] = measured.mean() if len(measured) else np.nan
    return filled


def _json(values: np.ndarray) -> list[Any]:
    return np.where(np.isfinite(values), values, None).tolist()  # NaN → None (JSON null)


def _array(values: list[Any]) -> np.ndarray:
    return np.array(values, dtype=np.float64)  # None → NaN
