"""The checkpoint codec's population column: members written as one ``id:fitness`` text (each entry rendered once
and memoised across checkpoints), read back exactly; multi-objective members and earlier checkpoints' columns too."""

from __future__ import annotations

import json
import math
import random

import pytest

from search.strategies._codec import StateReader, StateWriter
from search.strategies._records import Member, StrategyError


class _Texts(dict):  # type: ignore[type-arg]
    """Every proposal id has the text "c<id>" (what a search job hands the reader from its candidates table)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"c{key}"


def _members(ids: list[int], rng: random.Random) -> list[Member[str]]:
    return [Member(i, f"c{i}", rng.uniform(-1e6, 1e6) * rng.random() ** 20) for i in ids]


def test_members_round_trip_exactly_through_json() -> None:
    rng = random.Random(0)
    members = _members(list(range(50)), rng) + [Member(50, "c50", 0.1), Member(51, "c51", -0.0),
                                                Member(52, "c52", 1e-300), Member(53, "c53", 12345678901234.5)]
    written = StateWriter(None).members(members)
    assert set(written) == {"members"}
    back = StateReader(_Texts(), lambda text: text).members(json.loads(json.dumps(written)))
    assert [(m.id, m.candidate) for m in back] == [(m.id, m.candidate) for m in members]
    assert all(a.fitness == b.fitness and math.copysign(1, a.fitness) == math.copysign(1, b.fitness)
               for a, b in zip(back, members))
    assert StateReader(_Texts(), str).members(StateWriter(None).members([])) == []


def test_entries_are_memoised_across_checkpoints_and_the_memo_stays_bounded() -> None:
    rng = random.Random(1)
    population = _members(list(range(100)), rng)
    memo: dict[int, str] = {}
    for step in range(200):
        population = population[4:] + _members(list(range(100 + 4 * step, 104 + 4 * step)), rng)
        writer = StateWriter(None, None, memo)
        text = writer.members(population)["members"]
        assert text == ",".join(f"{m.id}:{m.fitness!r}" for m in population)
        memo = writer.used_entries()
        assert len(memo) <= 2 * len(population) + 1024
    assert set(memo) >= {m.id for m in population}
    stale = {**memo, **{-i: "stale" for i in range(1, 5000)}}  # members long gone
    writer = StateWriter(None, None, stale)
    writer.members(population)
    assert writer.used_entries() == {m.id: f"{m.id}:{m.fitness!r}" for m in population}


def test_multi_objective_members_and_earlier_columns_are_read() -> None:
    members = [Member(0, "c0", (1.0, 2.0)), Member(1, "c1", (0.5, -1.0))]
    written = StateWriter(None).members(members)
    assert written == {"ids": [0, 1], "fitness": [[1.0, 2.0], [0.5, -1.0]]}
    assert StateReader(_Texts(), str).members(written) == members
    earlier = {"ids": [3, 4], "fitness": [0.25, -2.0]}  # the columns checkpoints had before the text column
    assert StateReader(_Texts(), str).members(earlier) == [Member(3, "c3", 0.25), Member(4, "c4", -2.0)]


def test_damaged_entries_are_refused() -> None:
    with pytest.raises(StrategyError, match="id:fitness"):
        StateReader(_Texts(), str).members({"members": "1:0.5,2"})
    with pytest.raises(ValueError):
        StateReader(_Texts(), str).members({"members": "1:zero"})
