"""``functional_hash``: run a candidate on canonical probes, quantize the outputs, digest them with xxhash."""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np
import xxhash

from hashing._config import HashConfig
from hashing._quantize import quantize
from hashing._registry import canonical_form, probe_runner_for

DEFAULT_CONFIG = HashConfig()
MEMO_SIZE = 32768  # recent (candidate or canonical form, config) -> digest: parents are hashed once per mutation
_memo: OrderedDict[tuple[Any, HashConfig], str] = OrderedDict()  # oldest first: evicting is O(1)


def functional_hash(candidate: Any, config: HashConfig | None = None) -> str:
    """The functional hash of ``candidate``: a 32-hex-digit xxh3-128 digest of its quantized probe outputs.

    Candidates that behave the same on the probes hash equal however they are written; the hash is deterministic
    across processes and machines. Dispatches on ``type(candidate)`` to the runner registered with
    ``register_probe_runner``; raises ``HashingError`` when there is none. The probe runs on the candidate's canonical
    form (``register_probe_runner(..., canonical=)``; programs: the live statements). Candidates are immutable, so
    recent digests are memoised by equality, of the candidate and of its canonical form: a candidate that differs from
    a recent one only where behaviour cannot see (dead code) is not probed again.
    """
    config = DEFAULT_CONFIG if config is None else config
    try:
        key: tuple[Any, HashConfig] | None = (candidate, config)
        found = _memo.get(key)  # type: ignore[arg-type]
    except TypeError:  # an unhashable candidate: computed every time
        key, found = None, None
    if found is not None:
        _memo.move_to_end(key)  # type: ignore[arg-type]  # least recently used goes first: parents stay
        return found
    canonical = canonical_form(candidate)
    canonical_key = (canonical, config) if key is not None and canonical is not candidate else None
    if canonical_key is not None:
        found = _memo.get(canonical_key)
    if found is None:
        found = fingerprint(probe_runner_for(canonical)(canonical, config), config)
    for memo_key in (key, canonical_key):
        if memo_key is not None:
            _memo[memo_key] = found
            _memo.move_to_end(memo_key)
            if len(_memo) > MEMO_SIZE:
                _memo.popitem(last=False)  # the oldest entry
    return found


def fingerprint(outputs: np.ndarray, config: HashConfig | None = None) -> str:
    """The digest of probe ``outputs`` quantized under ``config`` (mixed in together with the outputs' shape)."""
    config = DEFAULT_CONFIG if config is None else config
    values = np.asarray(outputs, dtype=np.float64)
    canonical = quantize(values, config.mantissa_bits, config.flush_below, config.flush_relative)
    digest = xxhash.xxh3_128(_config_key(config))
    digest.update(repr(values.shape).encode())
    digest.update(canonical.astype("<f8", copy=False).tobytes())
    return digest.hexdigest()


@lru_cache(maxsize=64)
def _config_key(config: HashConfig) -> bytes:
    return config.key()
