"""The records a strategy hands out and keeps: proposals, evaluated members, and its error type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, TypeVar, Union

import numpy as np

C = TypeVar("C")
"""The candidate type: opaque to strategies, immutable, compared with ``==`` (a ``Program``, a ``Genotype``, ...)."""

Fitness = Union[float, tuple[float, ...]]
"""Higher is better: a float for single-objective strategies, a tuple (one value per objective) for NSGA-II."""

Mutate = Callable[[C, np.random.Generator], tuple[C, str]]
"""``mutate(candidate, rng) -> (child, description)``; all its randomness must come from ``rng``."""

RandomCandidate = Callable[[np.random.Generator], C]
"""``random_candidate(rng) -> candidate``; all its randomness must come from ``rng``."""

INITIAL = "initial"
"""The ``mutation`` of a proposal that is a warm-start candidate itself."""

RANDOM = "random"
"""The ``mutation`` of a proposal drawn by ``random_candidate``."""


class StrategyError(ValueError):
    """A strategy used wrongly: a bad configuration, an unknown or already-told proposal, a fitness of the wrong
    shape, or a checkpoint that does not belong to this strategy."""


@dataclass(frozen=True)
class Proposal(Generic[C]):
    """A candidate to evaluate. ``id`` is unique within a strategy (0, 1, 2, ... in ask order); ``parent_ids`` are
    the ids of the proposals it was derived from (empty for warm-start and random candidates); ``mutation`` says how."""

    id: int
    candidate: C
    parent_ids: tuple[int, ...] = ()
    mutation: str = ""


@dataclass(frozen=True)
class Member(Generic[C]):
    """An evaluated candidate: its proposal id, the candidate and the fitness it was told."""

    id: int
    candidate: C
    fitness: Fitness


def check_positive(name: str, value: object) -> None:
    """Configuration check: ``value`` must be an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StrategyError(f"{name} must be a positive int, got {value!r}")


PARENT_TRIES = 10  # parents drawn per proposal while the chosen parent's mutation fails (ValueError)


def mutate_a_parent(choose: Callable[[], tuple[int, C]], mutate: Mutate[C],
                    rng: np.random.Generator) -> tuple[C, tuple[int, ...], str]:
    """A child of the parent ``choose()`` draws (``(parent id, candidate)``), mutated by ``mutate``. A parent whose
    mutation raises ``ValueError`` (no child it accepts: e.g. an optimizer program none of whose children's updates
    scale with lr) is passed over for another draw, up to ``PARENT_TRIES`` parents per proposal; the last error is
    raised after that. Every strategy draws its parents through this, so none dies on one barren parent."""
    failure: ValueError | None = None
    for _ in range(PARENT_TRIES):
        parent_id, parent = choose()
        try:
            child, description = apply_mutate(mutate, parent, rng)
        except StrategyError:
            raise
        except ValueError as error:  # this parent has no child the mutation accepts: draw another parent
            failure = error
            continue
        return child, (parent_id,), description
    assert failure is not None
    raise failure


def apply_mutate(mutate: Mutate[C], candidate: C, rng: np.random.Generator) -> tuple[C, str]:
    """``mutate(candidate, rng)``, checked to return ``(child, description)`` as the contract says."""
    result = mutate(candidate, rng)
    if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[1], str):
        raise StrategyError(f"mutate must return (child, description: str), got {result!r:.200}")
    return result
