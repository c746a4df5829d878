"""The filling phase of population-based strategies (regularized evolution, NSGA-II).

An epoch starts with the warm-start candidates proposed as they are, then mutants of seeds drawn uniformly at random,
until ``size`` proposals of the epoch have been issued: the population is "full" when the proposals that fill it are
out, not when their results are in, so W busy workers do not cause W extra filling proposals. While no member is
evaluated yet (all pending or failed) the strategy keeps drawing mutants of seeds. A restart begins a new epoch with
other seeds.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Sequence

import numpy as np

from search.strategies._records import INITIAL, C, Member, Mutate, StrategyError, mutate_a_parent


class WarmStart(Generic[C]):
    """Proposals of the filling phase; seeds are the warm-start candidates or, after ``restart_from``, given members."""

    def __init__(self, initial: Sequence[C], size: int) -> None:
        self.initial = tuple(initial)
        if not self.initial:
            raise StrategyError("initial must hold at least one warm-start candidate")
        self.size = size
        self.initial_ids: list[int] = []  # proposal ids of initial[0], initial[1], ... once proposed
        self.seed_members: list[Member[C]] | None = None  # None: the seeds are the warm-start candidates
        self.issued = 0  # proposals (and carried-over members) of this epoch

    def active(self, population_size: int) -> bool:
        """Whether the next proposal belongs to the filling phase."""
        unproposed = len(self.initial_ids) < len(self.initial)
        return unproposed or self.issued < self.size or population_size == 0

    def propose(self, proposal_id: int, rng: np.random.Generator, mutate: Mutate[C]) -> tuple[C, tuple[int, ...], str]:
        if len(self.initial_ids) < len(self.initial):
            self.initial_ids.append(proposal_id)
            self.issued += 1
            return self.initial[len(self.initial_ids) - 1], (), INITIAL
        seeds = self._seeds()
        child, parents, description = mutate_a_parent(lambda: seeds[int(rng.integers(len(seeds)))], mutate, rng)
        self.issued += 1
        return child, parents, description

    def restart_from(self, seeds: Sequence[Member[C]] | None, carried: int) -> None:
        """New epoch seeded by ``seeds`` (``None``: the warm-start candidates); ``carried`` members are already in."""
        self.seed_members = None if seeds is None else list(seeds)
        self.issued = carried

    def _seeds(self) -> list[tuple[int, C]]:
        if self.seed_members is None:
            return list(zip(self.initial_ids, self.initial))
        return [(m.id, m.candidate) for m in self.seed_members]

    def state(self, encode_member: Callable[[Member[C]], dict[str, Any]]) -> dict[str, Any]:
        seeds = None if self.seed_members is None else [encode_member(m) for m in self.seed_members]
        return {"initial_ids": list(self.initial_ids), "seed_members": seeds, "issued": self.issued}

    def load(self, state: dict[str, Any], decode_member: Callable[[dict[str, Any]], Member[C]]) -> None:
        if len(state["initial_ids"]) > len(self.initial):
            raise StrategyError("checkpoint proposed more warm-start candidates than this strategy has")
        self.initial_ids = [int(i) for i in state["initial_ids"]]
        seeds = state["seed_members"]
        self.seed_members = None if seeds is None else [decode_member(d) for d in seeds]
        self.issued = int(state["issued"])
