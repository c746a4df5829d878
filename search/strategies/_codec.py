"""JSON-safe encoding of members and proposals for checkpoints.

Candidates are stored once each, by proposal id, in a ``candidates`` table of texts made by the injected ``to_text``;
members and proposals refer to them by id. Reading rebuilds each candidate once with ``from_text``. A writer without
``to_text`` writes ids only: the caller keeps the texts elsewhere (a search job has them in its candidates table) and
hands them to the reader.

Such a writer writes a population (thousands of members, in every checkpoint) as one text column,
``{"members": "id:fitness,id:fitness,..."}``: each member's entry is rendered once (``repr`` of its fitness, which
round-trips exactly, as JSON's own float encoding does) and kept in a memo across checkpoints, so a checkpoint costs a
join of the population's entries, not the encoding of thousands of floats (the population changes by a few members
per result). Multi-objective fitness is written as two columns ``{"ids": [...], "fitness": [[...], ...]}``; the
reader takes either, and the ``{"ids", "fitness"}`` columns of earlier checkpoints.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterable, Iterator, Mapping

from search.strategies._records import C, Fitness, Member, Proposal, StrategyError


class StateWriter(Generic[C]):
    """Encodes members and proposals; ``texts`` collects the candidate table as it goes."""

    def __init__(self, to_text: Callable[[C], str] | None, memo: dict[int, str] | None = None,
                 entries: dict[int, str] | None = None) -> None:
        self.to_text = to_text
        self.texts: dict[str, str] = {}
        self.memo = {} if memo is None else memo  # proposal id -> text rendered by an earlier checkpoint
        self.used: dict[int, str] = {}
        self.entries = {} if entries is None else entries  # proposal id -> "id:fitness" of an earlier checkpoint
        self.entry_ids: list[list[int]] = []  # the ids written as entries by this writer

    def used_entries(self) -> dict[int, str]:
        """The entry memo to keep for the next checkpoint: as it is, unless it holds many entries no longer
        written (members that left the population), which it then drops."""
        written = sum(map(len, self.entry_ids))
        if len(self.entries) <= 2 * written + 1024:
            return self.entries
        return {i: self.entries[i] for ids in self.entry_ids for i in ids}

    def candidate(self, proposal_id: int, candidate: C) -> int:
        if self.to_text is None:
            return proposal_id
        key = str(proposal_id)
        if key not in self.texts:
            text = self.memo.get(proposal_id)
            if text is None:
                text = self.to_text(candidate)  # candidates are immutable: a proposal's text never changes
                if not isinstance(text, str):
                    raise StrategyError(f"to_text must return str, got {type(text).__name__}")
            self.texts[key] = self.used[proposal_id] = text
        return proposal_id

    def member(self, member: Member[C]) -> dict[str, Any]:
        fitness = list(member.fitness) if isinstance(member.fitness, tuple) else member.fitness
        return {"id": self.candidate(member.id, member.candidate), "fitness": fitness}

    def members(self, members: Iterable[Member[C]]) -> list[dict[str, Any]] | dict[str, Any]:
        """``[member(m) for m in members]``; without texts, as columns (see the module's docstring): a population
        of thousands goes into every checkpoint."""
        if self.to_text is not None:
            return [self.member(m) for m in members]
        listed = list(members)
        ids = [m.id for m in listed]
        entries = list(map(self.entries.get, ids))
        for index in _nones(entries):  # members new since the last checkpoint: rendered once each
            fitness = listed[index].fitness
            if isinstance(fitness, tuple):  # multi-objective: each as a list
                return {"ids": ids, "fitness": [list(m.fitness) if isinstance(m.fitness, tuple) else m.fitness
                                                for m in listed]}
            entries[index] = self.entries[ids[index]] = f"{ids[index]}:{float(fitness)!r}"
        self.entry_ids.append(ids)
        return {"members": ",".join(entries)}

    def proposal(self, proposal: Proposal[C]) -> dict[str, Any]:
        return {
            "id": self.candidate(proposal.id, proposal.candidate),
            "parent_ids": list(proposal.parent_ids),
            "mutation": proposal.mutation,
        }


class StateReader(Generic[C]):
    """Decodes what ``StateWriter`` wrote; each candidate is parsed once and shared."""

    def __init__(self, texts: Mapping[str, str], from_text: Callable[[str], C]) -> None:
        self.texts = texts
        self.from_text = from_text
        self.cache: dict[int, C] = {}

    def candidate(self, proposal_id: int) -> C:
        if proposal_id not in self.cache:
            key = str(proposal_id)
            if key not in self.texts:
                raise StrategyError(f"checkpoint has no candidate text for proposal {proposal_id}")
            self.cache[proposal_id] = self.from_text(self.texts[key])
        return self.cache[proposal_id]

    def member(self, data: dict[str, Any]) -> Member[C]:
        return Member(int(data["id"]), self.candidate(int(data["id"])), _fitness(data["fitness"]))

    def members(self, data: list[dict[str, Any]] | dict[str, Any]) -> list[Member[C]]:
        """What ``StateWriter.members`` wrote (any form)."""
        if isinstance(data, dict) and "members" in data:
            entries = [entry.partition(":") for entry in data["members"].split(",")] if data["members"] else []
            if any(not sep for _, sep, _ in entries):
                raise StrategyError("checkpoint member entries are not id:fitness")
            return [Member(int(i), self.candidate(int(i)), float(f)) for i, _, f in entries]
        if isinstance(data, dict):
            if len(data["ids"]) != len(data["fitness"]):
                raise StrategyError("checkpoint member columns differ in length")
            return [Member(int(i), self.candidate(int(i)), _fitness(f)) for i, f in zip(data["ids"], data["fitness"])]
        return [self.member(d) for d in data]

    def proposal(self, data: dict[str, Any]) -> Proposal[C]:
        pid = int(data["id"])
        parents = tuple(int(p) for p in data["parent_ids"])
        return Proposal(pid, self.candidate(pid), parents, str(data["mutation"]))


def _nones(values: list[Any]) -> Iterator[int]:
    """The indexes of the ``None`` items of ``values``, found by ``list.index`` (a C scan: a population of
    thousands has a few new members per checkpoint)."""
    index = -1
    while True:
        try:
            index = values.index(None, index + 1)
        except ValueError:
            return
        yield index


def _fitness(value: float | list[float]) -> Fitness:
    return tuple(float(v) for v in value) if isinstance(value, list) else float(value)
