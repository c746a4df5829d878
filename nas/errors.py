"""Exceptions of architecture search: user-input errors are ``ValueError`` subclasses with a one-line message."""

from __future__ import annotations

from evaluators.errors import DatasetError  # one class for every dataset error (a ValueError); re-exported here

__all__ = ["DatasetError", "GenotypeError", "NasError"]


class NasError(ValueError):
    """Bad input to ``nas``: the message says what is wrong, where, and how to fix it."""


class GenotypeError(NasError):
    """Genotype text or a genotype outside its search space; the message names the field and the problem."""
