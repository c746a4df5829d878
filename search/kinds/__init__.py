"""Candidate kinds — what the engine evolves — and the worker functions that evaluate them, in one place.

The search job is generic; a ``CandidateKind`` (``_base.py``, its contract in the docstring) tells it how to read and
write a candidate's canonical text, hash it, mutate it and describe its evaluation to a worker, whose function lives in
``search.kinds.workers``. Kinds register by ``name`` in ``KINDS``: ``optimizer`` (programs, ``_optimizer.py``) and
``architecture`` (DARTS and NAS-Bench-201 genotypes, ``_architecture.py``).
"""

from __future__ import annotations

from search.kinds._architecture import (
    SCRATCH, SPACES, SUPERNET_PREFIX, TASKS, ArchitectureKind, ArchitectureKindError, ScratchBudget,
)
from search.kinds._base import KINDS, CandidateKind
from search.kinds._optimizer import OptimizerKind

__all__ = [
    "KINDS",
    "SCRATCH",
    "SPACES",
    "SUPERNET_PREFIX",
    "TASKS",
    "ArchitectureKind",
    "ArchitectureKindError",
    "CandidateKind",
    "OptimizerKind",
    "ScratchBudget",
]
