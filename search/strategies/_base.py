"""The ``Strategy`` base class: the ask/tell contract, failure handling, hall of fame, logbook and checkpoints."""

from __future__ import annotations

import abc
import copy
import json
import math
from dataclasses import asdict
from typing import Any, Callable, Generic, Iterator, Mapping, Sequence

import numpy as np
from deap import tools

from search.strategies import _deap
from search.strategies._codec import StateReader, StateWriter
from search.strategies._records import C, Fitness, Member, Proposal, StrategyError


_CODEC_HINT = "pass to_text= and from_text= to the strategy's constructor"


class Strategy(abc.ABC, Generic[C]):
    """Proposes candidates (``ask``) and takes their results (``tell``): asynchronous steady state.

    Contract:
      * ``ask()`` may be called any number of times before the matching ``tell``s (W busy workers); each call returns
        a new ``Proposal`` with the next id. It never blocks and never evaluates anything.
      * ``tell(proposal_id, fitness)`` exactly once per asked id, in any order. ``fitness`` is higher-is-better;
        ``None`` or a non-finite value records a failed evaluation: the candidate never becomes a member (a parent).
      * Candidates are opaque: the strategy only calls the injected functions on them and compares them with ``==``.
      * Every random choice comes from one ``numpy.random.Generator`` seeded by ``seed`` and is passed to the injected
        functions, so the same seed and the same sequence of calls give the same proposals.
      * ``state_dict()`` is JSON-safe (candidates as texts by the injected ``to_text``); ``load_state_dict`` into a
        strategy built with the same arguments continues exactly as the saved one would have.
      * It owns no storage, threads or processes and is not thread-safe: one driver calls it.

    Subclasses implement ``_propose`` and may override the hooks ``_on_result``, ``_statistics_members``,
    ``_log_fields``, ``_extra_state`` and ``_load_extra_state``.
    """

    config: Any
    weights: tuple[float, ...] = (1.0,)

    def __init__(
        self,
        seed: int,
        *,
        hall_of_fame_size: int | None,
        log_every: int,
        to_text: Callable[[C], str] | None,
        from_text: Callable[[str], C] | None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise StrategyError(f"seed must be an int, got {seed!r}")
        self._rng = np.random.default_rng(int(seed))
        self._to_text = to_text
        self._from_text = from_text
        self._log_every = log_every
        self._next_id = 0
        self._pending: dict[int, Proposal[C]] = {}
        self._tells = 0
        self._failed = 0
        self._window: list[Member[C]] = []
        self._hof = _deap.hall_of_fame(hall_of_fame_size)
        self._stats = _deap.statistics(len(self.weights))
        self._text_memo: dict[int, str] = {}
        self._entry_memo: dict[int, str] = {}  # members' "id:fitness" entries of the last checkpoint (StateWriter)
        self._config_cache: dict[str, Any] | None = None
        self.logbook = tools.Logbook()
        """One record every ``log_every`` tells: tells, failed, size and best/median/mean fitness (DEAP Logbook)."""

    # -- the contract ---------------------------------------------------------------------------------------------

    def ask(self) -> Proposal[C]:
        """The next candidate to evaluate."""
        proposal_id = self._next_id
        candidate, parent_ids, mutation = self._propose(proposal_id)
        proposal = Proposal(proposal_id, candidate, tuple(parent_ids), mutation)
        self._next_id += 1
        self._pending[proposal_id] = proposal
        return proposal

    def tell(self, proposal_id: int, fitness: Fitness | Sequence[float] | None) -> None:
        """Record the result of proposal ``proposal_id``; ``None`` (or NaN/inf) means the evaluation failed."""
        proposal = self._pending.get(proposal_id)
        if proposal is None:
            known = isinstance(proposal_id, (int, np.integer)) and 0 <= proposal_id < self._next_id
            raise StrategyError(f"proposal {proposal_id} {'was already told' if known else 'was never asked'}")
        value = self._check_fitness(fitness)
        del self._pending[proposal_id]
        self._tells += 1
        member = None if value is None else Member(proposal.id, proposal.candidate, value)
        if member is None:
            self._failed += 1
        else:
            self._hof.update([_deap.Individual(member, self.weights)])
            self._window.append(member)
        self._on_result(proposal, member)
        if self._tells % self._log_every == 0:
            self._log()

    @property
    def pending(self) -> tuple[Proposal[C], ...]:
        """Proposals asked and not yet told, in id order (after a resume: the evaluations to dispatch again)."""
        return tuple(self._pending[i] for i in sorted(self._pending))

    def proposal(self, proposal_id: int) -> Proposal[C]:
        """The pending proposal ``proposal_id`` (asked, not yet told)."""
        try:
            return self._pending[proposal_id]
        except KeyError:
            raise StrategyError(f"proposal {proposal_id} is not pending") from None

    @property
    def n_told(self) -> int:
        return self._tells

    @property
    def n_failed(self) -> int:
        return self._failed

    @property
    def hall_of_fame(self) -> tuple[Member[C], ...]:
        """The best distinct members ever told, best first (NSGA-II: the Pareto front, lexicographically sorted)."""
        return tuple(individual.member for individual in self._hof)

    @property
    def best(self) -> Member[C] | None:
        """The first member of the hall of fame, or ``None`` before any successful tell."""
        return self._hof[0].member if len(self._hof) else None

    # -- checkpoints ----------------------------------------------------------------------------------------------

    def state_dict(self, *, texts: bool = True, logbook: bool = True) -> dict[str, Any]:
        """Everything needed to continue exactly: JSON-safe (``json.dumps(..., allow_nan=False)`` works).

        With ``texts=False`` candidates appear by proposal id only (no ``candidates`` table), and with
        ``logbook=False`` the logbook by its length only (``logbook_len``): for a caller that keeps the texts and the
        logbook's records elsewhere, append-only, and hands them back to ``load_state_dict``. That keeps a
        checkpoint small and its cost flat as the run grows. Texts are rendered once per proposal (memoised).
        """
        if texts and self._to_text is None:
            raise StrategyError(f"{type(self).__name__}.state_dict needs to_text: {_CODEC_HINT}")
        writer = StateWriter(self._to_text if texts else None, self._text_memo, self._entry_memo)
        state = {
            "strategy": type(self).__name__,
            "config": self._config_json(),
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "next_id": self._next_id,
            "tells": self._tells,
            "failed": self._failed,
            "pending": [writer.proposal(p) for p in self.pending],
            "hall_of_fame": [writer.member(m) for m in self.hall_of_fame],
            "window": writer.members(self._window),
            "extra": self._extra_state(writer),
        }
        if logbook:
            state["logbook"] = copy.deepcopy([dict(entry) for entry in self.logbook])
        else:
            state["logbook_len"] = len(self.logbook)
        if texts:
            state["candidates"] = writer.texts
            self._text_memo = writer.used  # only what is still referenced stays memoised
        self._entry_memo = writer.used_entries()
        return state

    def load_state_dict(self, state: dict[str, Any], *, texts: Mapping[int, str] | None = None,
                        logbook: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Continue from ``state``; this strategy must have been built with the same arguments (seed aside).

        ``texts`` (proposal id -> text) and ``logbook`` (its records, oldest first) are required for a state saved
        with ``texts=False`` / ``logbook=False`` and ignored otherwise.
        """
        self._check_state(state)
        if "candidates" in state:
            table: Mapping[str, str] = state["candidates"]
        elif texts is not None:
            table = _TextsById(texts)
        else:
            raise StrategyError("checkpoint keeps no candidate texts: pass texts= (proposal id -> text)")
        if "logbook" in state:
            entries = state["logbook"]
        elif logbook is not None and len(logbook) >= int(state["logbook_len"]):
            entries = list(logbook)[: int(state["logbook_len"])]
        else:
            raise StrategyError(f"checkpoint keeps no logbook: pass logbook= with its {state.get('logbook_len')} "
                                "records")
        reader = StateReader(table, self._from_text)
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._next_id = int(state["next_id"])
        self._tells = int(state["tells"])
        self._failed = int(state["failed"])
        self._pending = {p.id: p for p in (reader.proposal(d) for d in state["pending"])}
        _deap.refill(self._hof, [reader.member(d) for d in state["hall_of_fame"]], self.weights)
        self._window = reader.members(state["window"])
        self.logbook = tools.Logbook()
        for entry in entries:
            self.logbook.record(**copy.deepcopy(dict(entry)))
            self.logbook.header = list(entry)
        self._load_extra_state(state["extra"], reader)
        self._text_memo = {}
        self._entry_memo = {}

    def _check_state(self, state: dict[str, Any]) -> None:
        if self._from_text is None:
            raise StrategyError(f"{type(self).__name__}.load_state_dict needs from_text: {_CODEC_HINT}")
        if state.get("strategy") != type(self).__name__:
            raise StrategyError(f"checkpoint is of strategy {state.get('strategy')!r}, not {type(self).__name__!r}")
        own = self._config_json()
        if state.get("config") != own:
            raise StrategyError(f"checkpoint config {state.get('config')} differs from this strategy's {own}")

    def _config_json(self) -> dict[str, Any]:
        if self._config_cache is None:  # the config is frozen: its JSON form is computed once
            self._config_cache = _jsonable(asdict(self.config))
        return copy.deepcopy(self._config_cache)

    # -- hooks ----------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _propose(self, proposal_id: int) -> tuple[C, tuple[int, ...], str]:
        """``(candidate, parent_ids, mutation)`` for the proposal that will get ``proposal_id``."""

    def _on_result(self, proposal: Proposal[C], member: Member[C] | None) -> None:
        """Called by ``tell`` after the hall of fame is updated; ``member`` is ``None`` for a failed evaluation."""

    def _statistics_members(self) -> Sequence[Member[C]]:
        """The members the logbook summarises: by default those told since the previous record."""
        return self._window

    def _log_fields(self) -> dict[str, Any]:
        """Extra JSON-safe fields of a logbook record."""
        return {}

    def _extra_state(self, writer: StateWriter[C]) -> dict[str, Any]:
        """The subclass's part of ``state_dict`` (JSON-safe)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any], reader: StateReader[C]) -> None:
        """Restore what ``_extra_state`` wrote."""

    # -- internals ------------------------------------------------------------------------------------------------

    def _check_fitness(self, fitness: Any) -> Fitness | None:
        if fitness is None:
            return None
        n = len(self.weights)
        if n == 1:
            if not _is_real(fitness):
                raise StrategyError(f"fitness must be a real number or None, got {fitness!r}")
            value = float(fitness)
            return value if math.isfinite(value) else None
        sequence = isinstance(fitness, (tuple, list, np.ndarray))
        if not sequence or len(fitness) != n or not all(_is_real(v) for v in fitness):
            raise StrategyError(f"fitness must be a tuple of {n} real numbers or None, got {fitness!r}")
        values = tuple(float(v) for v in fitness)
        return values if all(math.isfinite(v) for v in values) else None

    def _log(self) -> None:
        members = self._statistics_members()
        entry: dict[str, Any] = {"tells": self._tells, "failed": self._failed, "size": len(members)}
        if members:
            entry.update(self._stats.compile(members))
        entry.update(self._log_fields())
        self.logbook.record(**entry)
        self.logbook.header = list(entry)
        self._window = []


class _TextsById(Mapping[str, str]):
    """``{str(proposal id): text}`` over a caller's ``{proposal id: text}``, as ``StateReader`` reads it."""

    def __init__(self, texts: Mapping[int, str]) -> None:
        self._texts = texts

    def __getitem__(self, key: str) -> str:
        return self._texts[int(key)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lstrip("-").isdigit() and int(key) in self._texts

    def __iter__(self) -> Iterator[str]:
        return (str(k) for k in self._texts)

    def __len__(self) -> int:
        return len(self._texts)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))
