"""Proxy tasks for optimizer discovery: train a model with a candidate program and return metrics.

- ``TASKS`` / ``get_task``: the registry (``mnist1d-mlp``, ``digits-cnn``, ``modadd-transformer``, ``quadratic``,
  ``markov-gru``, ``digits-autoencoder``,
  each with ``@10x`` and ``@100x`` meta-validation variants);
- ``user_task`` / ``PluginError``: your own task (data, model, budget, fitness) in your own module, named
  ``MODULE:ATTRIBUTE`` or by an ``autodisco.tasks`` entry point (``evaluators.plugins``);
- ``get_dataset`` / ``DATASETS``: the dataset registry of proxy tasks and architecture search (``evaluators.data``);
- ``evaluators.fit.fit``: the one training loop with a pluggable ``TrainStep``; ``SGDConfig`` the shared SGD settings;
- ``train``: a proxy task on ``fit`` (flat parameters, compiled program, lr schedule, divergence checks);
- ``evaluate``: the worker entry point over JSON-safe dicts; ``evaluate_program`` the same on a ``Program``;
- ``train_batch`` / ``evaluate_batch``: K programs trained at once on one task and seed (``evaluators.batched``),
  each row equal to its one-at-a-time evaluation; ``max_batch``: the K that fits a memory bound;
- ``normalized_fitness`` / ``baseline_scores``: fitness over several tasks relative to AdamW;
- ``tune_lr``: the lr tuning of the meta-validation funnel (Optuna, RDB storage).

Failures of a candidate raise ``EvaluationFailed`` inside the package; ``evaluate`` turns them into results.
"""

from __future__ import annotations

from evaluators.batched import evaluate_batch, max_batch, train_batch
from evaluators.data import DATASETS, DataSplits, get_dataset
from evaluators.errors import DatasetError, EvaluationFailed, TaskError
from evaluators.evaluate import evaluate, evaluate_program
from evaluators.fit import SGDConfig, TrainStep
from evaluators.fitness import baseline_scores, normalized_fitness
from evaluators.loop import FlatParameters, Setup, prepare, train
from evaluators.models import MODELS, ModelSpec
from evaluators.plugins import PluginError, user_task
from evaluators.schedule import lr_schedule
from evaluators.tasks import ACCURACY, NEG_LOSS, TASKS, Task, get_task
from evaluators.tuning import tune_lr

__all__ = [
    "ACCURACY",
    "DATASETS",
    "MODELS",
    "NEG_LOSS",
    "TASKS",
    "DataSplits",
    "DatasetError",
    "EvaluationFailed",
    "FlatParameters",
    "ModelSpec",
    "PluginError",
    "SGDConfig",
    "Setup",
    "Task",
    "TaskError",
    "TrainStep",
    "baseline_scores",
    "evaluate",
    "evaluate_batch",
    "evaluate_program",
    "get_dataset",
    "get_task",
    "lr_schedule",
    "max_batch",
    "normalized_fitness",
    "prepare",
    "train",
    "train_batch",
    "tune_lr",
    "user_task",
]
