"""Candidate kinds: what the engine needs to know about the things it evolves.

The job loop is generic; a ``CandidateKind`` tells it how to read and write a candidate's canonical text, hash it,
mutate it and describe its evaluation to a worker. ``OptimizerKind`` handles optimizer programs; architectures plug
in their own kind (``name = "architecture"``) without touching the job.
"""

from __future__ import annotations

import abc
from typing import Any, Generic, Mapping, TypeVar

import numpy as np

C = TypeVar("C")


class CandidateKind(abc.ABC, Generic[C]):
    """The per-kind operations of the engine. Implementations are stateless apart from their configuration."""

    name: str  # the store's job/candidate kind
    worker_fn: str  # "module:function" called by workers with ``payload(...)``
    fitness_meaning: str = "higher is better"  # how reports read a fitness value
    preload: tuple[str, ...] = ("torch",)  # modules workers import before their first evaluation

    @classmethod
    def from_job_config(cls, config: Mapping[str, Any]) -> CandidateKind[Any]:
        """The kind of a stored job, from the job's config (``JobConfig.to_json()``): its ``kind_options``."""
        return cls(**dict(config.get("kind_options") or {}))

    def options(self) -> dict[str, Any]:
        """The kind's settings, stored as the job's ``kind_options`` (``from_job_config`` reads them back)."""
        return {}

    @abc.abstractmethod
    def parse(self, text: str) -> C:
        """Rebuild a candidate from its canonical text (untrusted: never evaluated)."""

    @abc.abstractmethod
    def to_text(self, candidate: C) -> str:
        """The canonical text; ``parse(to_text(c)) == c``."""

    @abc.abstractmethod
    def functional_hash(self, candidate: C) -> str:
        """Equal for candidates that behave the same."""

    @abc.abstractmethod
    def mutate(self, candidate: C, rng: np.random.Generator) -> tuple[C, str]:
        """A valid child and a one-line description of the mutation."""

    def check_tasks(self, tasks: tuple[str, ...]) -> None:
        """``ValueError`` (one line) if a task is unknown to this kind: checked before a job starts or resumes, so an
        edited stored config cannot run a budget on nonsense (default: no check)."""

    def next_step(self, run: str, candidate_id: int) -> str | None:
        """A line for the end-of-search report on what to do with the best candidate (default: none)."""
        return None

    def baseline(self) -> C | None:
        """The reference candidate whose fitness per task normalises every fitness to 1.0 (default: none, raw)."""
        return None

    def simplify(self, candidate: C) -> C:
        """An equivalent, shorter candidate for display and export (default: the candidate itself)."""
        return candidate

    cost_meaning: str | None = None  # what ``cost`` counts, e.g. "optimizer state buffers"; None: no cost objective

    def cost(self, candidate: C) -> float:
        """A cost to minimise next to fitness (``--strategy nsga2``); kinds with ``cost_meaning`` implement it."""
        raise NotImplementedError(f"{self.name} candidates have no cost objective")

    @abc.abstractmethod
    def random_candidate(self, rng: np.random.Generator) -> C:
        """A random valid candidate (the random-search baseline)."""

    @abc.abstractmethod
    def payload(self, candidate: C, *, seed: int, context: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON-safe request a worker's ``worker_fn`` evaluates; ``context`` is the job's fixed settings."""


KINDS: dict[str, type[CandidateKind[Any]]] = {}  # by ``name``; each kind module registers itself
