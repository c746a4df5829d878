"""Executors run evaluations: ``submit(EvalRequest) -> Future[EvalOutcome]``.

``LocalExecutor`` runs a pool of worker processes on this machine (one per GPU, or N on CPU); ``InlineExecutor``
runs in the calling thread; ``RayExecutor`` runs one actor per GPU (or CPU slot) of a Ray cluster. This package imports
only the standard library (Ray is imported when a ``RayExecutor`` is made): worker processes import it at start-up.
"""

from __future__ import annotations

from search.executor._base import EvalOutcome, EvalRequest, Executor, ExecutorError
from search.executor._devices import visible_gpus
from search.executor._inline import InlineExecutor
from search.executor._local import LocalExecutor, LocalExecutorConfig
from search.executor._ray import RayExecutor, RayExecutorConfig

__all__ = [
    "EvalOutcome",
    "EvalRequest",
    "Executor",
    "ExecutorError",
    "InlineExecutor",
    "LocalExecutor",
    "LocalExecutorConfig",
    "RayExecutor",
    "RayExecutorConfig",
    "visible_gpus",
]
