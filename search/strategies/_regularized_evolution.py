"""Regularized evolution (Real et al. 2019) with warm start and restarts, as used for Lion (Chen et al. 2023)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from search.strategies._base import Strategy
from search.strategies._codec import StateReader, StateWriter
from search.strategies._records import C, Member, Mutate, Proposal, StrategyError, check_positive, mutate_a_parent
from search.strategies._selection import sel_tournament
from search.strategies._warm_start import WarmStart


@dataclass(frozen=True)
class RegularizedEvolutionConfig:
    """``population_size`` P and ``tournament_size`` T default to Lion's (P = 1000, T = 2; AutoML-Zero: T = 10).

    ``plateau_restart`` K: after K tells without a new best, restart from the best (Lion restarted from the best when
    fitness plateaued); ``None`` turns it off. ``hall_of_fame_size`` distinct best members are kept; the logbook gets a
    record every ``log_every`` tells.

    ``islands`` I > 1 splits the population into I islands of P / I members that evolve apart (AutoML-Zero and
    FunSearch did so to keep long runs from collapsing onto one family): proposal ``id`` belongs to island ``id % I``,
    its parent is chosen by tournament in that island and its child joins it. Every ``migration_interval`` tells each
    island's best member joins the next island (a ring), replacing that island's oldest; ``None`` never migrates.
    """

    population_size: int = 1000
    tournament_size: int = 2
    plateau_restart: int | None = None
    hall_of_fame_size: int = 10
    log_every: int = 100
    islands: int = 1
    migration_interval: int | None = None

    def __post_init__(self) -> None:
        for name in ("population_size", "tournament_size", "hall_of_fame_size", "log_every", "islands"):
            check_positive(name, getattr(self, name))
        for name in ("plateau_restart", "migration_interval"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        if self.population_size % self.islands:
            raise StrategyError(f"population_size ({self.population_size}) must be a multiple of islands "
                                f"({self.islands})")
        if self.tournament_size > self.population_size // self.islands:
            raise StrategyError(f"tournament_size ({self.tournament_size}) exceeds an island's "
                                f"{self.population_size // self.islands} members")


class _Fitnesses(Sequence[float]):
    """The population's fitnesses, read only where the tournament looks (T of P, not all P per proposal)."""

    def __init__(self, population: Sequence[Member[Any]]) -> None:
        self._population = population

    def __len__(self) -> int:
        return len(self._population)

    def __getitem__(self, index: Any) -> Any:
        return float(self._population[index].fitness)  # type: ignore[arg-type]


class RegularizedEvolution(Strategy[C]):
    """Tournament selection among the current population, one mutation per child, and aging: each evaluated child
    joins the population and the oldest member (first in) leaves once there are P (with islands: per island, see
    ``RegularizedEvolutionConfig``).

    The first P proposals fill the population: the ``initial`` candidates themselves, then mutants of them (see
    ``WarmStart``). Failed evaluations never join. ``restart("best")`` starts a new epoch whose population is the best
    member so far, filled with its mutants; ``restart("initial")`` goes back to the evaluated warm-start members, filled
    with their mutants. A parent whose mutation raises ``ValueError`` (no child it accepts) is passed over for another
    tournament's winner (``mutate_a_parent``). Results of proposals asked before a restart go to the hall of fame, not
    to the new population.
    """

    def __init__(
        self,
        config: RegularizedEvolutionConfig,
        initial: Sequence[C],
        mutate: Mutate[C],
        seed: int,
        *,
        to_text: Callable[[C], str] | None = None,
        from_text: Callable[[str], C] | None = None,
    ) -> None:
        self.config = config
        super().__init__(
            seed,
            hall_of_fame_size=config.hall_of_fame_size,
            log_every=config.log_every,
            to_text=to_text,
            from_text=from_text,
        )
        self._mutate = mutate
        self._warm = WarmStart(initial, config.population_size)
        island_size = config.population_size // config.islands
        self._islands: list[deque[Member[C]]] = [deque(maxlen=island_size) for _ in range(config.islands)]
        self._initial_members: dict[int, Member[C]] = {}
        self._epoch = 0
        self._asked_in: dict[int, int] = {}  # pending proposal id -> epoch it was asked in
        self._best_fitness: float | None = None
        self._since_improvement = 0

    @property
    def population(self) -> tuple[Member[C], ...]:
        """The current population, oldest first (island after island)."""
        return tuple(member for island in self._islands for member in island)

    @property
    def islands(self) -> tuple[tuple[Member[C], ...], ...]:
        """Each island's members, oldest first (one island unless configured otherwise)."""
        return tuple(tuple(island) for island in self._islands)

    @property
    def epoch(self) -> int:
        """The number of restarts so far (0 before any)."""
        return self._epoch

    def restart(self, from_: Literal["initial", "best"] = "best") -> None:
        """Begin a new epoch from the best member so far or from the (evaluated) warm-start members."""
        if from_ == "best":
            if self.best is None:
                raise StrategyError("restart from the best needs at least one successful evaluation")
            members: list[Member[C]] = [self.best]
            self._warm.restart_from(members, carried=len(self._islands))
        elif from_ == "initial":
            members = [self._initial_members[i] for i in self._warm.initial_ids if i in self._initial_members]
            self._warm.restart_from(None, carried=len(members) * len(self._islands))
        else:
            raise StrategyError(f"restart from {from_!r}: use 'initial' or 'best'")
        self._epoch += 1
        self._since_improvement = 0
        for island in self._islands:  # every island starts again from the same seeds
            island.clear()
            island.extend(members)

    def _propose(self, proposal_id: int) -> tuple[C, tuple[int, ...], str]:
        self._asked_in[proposal_id] = self._epoch
        island = self._islands[proposal_id % len(self._islands)]
        if self._warm.active(len(island)):
            return self._warm.propose(proposal_id, self._rng, self._mutate)
        def choose() -> tuple[int, C]:
            parent = island[sel_tournament(_Fitnesses(island), self.config.tournament_size, self._rng)]
            return parent.id, parent.candidate

        return mutate_a_parent(choose, self._mutate, self._rng)

    def _on_result(self, proposal: Proposal[C], member: Member[C] | None) -> None:
        asked_in = self._asked_in.pop(proposal.id)
        if member is not None:
            if proposal.id in self._warm.initial_ids:
                self._initial_members[proposal.id] = member
            if asked_in == self._epoch:
                self._islands[proposal.id % len(self._islands)].append(member)  # maxlen drops the oldest
        interval = self.config.migration_interval
        if len(self._islands) > 1 and interval is not None and self.n_told % interval == 0:
            self._migrate()
        self._count_plateau(member)

    def _migrate(self) -> None:
        """Each island's best member joins the next island (a ring); the receiving island's oldest leaves."""
        bests = [max(island, key=lambda m: float(m.fitness)) if island else None  # type: ignore[arg-type]
                 for island in self._islands]
        for index, best in enumerate(bests):
            receiver = self._islands[(index + 1) % len(self._islands)]
            if best is not None and best not in receiver:
                receiver.append(best)

    def _count_plateau(self, member: Member[C] | None) -> None:
        fitness = None if member is None else float(member.fitness)  # type: ignore[arg-type]
        if fitness is not None and (self._best_fitness is None or fitness > self._best_fitness):
            self._best_fitness = fitness
            self._since_improvement = 0
            return
        self._since_improvement += 1
        limit = self.config.plateau_restart
        if limit is not None and self._since_improvement >= limit and self.best is not None:
            self.restart("best")

    def _statistics_members(self) -> Sequence[Member[C]]:
        return self.population

    def _log_fields(self) -> dict[str, Any]:
        best = self.best
        return {"best_ever": None if best is None else best.fitness, "epoch": self._epoch}

    def _extra_state(self, writer: StateWriter[C]) -> dict[str, Any]:
        return {
            "warm_start": self._warm.state(writer.member),
            "population": writer.members(self._islands[0]) if len(self._islands) == 1 else
            [writer.members(island) for island in self._islands],
            "initial_members": [writer.member(m) for m in self._initial_members.values()],
            "epoch": self._epoch,
            "asked_in": [[pid, epoch] for pid, epoch in sorted(self._asked_in.items())],
            "best_fitness": self._best_fitness,
            "since_improvement": self._since_improvement,
        }

    def _load_extra_state(self, state: dict[str, Any], reader: StateReader[C]) -> None:
        self._warm.load(state["warm_start"], reader.member)
        saved = state["population"]
        islands = [saved] if len(self._islands) == 1 else saved
        if len(islands) != len(self._islands):
            raise StrategyError(f"checkpoint has {len(islands)} islands, this strategy {len(self._islands)}")
        for island, members in zip(self._islands, islands):
            island.clear()
            island.extend(reader.members(members))
        self._initial_members = {m.id: m for m in (reader.member(d) for d in state["initial_members"])}
        self._epoch = int(state["epoch"])
        self._asked_in = {int(pid): int(epoch) for pid, epoch in state["asked_in"]}
        best = state["best_fitness"]
        self._best_fitness = None if best is None else float(best)
        self._since_improvement = int(state["since_improvement"])
