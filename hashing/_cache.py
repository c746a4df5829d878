"""The functional equivalence cache (FEC; Real et al. 2020, Gillard et al. 2023): hash -> fitness, noise-aware.

A job asks ``lookup(hash)`` before evaluating a candidate and acts on the ``CacheDecision``:

- ``HIT``: use ``decision.fitness`` (the running mean of the evaluations so far) and skip the evaluation;
- ``MISS``: evaluate, then ``record(hash, fitness, metrics)``;
- ``REEVALUATE`` (aggregating policy, fewer than ``samples`` evaluations in): evaluate again and ``record``; the
  entry keeps the running mean. ``decision.fitness`` carries the current estimate.

Policies (``CachePolicy``) compose: *plain* (the defaults), *aggregating* (``samples`` = M > 1), *forgetful* (on a hit,
evict with probability ``forget_probability`` = F, drawn from the cache's explicit numpy Generator) and *evict after
N hits* (``max_hits`` = N, AutoML-Zero's 100), all in an LRU bounded by ``max_size`` entries.

Not thread-safe: the cache belongs to the driver (the job), which alone looks up and records.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, Mapping

import numpy as np

from hashing._errors import HashingError

FORMAT_VERSION = 1
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


class CacheAction(str, Enum):
    HIT = "hit"
    MISS = "miss"
    REEVALUATE = "reevaluate"


@dataclass(frozen=True)
class CacheDecision:
    """What ``lookup`` decided; ``fitness``, ``metrics`` and ``count`` describe the cached estimate (None, empty and 0
    on a miss)."""

    action: CacheAction
    fitness: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    count: int = 0

    @property
    def needs_evaluation(self) -> bool:
        """True for MISS and REEVALUATE: evaluate the candidate and ``record`` the result."""
        return self.action is not CacheAction.HIT


@dataclass(frozen=True)
class CacheEntry:
    """The running means of ``count`` evaluations of one functional hash, and the hits it has served."""

    fitness: float
    metrics: Mapping[str, float]
    count: int = 1
    hits: int = 0

    def with_sample(self, fitness: float, metrics: Mapping[str, float]) -> CacheEntry:
        """This entry with one more evaluation folded into its running means (metric keys: union of both)."""
        count = self.count + 1
        merged = dict(self.metrics)
        for key, value in metrics.items():
            merged[key] = _running_mean(merged[key], value, count) if key in merged else float(value)
        return replace(self, fitness=_running_mean(self.fitness, fitness, count), metrics=merged, count=count)


@dataclass(frozen=True)
class CachePolicy:
    """Size bound and noise policy of an ``FECache``; the defaults are the plain cache (AutoML-Zero's LRU size)."""

    max_size: int = 100_000
    samples: int = 1
    forget_probability: float = 0.0
    max_hits: int | None = None

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.samples < 1:
            raise HashingError(f"CachePolicy: max_size and samples must be >= 1, got {self.max_size}, {self.samples}")
        if not 0.0 <= self.forget_probability <= 1.0:
            raise HashingError(f"CachePolicy.forget_probability must be in [0, 1], got {self.forget_probability}")
        if self.max_hits is not None and self.max_hits < 1:
            raise HashingError(f"CachePolicy.max_hits must be >= 1 or None, got {self.max_hits}")

    @classmethod
    def plain(cls, max_size: int = 100_000) -> CachePolicy:
        """Cache the first evaluation forever (lossless when evaluation is deterministic)."""
        return cls(max_size=max_size)

    @classmethod
    def aggregating(cls, samples: int, max_size: int = 100_000) -> CachePolicy:
        """Re-evaluate until ``samples`` evaluations are in; serve their running mean."""
        return cls(max_size=max_size, samples=samples)

    @classmethod
    def forgetful(cls, probability: float = 0.1, max_size: int = 100_000) -> CachePolicy:
        """On each hit, evict the entry with ``probability`` (F = 0.1 recovers most quality under noise)."""
        return cls(max_size=max_size, forget_probability=probability)

    @classmethod
    def evict_after(cls, hits: int = 100, max_size: int = 100_000) -> CachePolicy:
        """Evict an entry once it has served ``hits`` hits, so that the candidate is evaluated afresh."""
        return cls(max_size=max_size, max_hits=hits)


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was made (restored with it by ``from_dict``)."""

    lookups: int = 0
    hits: int = 0
    misses: int = 0
    reevaluations: int = 0
    records: int = 0
    evicted_lru: int = 0
    forgotten: int = 0
    expired: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


class FECache:
    """Functional hash -> ``CacheEntry``, least recently used evicted first. See the module docstring for the protocol.

    ``rng`` is required when the policy forgets (F > 0); it is the only source of randomness.
    """

    def __init__(self, policy: CachePolicy | None = None, rng: np.random.Generator | None = None) -> None:
        self.policy = CachePolicy() if policy is None else policy
        if self.policy.forget_probability > 0.0 and rng is None:
            raise HashingError("a forgetful FECache needs rng=np.random.default_rng(seed)")
        self.rng = rng
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._counts = dict.fromkeys(CacheStats.__dataclass_fields__, 0)
        self._clock = 0  # recency ticks, so that an incrementally persisted cache restores its LRU order
        self._ticks: dict[str, int] = {}
        self._changed: set[str] = set()  # keys touched or removed since the last drain_changes()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key`` without touching statistics, recency or policy."""
        return self._entries.get(key)

    @property
    def stats(self) -> CacheStats:
        return CacheStats(**self._counts)

    def lookup(self, key: str) -> CacheDecision:
        """Decide whether the candidate with functional hash ``key`` must be evaluated (see the module docstring)."""
        self._counts["lookups"] += 1
        entry = self._entries.get(key)
        if entry is None:
            return self._miss()
        if entry.count < self.policy.samples:
            self._counts["reevaluations"] += 1
            self._touch(key)
            return _decision(CacheAction.REEVALUATE, entry)
        if self.policy.forget_probability > 0.0 and self.rng.random() < self.policy.forget_probability:
            self._evict(key, "forgotten")
            return self._miss()
        return self._hit(key, replace(entry, hits=entry.hits + 1))

    def record(self, key: str, fitness: float, metrics: Mapping[str, float] | None = None) -> CacheEntry:
        """Fold one evaluation into the entry for ``key`` (creating it) and return the entry."""
        metrics = {} if metrics is None else {k: float(v) for k, v in metrics.items()}
        entry = self._entries.get(key)
        entry = CacheEntry(float(fitness), metrics) if entry is None else entry.with_sample(fitness, metrics)
        self._entries[key] = entry
        self._touch(key)
        self._counts["records"] += 1
        while len(self._entries) > self.policy.max_size:
            self._evict(next(iter(self._entries)), "evicted_lru")
        return entry

    def _miss(self) -> CacheDecision:
        self._counts["misses"] += 1
        return CacheDecision(CacheAction.MISS)

    def _hit(self, key: str, entry: CacheEntry) -> CacheDecision:
        self._counts["hits"] += 1
        if self.policy.max_hits is not None and entry.hits >= self.policy.max_hits:
            self._evict(key, "expired")
        else:
            self._entries[key] = entry
            self._touch(key)
        return _decision(CacheAction.HIT, entry)

    def _touch(self, key: str) -> None:
        self._entries.move_to_end(key)
        self._clock += 1
        self._ticks[key] = self._clock
        self._changed.add(key)

    def _evict(self, key: str, reason: str) -> None:
        del self._entries[key]
        self._ticks.pop(key, None)
        self._changed.add(key)
        self._counts[reason] += 1

    def drain_changes(self) -> dict[str, dict[str, Any] | None]:
        """What changed since the last call: ``{hash: {"entry": ..., "tick": n}}`` for entries written or moved in the
        LRU order, ``{hash: None}`` for entries evicted. A store persists these (upsert/delete) instead of snapshotting
        every entry, and rebuilds the cache with ``from_dict(to_dict(entries=False), entries=...)``."""
        changes = {key: (None if key not in self._entries else
                         {"entry": _entry_to_dict(self._entries[key]), "tick": self._ticks[key]})
                   for key in sorted(self._changed)}
        self._changed.clear()
        return changes

    def to_dict(self, *, entries: bool = True) -> dict[str, Any]:
        """A JSON-safe snapshot (``json.dumps(..., allow_nan=False)`` works): policy, entries in LRU order (unless
        ``entries=False``: kept elsewhere through ``drain_changes``), counters, recency clock and the RNG state."""
        return {
            "format": FORMAT_VERSION,
            "policy": asdict(self.policy),
            "entries": [[key, _entry_to_dict(entry), self._ticks[key]] for key, entry in self._entries.items()]
            if entries else [],
            "stats": dict(self._counts),
            "clock": self._clock,
            "rng": None if self.rng is None else _jsonable(self.rng.bit_generator.state),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], rng: np.random.Generator | None = None,
                  entries: Mapping[str, Mapping[str, Any]] | None = None) -> FECache:
        """Rebuild a cache from ``to_dict`` output; ``rng`` (if given) replaces the saved RNG state. ``entries``:
        persisted ``drain_changes`` payloads (``{hash: {"entry", "tick"}}``) to use instead of the snapshot's."""
        if data.get("format") != FORMAT_VERSION:
            raise HashingError(f"FECache data has format {data.get('format')!r}; this version reads {FORMAT_VERSION}")
        if rng is None and data.get("rng") is not None:
            rng = _generator_from_state(data["rng"])
        cache = cls(CachePolicy(**data["policy"]), rng)
        rows = list(data["entries"])  # [hash, entry, tick] in LRU order (older snapshots: [hash, entry])
        if entries is not None:
            rows = sorted(([key, item["entry"], item["tick"]] for key, item in entries.items()), key=lambda r: r[2])
        for index, (key, entry, *tick) in enumerate(rows):
            cache._entries[str(key)] = _entry_from_dict(entry)
            cache._ticks[str(key)] = int(tick[0]) if tick else index + 1
        cache._clock = int(data.get("clock", len(rows)))
        for name, value in data["stats"].items():
            if name in cache._counts:
                cache._counts[name] = int(value)
        return cache


def _decision(action: CacheAction, entry: CacheEntry) -> CacheDecision:
    return CacheDecision(action, entry.fitness, dict(entry.metrics), entry.count)


def _running_mean(mean: float, sample: float, count: int) -> float:
    sample = float(sample)
    if math.isinf(mean) or math.isinf(sample):  # keep -inf for failures instead of inf - inf = nan
        return mean + sample
    return mean + (sample - mean) / count


def _entry_to_dict(entry: CacheEntry) -> dict[str, Any]:
    return {
        "fitness": _encode_float(entry.fitness),
        "metrics": {k: _encode_float(v) for k, v in entry.metrics.items()},
        "count": entry.count,
        "hits": entry.hits,
    }


def _entry_from_dict(data: Mapping[str, Any]) -> CacheEntry:
    metrics = {str(k): _decode_float(v) for k, v in data["metrics"].items()}
    return CacheEntry(_decode_float(data["fitness"]), metrics, int(data["count"]), int(data["hits"]))


def _encode_float(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)  # 'nan', 'inf', '-inf'


def _decode_float(value: float | str) -> float:
    if isinstance(value, str) and value not in ("nan", "inf", "-inf"):
        raise HashingError(f"FECache data: bad number {value!r}")
    return float(value)


def _jsonable(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _jsonable(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return {"ndarray": state.tolist(), "dtype": str(state.dtype)}
    if isinstance(state, np.integer):
        return int(state)
    return state


def _from_jsonable(state: Any) -> Any:
    if isinstance(state, dict) and set(state) == {"ndarray", "dtype"}:
        return np.array(state["ndarray"], dtype=np.dtype(state["dtype"]))
    if isinstance(state, dict):
        return {k: _from_jsonable(v) for k, v in state.items()}
    return state


def _generator_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise HashingError(f"FECache data: unknown bit generator {name!r}; known: {', '.join(_BIT_GENERATORS)}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = _from_jsonable(dict(state))
    return np.random.Generator(bit_generator)
