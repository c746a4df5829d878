"""Search strategies: a conformance suite run against every strategy (reproducibility, exact resume from a JSON
checkpoint, asynchronous out-of-order tells with failures, misuse), then what each strategy promises on its own.

Candidates are tuples of bits with a one-bit-flip mutation, so the tests are fast and independent of ``programs``;
one test runs regularized evolution on real optimizer programs through ``programs.mutate_with_info``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from search.strategies import (
    INITIAL,
    NSGA2,
    RANDOM,
    Fitness,
    Member,
    NSGA2Config,
    Proposal,
    RandomSearch,
    RandomSearchConfig,
    RegularizedEvolution,
    RegularizedEvolutionConfig,
    Strategy,
    StrategyError,
    sel_crowded_tournament,
    sel_tournament,
)

Bits = tuple[int, ...]
N_BITS = 24


def flip(candidate: Bits, rng: np.random.Generator) -> tuple[Bits, str]:
    i = int(rng.integers(len(candidate)))
    return candidate[:i] + (1 - candidate[i],) + candidate[i + 1 :], f"flip {i}"


def random_bits(rng: np.random.Generator, n: int = N_BITS) -> Bits:
    return tuple(int(b) for b in rng.integers(0, 2, n))


def to_text(candidate: Bits) -> str:
    return "".join(map(str, candidate))


def from_text(text: str) -> Bits:
    return tuple(int(c) for c in text)


def onemax(candidate: Bits) -> float:
    return float(sum(candidate))


def two_objectives(candidate: Bits) -> tuple[float, float]:
    """(ones in the first half, -ones in all): the front is every candidate with an empty second half."""
    return float(sum(candidate[: len(candidate) // 2])), -float(sum(candidate))


ZEROS: Bits = (0,) * N_BITS
CODEC: dict[str, Any] = {"to_text": to_text, "from_text": from_text}


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[int], Strategy[Bits]]
    fitness: Callable[[Bits], Fitness]


def make_re(seed: int, **options: Any) -> RegularizedEvolution[Bits]:
    config = RegularizedEvolutionConfig(**{"population_size": 10, "tournament_size": 3, "log_every": 7, **options})
    return RegularizedEvolution(config, [ZEROS, (1,) + ZEROS[1:]], flip, seed, **CODEC)


def make_rs(seed: int) -> RandomSearch[Bits]:
    return RandomSearch(random_bits, seed, RandomSearchConfig(hall_of_fame_size=5, log_every=7), **CODEC)


def make_nsga2(seed: int, weights: tuple[float, ...] = (1.0, 1.0)) -> NSGA2[Bits]:
    return NSGA2(NSGA2Config(population_size=10, weights=weights, log_every=7), [ZEROS], flip, seed, **CODEC)


KINDS = [
    Kind("regularized_evolution", make_re, onemax),
    Kind("regularized_evolution_plateau", lambda s: make_re(s, plateau_restart=6), onemax),
    Kind("regularized_evolution_islands",
         lambda s: make_re(s, population_size=12, islands=3, tournament_size=2, migration_interval=9), onemax),
    Kind("random_search", make_rs, onemax),
    Kind("nsga2", make_nsga2, two_objectives),
]


@pytest.fixture(params=KINDS, ids=lambda k: k.name)
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param


def failing(fitness: Callable[[Bits], Fitness]) -> Callable[[Proposal[Bits]], Fitness | None]:
    """Some evaluations fail: reported as None, or as a NaN fitness."""

    def evaluate(proposal: Proposal[Bits]) -> Fitness | None:
        if proposal.id % 7 == 3:
            return None
        if proposal.id % 11 == 5:
            value = fitness(proposal.candidate)
            return tuple(math.nan for _ in value) if isinstance(value, tuple) else math.nan
        return fitness(proposal.candidate)

    return evaluate


class Driver:
    """W workers: keeps ``workers`` proposals in flight (in id order) and tells a randomly chosen one each step."""

    def __init__(self, strategy: Strategy[Bits], evaluate: Callable[[Proposal[Bits]], Any], workers: int, seed: int):
        self.strategy = strategy
        self.evaluate = evaluate
        self.workers = workers
        self.rng = np.random.default_rng(seed)
        self.in_flight: list[Proposal[Bits]] = []
        self.asked: list[Proposal[Bits]] = []
        self.told: list[tuple[int, Any]] = []
        self.told_when_asked: dict[int, int] = {}  # proposal id -> number of tells before it was asked

    def step(self) -> None:
        while len(self.in_flight) < self.workers:
            proposal = self.strategy.ask()
            self.told_when_asked[proposal.id] = len(self.told)
            self.asked.append(proposal)
            self.in_flight.append(proposal)
        proposal = self.in_flight.pop(int(self.rng.integers(len(self.in_flight))))
        result = self.evaluate(proposal)
        self.told.append((proposal.id, result))
        self.strategy.tell(proposal.id, result)

    def run(self, steps: int) -> Driver:
        for _ in range(steps):
            self.step()
        return self


def proposals_of(kind: Kind, seed: int, steps: int = 60) -> list[Proposal[Bits]]:
    return Driver(kind.make(seed), failing(kind.fitness), workers=4, seed=0).run(steps).asked


# -- conformance: every strategy -------------------------------------------------------------------------------------


def test_reproducible(kind: Kind) -> None:
    first = proposals_of(kind, seed=3)
    assert first == proposals_of(kind, seed=3)
    assert [p.candidate for p in first] != [p.candidate for p in proposals_of(kind, seed=4)]


def test_resume_from_json_checkpoint_continues_exactly(kind: Kind) -> None:
    evaluate = failing(kind.fitness)
    uninterrupted = Driver(kind.make(5), evaluate, workers=4, seed=1).run(70)

    before = Driver(kind.make(5), evaluate, workers=4, seed=1).run(30)
    state = json.loads(json.dumps(before.strategy.state_dict(), allow_nan=False))
    restored = kind.make(12345)  # another seed: the generator state must come from the checkpoint
    restored.load_state_dict(state)
    assert restored.pending == before.strategy.pending and restored.pending
    after = Driver(restored, evaluate, workers=4, seed=0)
    after.rng, after.in_flight, after.asked = before.rng, list(restored.pending), list(before.asked)
    after.run(40)

    assert after.asked == uninterrupted.asked
    assert restored.state_dict() == uninterrupted.strategy.state_dict()
    assert list(restored.logbook) == list(uninterrupted.strategy.logbook)


def test_out_of_order_tells_with_failures(kind: Kind) -> None:
    driver = Driver(kind.make(0), failing(kind.fitness), workers=8, seed=2).run(80)
    strategy = driver.strategy
    for proposal in list(driver.in_flight):
        strategy.tell(proposal.id, kind.fitness(proposal.candidate))
    assert strategy.pending == ()
    assert [p.id for p in driver.asked] == list(range(len(driver.asked)))
    failed = {pid for pid, result in driver.told if result is None or np.isnan(result).any()}
    assert strategy.n_told == len(driver.asked) and strategy.n_failed == len(failed) > 0
    told_before = {p.id: {pid for pid, _ in driver.told[: driver.told_when_asked[p.id]]} for p in driver.asked}
    initial_ids = {p.id for p in driver.asked if p.mutation == INITIAL}
    for proposal in driver.asked:
        for parent in proposal.parent_ids:
            assert parent < proposal.id and parent not in failed - initial_ids
            assert parent in initial_ids or parent in told_before[proposal.id], "a parent must be an evaluated member"
    assert not {m.id for m in strategy.hall_of_fame} & failed


def test_tell_misuse_is_rejected_and_harmless(kind: Kind) -> None:
    strategy = kind.make(0)
    proposal = strategy.ask()
    with pytest.raises(StrategyError, match="never asked"):
        strategy.tell(99, 1.0)
    wrong = [1.0, (1.0, 2.0, 3.0)] if isinstance(kind.fitness(ZEROS), tuple) else [(1.0, 2.0), "1.0", True]
    for value in wrong:
        with pytest.raises(StrategyError, match="fitness must be"):
            strategy.tell(proposal.id, value)
    assert strategy.pending == (proposal,)
    strategy.tell(proposal.id, kind.fitness(proposal.candidate))
    with pytest.raises(StrategyError, match="already told"):
        strategy.tell(proposal.id, kind.fitness(proposal.candidate))


def test_load_rejects_other_strategies_and_configs(kind: Kind) -> None:
    state = Driver(kind.make(0), failing(kind.fitness), workers=2, seed=0).run(5).strategy.state_dict()
    other = make_rs(0) if kind.name != "random_search" else make_re(0)
    with pytest.raises(StrategyError, match="checkpoint is of strategy"):
        other.load_state_dict(state)
    with pytest.raises(StrategyError, match="config"):
        kind.make(0).load_state_dict({**state, "config": {**state["config"], "log_every": 1000}})


def test_checkpoints_need_a_candidate_codec() -> None:
    strategy = RegularizedEvolution(RegularizedEvolutionConfig(population_size=4), [ZEROS], flip, 0)
    with pytest.raises(StrategyError, match="to_text"):
        strategy.state_dict()
    with pytest.raises(StrategyError, match="from_text"):
        strategy.load_state_dict(make_re(0).state_dict())


def test_logbook_records_every_log_every_tells(kind: Kind) -> None:
    strategy = Driver(kind.make(1), failing(kind.fitness), workers=3, seed=0).run(30).strategy
    assert [entry["tells"] for entry in strategy.logbook] == [7, 14, 21, 28]
    last = strategy.logbook[-1]
    assert last["failed"] <= 28 and last["size"] > 0
    assert set(strategy.logbook.header) >= {"tells", "failed", "size", "median", "mean"}


# -- selection operators ---------------------------------------------------------------------------------------------


def test_sel_tournament_size_one_is_uniform_and_large_picks_the_best() -> None:
    rng = np.random.default_rng(0)
    fitnesses = [3.0, 1.0, 4.0, 1.5, 0.0]
    counts = np.bincount([sel_tournament(fitnesses, 1, rng) for _ in range(5000)], minlength=5)
    assert counts.min() > 900 and counts.max() < 1100
    assert {sel_tournament(fitnesses, 60, rng) for _ in range(50)} == {2}
    pairs = [sel_tournament(fitnesses, 2, rng) for _ in range(4000)]
    assert pairs.count(2) / len(pairs) == pytest.approx(1 - (4 / 5) ** 2, abs=0.03)
    first_drawn = int(np.random.default_rng(7).integers(2, size=5)[0])
    assert sel_tournament([1.0, 1.0], 5, np.random.default_rng(7)) == first_drawn  # ties: the first drawn wins


def test_sel_crowded_tournament_prefers_rank_then_crowding() -> None:
    rng = np.random.default_rng(0)
    picks = [sel_crowded_tournament([1, 0, 0], [9.0, 1.0, math.inf], rng) for _ in range(3000)]
    frequencies = np.bincount(picks, minlength=3) / len(picks)
    # index 0 wins only against itself; 2 beats 1 on crowding; 1 beats 0 on rank.
    assert frequencies == pytest.approx([1 / 9, 3 / 9, 5 / 9], abs=0.03)


# -- regularized evolution -------------------------------------------------------------------------------------------


def test_warm_start_then_mutants_of_it_then_tournaments() -> None:
    strategy = make_re(0)  # P = 10, two warm-start candidates
    first = [strategy.ask() for _ in range(12)]
    assert [p.candidate for p in first[:2]] == [ZEROS, (1,) + ZEROS[1:]]
    assert all(p.mutation == INITIAL and p.parent_ids == () for p in first[:2])
    # population full in proposals, but nothing evaluated yet: still mutants of the warm start
    assert all(p.parent_ids in ((0,), (1,)) and p.mutation.startswith("flip") for p in first[2:])
    for proposal in first[5:9]:
        strategy.tell(proposal.id, onemax(proposal.candidate))
    later = [strategy.ask() for _ in range(20)]
    assert {p.parent_ids[0] for p in later} <= {5, 6, 7, 8}
    assert all(sum(a != b for a, b in zip(p.candidate, strategy_member(strategy, p.parent_ids[0]))) == 1 for p in later)


def strategy_member(strategy: RegularizedEvolution[Bits], proposal_id: int) -> Bits:
    return next(m.candidate for m in strategy.population if m.id == proposal_id)


def test_aging_removes_the_oldest_member() -> None:
    strategy = make_re(0, population_size=5)
    proposals = [strategy.ask() for _ in range(12)]
    order = [7, 2, 11, 0, 5, 9, 1, 3, 10]
    for pid in order:
        strategy.tell(pid, 100.0 - pid)  # fitness does not protect anyone from aging
    assert [m.id for m in strategy.population] == order[-5:]
    assert [m.candidate for m in strategy.population] == [proposals[i].candidate for i in order[-5:]]


def test_failed_evaluations_never_join_the_population() -> None:
    strategy = make_re(0, population_size=5)
    proposals = [strategy.ask() for _ in range(6)]
    for proposal in proposals:
        strategy.tell(proposal.id, None if proposal.id % 2 else onemax(proposal.candidate))
    assert [m.id for m in strategy.population] == [0, 2, 4]
    assert strategy.n_failed == 3


def test_restart_from_best_and_from_initial() -> None:
    strategy = make_re(0, population_size=6)
    proposals = [strategy.ask() for _ in range(10)]
    for proposal in proposals[:8]:
        strategy.tell(proposal.id, onemax(proposal.candidate) + proposal.id / 100)
    best = strategy.best
    assert best is not None and best.fitness == max(onemax(p.candidate) + p.id / 100 for p in proposals[:8])

    strategy.restart("best")
    assert strategy.epoch == 1 and strategy.population == (best,)
    children = [strategy.ask() for _ in range(5)]
    assert all(c.parent_ids == (best.id,) for c in children)  # filling the new epoch from the best
    strategy.tell(proposals[8].id, 50.0)  # asked before the restart: hall of fame only
    assert strategy.best is not None and strategy.best.id == proposals[8].id
    assert [m.id for m in strategy.population] == [best.id]

    strategy.restart("initial")
    assert [m.id for m in strategy.population] == [0, 1]
    assert all(strategy.ask().parent_ids in ((0,), (1,)) for _ in range(4))
    with pytest.raises(StrategyError, match="'initial' or 'best'"):
        strategy.restart("worst")  # type: ignore[arg-type]


def test_restart_from_best_needs_a_result() -> None:
    with pytest.raises(StrategyError, match="successful evaluation"):
        make_re(0).restart("best")


def test_plateau_restarts_from_the_best() -> None:
    strategy = make_re(0, plateau_restart=5)
    for _ in range(23):
        strategy.tell(strategy.ask().id, 1.0)  # flat fitness: the first tell sets the best, then no improvement
    assert strategy.epoch == (23 - 1) // 5
    assert strategy.logbook[-1]["epoch"] == (21 - 1) // 5
    improving = make_re(0, plateau_restart=5)
    for i in range(23):
        improving.tell(improving.ask().id, float(i))
    assert improving.epoch == 0


def test_logbook_summarises_the_population() -> None:
    strategy = make_re(2)
    for _ in range(14):
        proposal = strategy.ask()
        strategy.tell(proposal.id, onemax(proposal.candidate))
    fitnesses = [m.fitness for m in strategy.population]
    entry = strategy.logbook[-1]
    assert entry["tells"] == 14 and entry["size"] == len(fitnesses) == 10
    assert (entry["best"], entry["median"], entry["mean"]) == (max(fitnesses), np.median(fitnesses), np.mean(fitnesses))
    assert entry["best_ever"] == strategy.best.fitness and entry["epoch"] == 0


def test_hall_of_fame_keeps_the_best_distinct_candidates() -> None:
    strategy = make_rs(0)  # hall_of_fame_size = 5
    told: dict[Bits, float] = {}
    for _ in range(40):
        proposal = strategy.ask()
        told.setdefault(proposal.candidate, onemax(proposal.candidate))
        strategy.tell(proposal.id, onemax(proposal.candidate))
    fame = [m.fitness for m in strategy.hall_of_fame]
    assert fame == sorted(told.values(), reverse=True)[:5]
    assert len({m.candidate for m in strategy.hall_of_fame}) == 5
    constant = RandomSearch(lambda rng: ZEROS, 0)
    for fitness in (1.0, 3.0, 2.0):
        constant.tell(constant.ask().id, fitness)
    assert [(m.id, m.fitness) for m in constant.hall_of_fame] == [(0, 1.0)]  # one copy: the first evaluation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regularized_evolution_beats_random_search_on_onemax(seed: int) -> None:
    n_bits, budget = 64, 500
    warm_start = random_bits(np.random.default_rng(100 + seed), n_bits)
    config = RegularizedEvolutionConfig(population_size=25, tournament_size=5)
    evolution = RegularizedEvolution(config, [warm_start], flip, seed)
    baseline = RandomSearch(lambda rng: random_bits(rng, n_bits), seed)
    for strategy in (evolution, baseline):
        Driver(strategy, lambda p: onemax(p.candidate), workers=4, seed=seed).run(budget)
    assert evolution.best.fitness >= baseline.best.fitness + 8, (evolution.best.fitness, baseline.best.fitness)


def test_islands_evolve_apart_until_migration() -> None:
    strategy = make_re(0, population_size=12, islands=3, tournament_size=2)  # no migration
    driver = Driver(strategy, lambda p: onemax(p.candidate), workers=3, seed=0).run(150)
    by_id = {p.id: p for p in driver.asked}

    def root_island(proposal_id: int) -> int:
        """The island of the first tournament-chosen ancestor (warm-start fillers belong to no island)."""
        proposal = by_id[proposal_id]
        parent = by_id.get(proposal.parent_ids[0]) if proposal.parent_ids else None
        return proposal_id % 3 if parent is None or not parent.parent_ids else root_island(parent.id)

    for index, island in enumerate(strategy.islands):
        assert len(island) == 4
        for member in island:
            assert member.id % 3 == index  # a child joins its own island
            parents = by_id[member.id].parent_ids
            if parents and by_id[parents[0]].parent_ids:  # bred by tournament, not a filler
                assert parents[0] % 3 == index  # and its parent came from there too


def test_migration_sends_each_islands_best_to_the_next() -> None:
    strategy = make_re(0, population_size=8, islands=2, tournament_size=2, migration_interval=8)
    proposals = [strategy.ask() for _ in range(8)]
    for proposal in proposals:
        strategy.tell(proposal.id, float(proposal.id))  # at the 8th tell the islands migrate
    island0, island1 = strategy.islands
    assert [m.id for m in island0] == [2, 4, 6, 7]  # island 1's best (7) replaced island 0's oldest (0)
    assert [m.id for m in island1] == [3, 5, 7, 6]  # and island 0's best (6) replaced island 1's oldest


def test_islands_must_divide_the_population() -> None:
    with pytest.raises(StrategyError, match="multiple of islands"):
        RegularizedEvolutionConfig(population_size=10, islands=3)
    with pytest.raises(StrategyError, match="exceeds an island"):
        RegularizedEvolutionConfig(population_size=10, islands=5, tournament_size=3)


def test_random_search_draws_independent_candidates_from_the_seed() -> None:
    strategy = make_rs(9)
    proposals = [strategy.ask() for _ in range(5)]
    rng = np.random.default_rng(9)
    assert [p.candidate for p in proposals] == [random_bits(rng) for _ in range(5)]
    assert all(p.parent_ids == () and p.mutation == RANDOM for p in proposals)


def test_bad_configs_and_injected_functions_are_rejected() -> None:
    with pytest.raises(StrategyError, match="population_size"):
        RegularizedEvolutionConfig(population_size=0)
    with pytest.raises(StrategyError, match="plateau_restart"):
        RegularizedEvolutionConfig(plateau_restart=-1)
    with pytest.raises(StrategyError, match="weights"):
        NSGA2Config(weights=(1.0,))
    with pytest.raises(StrategyError, match="at least one"):
        RegularizedEvolution(RegularizedEvolutionConfig(), [], flip, 0)
    with pytest.raises(StrategyError, match="seed"):
        make_rs("0")  # type: ignore[arg-type]
    plain = RegularizedEvolution(RegularizedEvolutionConfig(), [ZEROS], lambda c, rng: flip(c, rng)[0], 0)
    plain.ask()  # the warm start itself: no mutation yet
    with pytest.raises(StrategyError, match="mutate must return"):
        plain.ask()


# -- NSGA-II ---------------------------------------------------------------------------------------------------------


def _dominates(a: tuple[float, ...], b: tuple[float, ...], weights: tuple[float, ...]) -> bool:
    wa, wb = [x * w for x, w in zip(a, weights)], [x * w for x, w in zip(b, weights)]
    return all(x >= y for x, y in zip(wa, wb)) and wa != wb


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, -1.0)])
def test_nsga2_pareto_front_and_ranks(weights: tuple[float, float]) -> None:
    def evaluate(proposal: Proposal[Bits]) -> tuple[float, float]:
        first, minus_all = two_objectives(proposal.candidate)
        return first, minus_all * weights[1]  # the same problem, told as a cost to minimise when weights[1] = -1

    driver = Driver(make_nsga2(0, weights), evaluate, workers=4, seed=0).run(300)
    strategy = driver.strategy
    assert isinstance(strategy, NSGA2)
    told = [(p.candidate, evaluate(p)) for p in driver.asked if p.id in {pid for pid, _ in driver.told}]
    front = {(m.candidate, m.fitness) for m in strategy.pareto_front}
    nondominated = {(c, f) for c, f in told if not any(_dominates(g, f, weights) for _, g in told)}
    assert front == nondominated
    assert {f for _, f in front} == {(float(k), -float(k) * weights[1]) for k in range(N_BITS // 2 + 1)}

    members, ranks = strategy.population, strategy.ranks
    assert len(members) == 10
    for member, rank in zip(members, ranks):
        better = [m for m, r in zip(members, ranks) if _dominates(m.fitness, member.fitness, weights)]
        assert (rank == 0) == (not better)
        if rank:
            assert any(r == rank - 1 for m, r in zip(members, ranks) if _dominates(m.fitness, member.fitness, weights))


def test_nsga2_covers_the_front_better_than_random_search() -> None:
    nsga2 = Driver(make_nsga2(1), lambda p: two_objectives(p.candidate), workers=4, seed=0).run(300).strategy
    baseline = make_rs(1)
    told: list[tuple[float, float]] = []
    for _ in range(300):
        proposal = baseline.ask()
        told.append(two_objectives(proposal.candidate))
        baseline.tell(proposal.id, onemax(proposal.candidate))
    true_front = {(float(k), -float(k)) for k in range(N_BITS // 2 + 1)}
    random_front = {f for f in told if not any(_dominates(g, f, (1.0, 1.0)) for g in told)}
    nsga2_front = {m.fitness for m in nsga2.pareto_front}
    assert nsga2_front <= true_front and len(nsga2_front) >= N_BITS // 2 > len(random_front & true_front)


# -- real optimizer programs -----------------------------------------------------------------------------------------


def test_regularized_evolution_on_programs_is_reproducible_and_resumable() -> None:
    from programs import Program, library, mutate_with_info, parse

    def mutate(program: Program, rng: np.random.Generator) -> tuple[Program, str]:
        child, mutation = mutate_with_info(program, rng)
        return child, mutation.detail

    def make(seed: int) -> RegularizedEvolution[Program]:
        config = RegularizedEvolutionConfig(population_size=8, tournament_size=2, log_every=10)
        return RegularizedEvolution(config, [library.get("adamw")], mutate, seed, to_text=Program.to_text,
                                    from_text=parse)

    def shortness(proposal: Proposal[Program]) -> float:
        return -float(len(proposal.candidate))

    uninterrupted = Driver(make(0), shortness, workers=3, seed=0).run(60)  # type: ignore[arg-type]
    assert uninterrupted.asked == Driver(make(0), shortness, workers=3, seed=0).run(60).asked  # type: ignore[arg-type]
    assert uninterrupted.asked[0].candidate == library.get("adamw")
    assert all(isinstance(p.candidate, Program) for p in uninterrupted.asked)
    best = uninterrupted.strategy.best
    assert isinstance(best, Member) and best.fitness > -len(library.get("adamw"))

    before = Driver(make(0), shortness, workers=3, seed=0).run(25)  # type: ignore[arg-type]
    restored = make(1)
    restored.load_state_dict(json.loads(json.dumps(before.strategy.state_dict())))
    after = Driver(restored, shortness, workers=3, seed=0)  # type: ignore[arg-type]
    after.rng, after.in_flight, after.asked = before.rng, list(restored.pending), list(before.asked)
    assert after.run(35).asked == uninterrupted.asked


def test_evolution_passes_over_a_parent_without_children() -> None:
    # a member whose mutation has no acceptable child (programs: no child scales with lr) must not end the search
    barren = (1,) * N_BITS

    def flip_unless_barren(candidate: Bits, rng: np.random.Generator) -> tuple[Bits, str]:
        if candidate == barren:
            rng.random()  # a failed mutation still draws (the stream goes on from wherever it stopped)
            raise ValueError("no child of this parent is accepted")
        return flip(candidate, rng)

    # population 2: the warm start is the two initial candidates themselves, then every proposal is a tournament's
    config = RegularizedEvolutionConfig(population_size=2, tournament_size=2)
    strategy = RegularizedEvolution(config, [barren, ZEROS], flip_unless_barren, 0, **CODEC)
    first, second = strategy.ask(), strategy.ask()
    strategy.tell(first.id, 100.0)
    strategy.tell(second.id, 0.0)
    proposals = [strategy.ask() for _ in range(10)]  # asked before any tell: the barren member stays a contestant
    assert all(p.parent_ids == (second.id,) for p in proposals)  # it wins 3 tournaments in 4 (T = 2), yet never parents
    for proposal in proposals:
        strategy.tell(proposal.id, onemax(proposal.candidate))

    only_barren = RegularizedEvolution(RegularizedEvolutionConfig(population_size=1, tournament_size=1), [barren],
                                       flip_unless_barren, 0, **CODEC)
    only_barren.tell(only_barren.ask().id, 1.0)
    with pytest.raises(ValueError, match="no child"):
        only_barren.ask()


def test_nsga2_and_the_warm_start_phase_pass_over_a_parent_without_children() -> None:
    barren = (1,) * N_BITS

    def flip_unless_barren(candidate: Bits, rng: np.random.Generator) -> tuple[Bits, str]:
        if candidate == barren:
            raise ValueError("no child of this parent is accepted")
        return flip(candidate, rng)

    # the filling phase mutates warm-start candidates drawn at random: the barren one is drawn again and again
    evolution = RegularizedEvolution(RegularizedEvolutionConfig(population_size=12, tournament_size=2),
                                     [barren, ZEROS], flip_unless_barren, 0, **CODEC)
    initial = [evolution.ask() for _ in range(2)]
    filling = [evolution.ask() for _ in range(10)]
    assert all(p.parent_ids == (initial[1].id,) for p in filling)
    nsga2 = NSGA2(NSGA2Config(population_size=2, weights=(1.0, -1.0)), [barren, ZEROS], flip_unless_barren, 0,
                  **CODEC)
    first, second = nsga2.ask(), nsga2.ask()
    nsga2.tell(first.id, (100.0, 0.0))  # the barren member dominates: it wins most crowded tournaments
    nsga2.tell(second.id, (0.0, 1.0))
    proposals = [nsga2.ask() for _ in range(10)]
    assert all(p.parent_ids == (second.id,) for p in proposals)
