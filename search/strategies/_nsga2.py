"""Steady-state NSGA-II (Deb et al. 2002) over DEAP's ``selNSGA2``: multi-objective search, e.g. (fitness, -cost)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from deap import tools
from deap.tools.emo import assignCrowdingDist

from search.strategies._base import Strategy
from search.strategies._codec import StateReader, StateWriter
from search.strategies._deap import Individual
from search.strategies._records import C, Member, Mutate, Proposal, StrategyError, check_positive, mutate_a_parent
from search.strategies._selection import sel_crowded_tournament
from search.strategies._warm_start import WarmStart


@dataclass(frozen=True)
class NSGA2Config:
    """``population_size`` N (Deb et al. 2002 used 100). ``weights`` has one entry per objective, DEAP's convention:
    +1 maximise, -1 minimise (magnitudes only scale values inside DEAP). The logbook records every ``log_every`` tells.
    """

    population_size: int = 100
    weights: tuple[float, ...] = (1.0, 1.0)
    log_every: int = 100

    def __post_init__(self) -> None:
        check_positive("population_size", self.population_size)
        check_positive("log_every", self.log_every)
        weights = tuple(self.weights)
        if len(weights) < 2 or not all(isinstance(w, (int, float)) and math.isfinite(w) and w != 0 for w in weights):
            raise StrategyError(f"weights must be two or more finite non-zero numbers, got {self.weights!r}")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))


class NSGA2(Strategy[C]):
    """(N + 1) steady-state NSGA-II: a parent is picked by a binary crowded-comparison tournament, mutated, and each
    evaluated child joins the population, which ``selNSGA2`` cuts back to N (by non-domination rank, then crowding
    distance). The filling phase and failures work as in regularized evolution. ``tell`` takes one value per objective.
    The hall of fame is DEAP's ``ParetoFront``: every non-dominated member ever told.
    """

    def __init__(
        self,
        config: NSGA2Config,
        initial: Sequence[C],
        mutate: Mutate[C],
        seed: int,
        *,
        to_text: Callable[[C], str] | None = None,
        from_text: Callable[[str], C] | None = None,
    ) -> None:
        self.config = config
        self.weights = config.weights
        super().__init__(seed, hall_of_fame_size=None, log_every=config.log_every, to_text=to_text, from_text=from_text)
        self._mutate = mutate
        self._warm = WarmStart(initial, config.population_size)
        self._population: list[Individual[C]] = []
        self._ranks: list[int] = []
        self._crowding: list[float] = []

    @property
    def population(self) -> tuple[Member[C], ...]:
        """The current population in ``selNSGA2``'s order (first front first)."""
        return tuple(individual.member for individual in self._population)

    @property
    def ranks(self) -> tuple[int, ...]:
        """Non-domination rank of each population member (0: first front)."""
        return tuple(self._ranks)

    @property
    def pareto_front(self) -> tuple[Member[C], ...]:
        """Every non-dominated member ever told (same as ``hall_of_fame``)."""
        return self.hall_of_fame

    def _propose(self, proposal_id: int) -> tuple[C, tuple[int, ...], str]:
        if self._warm.active(len(self._population)):
            return self._warm.propose(proposal_id, self._rng, self._mutate)
        def choose() -> tuple[int, C]:
            parent = self._population[sel_crowded_tournament(self._ranks, self._crowding, self._rng)].member
            return parent.id, parent.candidate

        return mutate_a_parent(choose, self._mutate, self._rng)

    def _on_result(self, proposal: Proposal[C], member: Member[C] | None) -> None:
        if member is None:
            return
        pool = [*self._population, Individual(member, self.weights)]
        if len(pool) > self.config.population_size:
            pool = tools.selNSGA2(pool, self.config.population_size)
        self._set_population(pool)

    def _set_population(self, pool: list[Individual[C]]) -> None:
        """Keep ``pool`` in its order and compute each member's rank and crowding distance."""
        rank_of: dict[int, int] = {}
        for rank, front in enumerate(tools.sortNondominated(pool, len(pool))):
            assignCrowdingDist(front)
            rank_of.update((id(individual), rank) for individual in front)
        self._population = pool
        self._ranks = [rank_of[id(individual)] for individual in pool]
        self._crowding = [individual.fitness.crowding_dist for individual in pool]

    def _statistics_members(self) -> Sequence[Member[C]]:
        return self.population

    def _log_fields(self) -> dict[str, Any]:
        return {"front": len(self._hof)}

    def _extra_state(self, writer: StateWriter[C]) -> dict[str, Any]:
        return {
            "warm_start": self._warm.state(writer.member),
            "population": writer.members(individual.member for individual in self._population),
        }

    def _load_extra_state(self, state: dict[str, Any], reader: StateReader[C]) -> None:
        self._warm.load(state["warm_start"], reader.member)
        self._set_population([Individual(m, self.weights) for m in reader.members(state["population"])])
