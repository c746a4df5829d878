"""Architectures as engine candidates: ``ArchitectureKind`` plugs genotypes into the generic search job.

A candidate is a ``nas.Genotype`` (space ``"darts"``: normal and reduction cells) or a ``nas.NB201Genotype`` (space
``"nb201"``); its canonical text is the space's published text form, its fingerprint ``hashing.functional_hash`` (the
canonical cell run on probes: equal for the same architecture however written), its mutations ``nas.mutation``'s.
Workers run ``search.kinds.workers:evaluate_architecture``: the fitness is the validation accuracy after a short
training from scratch (``ScratchBudget``), or, with ``fitness="supernet:RUN"``, the accuracy with weights inherited
from the one-shot supernet trained in run folder RUN (NAS-Bench-201 space only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from search.kinds._base import KINDS, CandidateKind

SPACES = ("darts", "nb201")
TASKS = ("mnist1d", "digits")  # nas.datasets loaders: MNIST-1D sequences (1D cells), scikit-learn digits (2D)
SCRATCH = "scratch"
SUPERNET_PREFIX = "supernet:"


SUPERNET_METRICS = ("loss", "accuracy")  # nas.oneshot.METRICS (not imported here: it loads torch)


class ArchitectureKindError(ValueError):
    """An architecture search configured outside what the kind supports (space, fitness, budget)."""


@dataclass(frozen=True)
class ScratchBudget:
    """The short training from scratch that scores a genotype (a proxy of its trained accuracy).

    ``train_examples`` / ``valid_examples``: disjoint parts of one fixed random permutation of the task's training
    set (the same for every candidate, so fitnesses compare; the test set is never used; a smaller training set
    shrinks both in proportion). ``channels`` C and ``layers`` shape the network: DARTS cells (``None``: 3, the
    two reduction cells and one normal cell) or NAS-Bench-201 cells per stage (``None``: 1). ``epochs`` of SGD,
    batches of ``batch_size``, learning rate ``lr`` cosine-annealed (``None``: the training loop's default).
    DARTS genotypes train with ``nas.train.train_genotype``, NAS-Bench-201 cells with
    ``nas.groundtruth.train_from_scratch`` (the loop of the shipped ground-truth tables).
    """

    epochs: int = 3
    train_examples: int = 2000
    valid_examples: int = 1000
    batch_size: int = 64
    channels: int = 8
    layers: int | None = None
    lr: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "train_examples", "valid_examples", "batch_size", "channels", "layers"):
            value = getattr(self, name)
            if value is None and name == "layers":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchitectureKindError(f"ScratchBudget.{name} must be a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise ArchitectureKindError(f"ScratchBudget.batch_size must be at least 2 (BatchNorm), got "
                                        f"{self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise ArchitectureKindError(f"ScratchBudget.lr must be positive, got {self.lr!r}")


@dataclass(frozen=True)
class ArchitectureKind(CandidateKind[Any]):
    """Genotypes of ``space`` ("darts" or "nb201"), scored by ``fitness`` ("scratch" or "supernet:RUN").

    ``fcm``: re-mutate until the child's functional hash differs from the parent's (as for programs).
    """

    space: str = "nb201"
    fitness: str = SCRATCH
    budget: ScratchBudget = field(default_factory=ScratchBudget)
    fcm: bool = True
    # with fitness "supernet:RUN": what the inherited weights are scored by, "loss" (the fitness is minus the
    # validation cross-entropy: it ranks the shipped table better than accuracy, README "Ranking quality") or
    # "accuracy" (searches recorded before this option)
    supernet_metric: str = "loss"

    name = "architecture"
    worker_fn = "search.kinds.workers:evaluate_architecture"
    preload = ("torch", "nas", "search.kinds.workers")

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ArchitectureKindError(f"unknown search space {self.space!r}; choose from {', '.join(SPACES)}")
        if isinstance(self.budget, Mapping):
            object.__setattr__(self, "budget", ScratchBudget(**self.budget))
        if self.fitness != SCRATCH:
            if not self.fitness.startswith(SUPERNET_PREFIX) or not self.supernet_run:
                raise ArchitectureKindError(f"fitness must be 'scratch' or 'supernet:RUN', got {self.fitness!r}")
            if self.space != "nb201":
                raise ArchitectureKindError("fitness by a one-shot supernet needs --space nb201 (the supernet's space)")
        if self.supernet_metric not in SUPERNET_METRICS:
            raise ArchitectureKindError(f"the supernet metric must be one of {', '.join(SUPERNET_METRICS)}, got "
                                        f"{self.supernet_metric!r:.40}")

    @property
    def fitness_meaning(self) -> str:  # type: ignore[override]
        if self.supernet_run is not None and self.supernet_metric == "loss":
            return "minus the inherited-weight validation loss"
        return "validation accuracy"

    @property
    def supernet_run(self) -> str | None:
        """The run folder of the one-shot supernet, or ``None`` for training from scratch."""
        return self.fitness[len(SUPERNET_PREFIX):] if self.fitness.startswith(SUPERNET_PREFIX) else None

    @classmethod
    def from_job_config(cls, config: Mapping[str, Any]) -> ArchitectureKind:
        options = config.get("kind_options")
        if not isinstance(options, Mapping) or "space" not in options:
            raise ArchitectureKindError("this architecture job was not made by 'autodisco search architecture'")
        options = dict(options)
        options.setdefault("supernet_metric", "accuracy")  # a job stored before the option scored by accuracy
        return cls(**options, fcm=bool(config.get("fcm", True)))

    def check_tasks(self, tasks: tuple[str, ...]) -> None:
        for task in tasks:
            if task not in TASKS:
                raise ArchitectureKindError(f"unknown architecture task {task!r}; choose from {', '.join(TASKS)}")

    def next_step(self, run: str, candidate_id: int) -> str | None:
        return f"how it was found: autodisco runs lineage {run} {candidate_id}"

    def options(self) -> dict[str, Any]:
        """The settings stored as the job's ``kind_options`` (``from_job_config`` reads them back; fcm aside)."""
        return {"space": self.space, "fitness": self.fitness, "budget": asdict(self.budget),
                "supernet_metric": self.supernet_metric}

    def parse(self, text: str) -> Any:
        from nas import Genotype, NB201Genotype

        return NB201Genotype.from_text(text) if self.space == "nb201" else Genotype.from_text(text)

    def to_text(self, candidate: Any) -> str:
        return candidate.to_text()

    def functional_hash(self, candidate: Any) -> str:
        import nas  # noqa: F401  (registers the genotype probes with hashing)
        from hashing import functional_hash

        return functional_hash(candidate)

    def mutate(self, candidate: Any, rng: np.random.Generator) -> tuple[Any, str]:
        from nas.mutation import mutate

        return mutate(candidate, rng, fcm=self.fcm)

    def random_candidate(self, rng: np.random.Generator) -> Any:
        from nas.mutation import random_genotype, random_nb201

        return random_nb201(rng) if self.space == "nb201" else random_genotype(rng)

    def payload(self, candidate: Any, *, seed: int, context: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "space": self.space,
            "genotype": candidate.to_text(),
            "tasks": list(context["tasks"]),
            "seed": int(seed),
            "fitness": self.fitness,
            "supernet_metric": self.supernet_metric,
            "budget": asdict(self.budget),
        }


KINDS[ArchitectureKind.name] = ArchitectureKind
