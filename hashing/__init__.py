"""Unified functional hashing (Gillard et al. 2023) and the functional equivalence cache (FEC).

``functional_hash(candidate)`` runs a candidate on canonical probes (fixed seeds, RNG reset), rounds each output's
mantissa to a few bits and digests the result with xxhash: equal behaviour gives an equal hash however the candidate
is written. Each candidate kind registers its probe runner (``register_probe_runner``); ``programs`` does so for
optimizer programs. ``FECache`` maps hashes to fitness with the plain, aggregating, forgetful and evict-after-N
policies of Real et al. 2020; Gillard et al. 2023.
"""

from __future__ import annotations

from hashing._cache import CacheAction, CacheDecision, CacheEntry, CachePolicy, CacheStats, FECache
from hashing._config import DEFAULT_MANTISSA_BITS, HashConfig
from hashing._errors import HashingError
from hashing._fingerprint import fingerprint, functional_hash
from hashing._quantize import quantize
from hashing._registry import ProbeRunner, probe_runner_for, register_probe_runner, registered_types

__all__ = [
    "DEFAULT_MANTISSA_BITS",
    "CacheAction",
    "CacheDecision",
    "CacheEntry",
    "CachePolicy",
    "CacheStats",
    "FECache",
    "HashConfig",
    "HashingError",
    "ProbeRunner",
    "fingerprint",
    "functional_hash",
    "probe_runner_for",
    "quantize",
    "register_probe_runner",
    "registered_types",
]
