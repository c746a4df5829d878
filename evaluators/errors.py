"""Exceptions of the evaluators package."""

from __future__ import annotations


class TaskError(ValueError):
    """A task name, scale or evaluation request outside what the registry knows; the message lists what is known."""


class DatasetError(TaskError):
    """A dataset that cannot be loaded: an unknown name, a missing or malformed folder; the message names the choices
    or the expected layout."""


class EvaluationFailed(RuntimeError):
    """A candidate failed its evaluation (NaN/inf or exploding loss, out of memory); ``reason`` says where and why.

    A failure is a result, not a bug: ``evaluators.evaluate`` turns it into ``{"status": "failed", "error": reason}``
    and the search records it and goes on. ``step`` is the 1-based training step at which it failed (0: before
    training, ``None``: unknown).
    """

    def __init__(self, reason: str, step: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step
