"""The worker function of architecture searches (``"search.nas_workers:evaluate_architecture"``).

Runs in executor worker processes: JSON payload in (``ArchitectureKind.payload``), JSON result out. Datasets are
loaded once per worker process and kept (``functools.lru_cache``); the device is the worker's.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

SPLIT_SEED = 0  # the fixed train/validation split of a task's training set, the same for every candidate
NUM_CLASSES = 10  # MNIST-1D and digits
DARTS_LAYERS = 3  # default cells of a DARTS network: reduction cells at 1 and 2
NB201_CELLS_PER_STAGE = 1


def evaluate_architecture(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Score the genotype ``payload["genotype"]`` (space ``payload["space"]``) on every task of ``payload["tasks"]``.

    Fitness: the validation accuracy after training from scratch with ``payload["budget"]`` (a ``ScratchBudget``;
    ``payload["seed"]`` decides the initial weights and the batch order), or with ``payload["fitness"]`` =
    ``"supernet:RUN"`` the accuracy with weights inherited from that run's one-shot supernet. Several tasks give the
    mean. Returns ``{"status", "fitness", "metrics": {task: metrics}, "scores": {task: accuracy}, "error"}``; a
    diverging training (NaN/inf loss) fails the evaluation with its reason.
    """
    import torch

    from search.nas_kind import ArchitectureKind

    kind = ArchitectureKind(space=payload["space"], fitness=payload.get("fitness", "scratch"),
                            budget=payload.get("budget") or {})
    genotype = kind.parse(payload["genotype"])
    device = payload.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    seed = int(payload.get("seed", 0))
    metrics: dict[str, Any] = {}
    scores: dict[str, float] = {}
    for task in payload["tasks"]:
        if kind.supernet_run is not None:
            result = _inherited(genotype, task, kind.supernet_run, device)
        else:
            result = _scratch(genotype, task, kind, seed, device)
        metrics[task] = result
        if result["status"] != "ok":
            return {"status": "failed", "fitness": None, "metrics": metrics, "scores": scores,
                    "error": f"{task}: {result['error']}"}
        scores[task] = float(result["val_accuracy"])
    return {"status": "ok", "fitness": float(np.mean(list(scores.values()))), "metrics": metrics, "scores": scores,
            "error": None}


def _scratch(genotype: Any, task: str, kind: Any, seed: int, device: str) -> dict[str, Any]:
    """Train ``genotype``'s network from scratch on the task's fixed split and measure it on the validation part."""
    from nas import NB201Genotype

    budget = kind.budget
    train, valid = task_split(task, budget.train_examples, budget.valid_examples)
    sizes = {"train_examples": len(train[1]), "valid_examples": len(valid[1])}
    if isinstance(genotype, NB201Genotype):
        return {**_train_nb201(genotype, train, valid, budget, seed, device), **sizes}
    return {**_train_darts(genotype, train, valid, budget, seed, device), **sizes}


def _train_darts(genotype: Any, train: Any, valid: Any, budget: Any, seed: int, device: str) -> dict[str, Any]:
    """``nas.train.train_genotype``: DARTS's evaluation network (``budget.layers`` cells, default 3)."""
    from nas.train import TrainConfig, train_genotype

    net = {"C": budget.channels, "layers": budget.layers or DARTS_LAYERS, "num_classes": NUM_CLASSES, "seed": seed}
    settings = {"net": net, "epochs": budget.epochs, "batch_size": budget.batch_size, "seed": seed}
    if budget.lr is not None:
        settings["lr"] = budget.lr
    result = train_genotype(genotype, (train, valid), TrainConfig.from_dict(settings), device)
    last = result.history[-1] if result.history else None
    return {
        "status": result.status, "error": result.reason, "val_accuracy": result.val_accuracy,
        "val_loss": None if last is None else last.val_loss,
        "train_loss": None if last is None else last.train_loss,
        "train_accuracy": None if last is None else last.train_accuracy,
        "epochs": len(result.history), "params": result.params, "seconds": result.seconds,
    }


def _train_nb201(genotype: Any, train: Any, valid: Any, budget: Any, seed: int, device: str) -> dict[str, Any]:
    """``nas.groundtruth.train_from_scratch``: the NAS-Bench-201 network (``budget.layers`` cells per stage,
    default 1), measured on the validation part; a non-finite loss fails with its reason."""
    from torch.utils.data import TensorDataset

    from nas import NasError
    from evaluators.data import DataSplits
    from nas.groundtruth import TrainBudget, train_from_scratch

    settings = {"C": budget.channels, "cells_per_stage": budget.layers or NB201_CELLS_PER_STAGE,
                "epochs": budget.epochs, "batch_size": budget.batch_size, "seed": seed}
    if budget.lr is not None:
        settings["lr"] = budget.lr
    data = DataSplits("search", TensorDataset(*train), TensorDataset(*valid), NUM_CLASSES)
    try:
        result = train_from_scratch(genotype, data, TrainBudget(**settings), device)
    except NasError as error:
        return {"status": "failed", "error": str(error), "val_accuracy": None}
    if not math.isfinite(result.test_loss):
        return {"status": "failed", "error": f"validation loss is {result.test_loss}", "val_accuracy": None}
    return {
        "status": "ok", "error": None, "val_accuracy": result.accuracy, "val_loss": result.test_loss,
        "train_loss": result.train_loss, "train_accuracy": result.train_accuracy, "epochs": budget.epochs,
        "params": result.params, "seconds": result.seconds,
    }


def _inherited(genotype: Any, task: str, run: str, device: str) -> dict[str, Any]:
    """Validation accuracy with the weights of the one-shot supernet in run folder ``run`` (BatchNorm recalibrated
    per architecture, ``nas.oneshot_train.score``) on the supernet's own held-out split."""
    import time
    from pathlib import Path

    from nas.oneshot_train import SUPERNET_FILE, score

    started = time.perf_counter()
    path = Path(run) / SUPERNET_FILE
    saved, data = _supernet(str(path), path.stat().st_mtime_ns, device)
    if saved.dataset != task:
        return {"status": "failed", "error": f"the supernet of {run} was trained on {saved.dataset}, not {task}",
                "val_accuracy": None}
    if not saved.supernet.allows(genotype):
        allowed = saved.supernet.allowed_ops()
        return {"status": "failed", "error": f"the supernet's edges do not allow this cell (allowed: {allowed})",
                "val_accuracy": None}
    accuracy = score(saved.supernet, [genotype], data, device=device)[0]
    return {"status": "ok", "error": None, "val_accuracy": accuracy, "supernet_epoch": saved.epoch,
            "valid_examples": len(data.val[1]), "seconds": time.perf_counter() - started}


@lru_cache(maxsize=2)
def _supernet(path: str, mtime_ns: int, device: str) -> tuple[Any, Any]:
    """The saved supernet and its data, read once per worker process (again if the file changes)."""
    from nas.oneshot_train import load_supernet, supernet_data

    saved = load_supernet(path, device)
    return saved, supernet_data(saved.dataset, saved.limit)


@lru_cache(maxsize=8)
def task_split(task: str, train_examples: int, valid_examples: int) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """``((x_train, y_train), (x_valid, y_valid))``: disjoint parts of one fixed random permutation of the task's
    training set (the test set is never used for search). When the training set holds fewer than
    ``train_examples + valid_examples`` examples, both shrink in proportion."""
    import torch

    from evaluators.data import get_dataset

    x, y = get_dataset(task).train.tensors
    n = len(y)
    if train_examples + valid_examples > n:
        scale = n / (train_examples + valid_examples)
        train_examples, valid_examples = max(1, int(train_examples * scale)), max(1, int(valid_examples * scale))
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(n))
    train, valid = order[:train_examples], order[train_examples:train_examples + valid_examples]
    return (x[train], y[train]), (x[valid], y[valid])
