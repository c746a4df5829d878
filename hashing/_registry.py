"""Probe runners: how each kind of candidate is run on the canonical probes.

``hashing`` knows no candidate kind itself (it sits at the bottom of the layering): each kind registers a runner for
its type, e.g. ``programs`` registers one for ``Program`` when imported, ``nas`` one for ``Genotype``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from hashing._config import HashConfig
from hashing._errors import HashingError


class ProbeRunner(Protocol):
    """Runs a candidate on the canonical probes of ``config`` and returns its outputs.

    Contract: a pure function of (candidate, config) — the same numbers in any process, on any machine, in any call
    order (build every random input from ``config.seeds``; reset all RNGs; no dependence on global state). It returns
    a float64 numpy array of behaviour (outputs, not internal state); its shape must depend only on the config. The
    last axis groups values that share a scale (``HashConfig.flush_relative`` acts along it). Non-finite outputs are
    allowed and are canonicalized by the hash. Failures of the candidate itself should show up as outputs (NaN),
    not as exceptions.
    """

    def __call__(self, candidate: Any, config: HashConfig) -> np.ndarray: ...


_RUNNERS: dict[type, ProbeRunner] = {}
_CANONICAL: dict[type, Callable[[Any], Any]] = {}


def register_probe_runner(cls: type, runner: ProbeRunner, *, canonical: Callable[[Any], Any] | None = None) -> None:
    """Use ``runner`` for candidates of type ``cls`` and its subclasses (registering again replaces it).

    ``canonical`` (optional) maps a candidate to one of equal behaviour that is cheaper to probe, by a structural
    rule that never changes the probe outputs (programs: their live statements only, dead code dropped). It must be
    hashable and cheap (linear in the candidate's size): ``functional_hash`` probes the canonical form and memoises
    digests by it, so candidates that differ only where behaviour cannot see run the probe once.
    """
    if not isinstance(cls, type):
        raise HashingError(f"register_probe_runner needs a class, got {cls!r}")
    if not callable(runner) or (canonical is not None and not callable(canonical)):
        raise HashingError(f"the probe runner for {cls.__name__} must be callable, got {runner!r}")
    _RUNNERS[cls] = runner
    if canonical is None:
        _CANONICAL.pop(cls, None)
    else:
        _CANONICAL[cls] = canonical


def probe_runner_for(candidate: Any) -> ProbeRunner:
    """The runner registered for ``type(candidate)`` or its nearest registered base class."""
    for cls in type(candidate).__mro__:
        runner = _RUNNERS.get(cls)
        if runner is not None:
            return runner
    raise HashingError(
        f"no probe runner registered for {type(candidate).__name__}; "
        f"call hashing.register_probe_runner({type(candidate).__name__}, runner) (programs: 'import programs')"
    )


def canonical_form(candidate: Any) -> Any:
    """The canonical form registered for ``type(candidate)`` (see ``register_probe_runner``), or the candidate."""
    for cls in type(candidate).__mro__:
        if cls in _RUNNERS:
            canonical = _CANONICAL.get(cls)
            return candidate if canonical is None else canonical(candidate)
    return candidate


def registered_types() -> tuple[type, ...]:
    """The candidate types with a registered probe runner."""
    return tuple(_RUNNERS)
