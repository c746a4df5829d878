"""Every function that executor workers call by name (``"search.kinds.workers:<fn>"``): a JSON payload in, a JSON
result out. One module for all kinds of work — optimizer candidates (``evaluate_optimizer``, and ``evaluate_optimizer_batch`` for many at once), architecture candidates
(``evaluate_architecture``), the meta-validation funnel's lr sweeps (``tune_lr_sweep``) and ground-truth training of
NAS-Bench-201 cells (``train_nb201``).

They run in worker processes: the device is the worker's (``CUDA_VISIBLE_DEVICES`` is set before torch loads);
datasets are loaded once per worker process and kept. They never raise for a bad candidate or request: they return
``{"status": "failed", "error": reason, ...}`` (storage errors of a sweep raise; the executor records them).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np


def evaluate_optimizer(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate an optimizer program on every task of ``payload["tasks"]`` with ``evaluators.evaluate``.

    With ``lr_grid`` (multipliers of the base lr: ``payload["lr"]`` or each task's own) a task is trained at every lr
    of the grid and scored at its best (``evaluators.fitness.best_on_grid``); its metrics are the best lr's, with
    ``lr`` the lr chosen and ``lr_grid`` {lr: fitness or None}. A task fails only when every lr of the grid fails.

    Returns ``{"status", "fitness", "metrics": {task: metrics}, "scores", "error"}``. With ``baselines`` (task →
    AdamW's fitness) the fitness is normalised (AdamW = 1.0, ``evaluators.normalized_fitness`` with the payload's
    ``aggregate``, default the geometric mean) and each task's metrics hold its ``ratio`` to AdamW; without, the
    fitness is the mean raw task fitness. The first failing task fails the evaluation with its reason. With a
    ``hurdle`` (and baselines) the tasks are a cascade: see ``_Cascade``; the result then holds ``hurdle``.
    """
    import torch

    from evaluators import evaluate

    device = payload.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        lrs = _grid_lrs(payload)
    except ValueError as error:
        return {"status": "failed", "fitness": None, "metrics": {}, "error": f"invalid request: {error}"}
    scores: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    cascade = _Cascade(payload)
    for task in payload["tasks"]:
        results = {lr: evaluate({"program": payload["program"], "task": task, "seed": int(payload.get("seed", 0)),
                                 "lr": lr, "device": device}) for lr in lrs(task)}
        result = _on_grid(results, len(lrs(task)) > 1)
        metrics[task] = result["metrics"]
        if result["status"] != "ok":
            return {"status": "failed", "fitness": None, "metrics": metrics, "error": f"{task}: {result['error']}"}
        scores[task] = float(result["metrics"]["fitness"])
        if not cascade.clears(scores):
            break
    return cascade.scored(payload, scores, metrics)


def evaluate_optimizer_batch(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``evaluate_optimizer`` for a batch: ``payload["requests"]`` is a list of its payloads, one per program.

    Requests with the same tasks, seed, lr, lr grid and baselines are trained together, one task at a time and one
    lr of the grid at a time (``evaluators.evaluate_batch``: K programs at once, each row equal to its one-at-a-time
    evaluation; a batch shares one lr, so a grid of G lrs is G batches); a program that fails a task (at every lr) is
    not run on the next ones, as ``evaluate_optimizer`` stops at its first failing task. Returns ``{"results":
    [...]}``, one ``evaluate_optimizer`` result per request, in order (a malformed request gets its own failed result).
    """
    import torch

    from evaluators import evaluate_batch

    requests = payload.get("requests")
    if not isinstance(requests, list) or not all(isinstance(r, Mapping) for r in requests):
        raise ValueError("a batch payload is {'requests': [optimizer payload, ...]}")
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    results: list[dict[str, Any] | None] = [None] * len(requests)
    groups: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(batch_key(request), []).append(index)
    for indices in groups.values():
        first = requests[indices[0]]
        try:
            lrs = _grid_lrs(first)
        except ValueError as error:
            for i in indices:
                results[i] = {"status": "failed", "fitness": None, "metrics": {}, "error": f"invalid request: {error}"}
            continue
        device = first.get("device") or default_device
        scores: dict[int, dict[str, float]] = {i: {} for i in indices}
        metrics: dict[int, dict[str, Any]] = {i: {} for i in indices}
        alive = list(indices)
        cascades = {i: _Cascade(requests[i]) for i in indices}
        for task in first["tasks"]:
            task_lrs = lrs(task)
            by_lr = {lr: evaluate_batch([requests[i]["program"] for i in alive], task, seed=int(first.get("seed", 0)),
                                        lr=lr, device=device) for lr in task_lrs}
            still = []
            for row, i in enumerate(alive):
                result = _on_grid({lr: rows[row] for lr, rows in by_lr.items()}, len(task_lrs) > 1)
                metrics[i][task] = result["metrics"]
                if result["status"] != "ok":
                    results[i] = {"status": "failed", "fitness": None, "metrics": metrics[i],
                                  "error": f"{task}: {result['error']}"}
                else:
                    scores[i][task] = float(result["metrics"]["fitness"])
                    if cascades[i].clears(scores[i]):
                        still.append(i)
                    else:  # stopped at a hurdle: scored on the tasks it ran
                        results[i] = cascades[i].scored(requests[i], scores[i], metrics[i])
            alive = still
        for i in alive:
            results[i] = cascades[i].scored(requests[i], scores[i], metrics[i])
    return {"results": results}


def batch_key(request: Mapping[str, Any]) -> str:
    """Requests with equal keys can be trained together: the same tasks, seed, lr, lr grid, baselines and device."""
    import json

    fields = {name: request.get(name) for name in ("tasks", "seed", "lr", "lr_grid", "baselines", "device")}
    return json.dumps(fields, sort_keys=True)


def _grid_lrs(payload: Mapping[str, Any]) -> Any:
    """A function task -> the lrs to train it at: ``payload["lr"]`` (or the task's base lr) times each multiplier of
    ``payload["lr_grid"]`` (default: the base lr alone, ``None`` when the payload gives no lr and no grid).
    ``ValueError`` for a malformed grid."""
    from evaluators import get_task
    from evaluators.fitness import check_lr_grid

    grid = payload.get("lr_grid")
    base = payload.get("lr")
    multipliers = (1.0,) if grid is None else check_lr_grid(grid)  # TaskError is a ValueError
    if multipliers == (1.0,):
        return lambda task: [base]

    def lrs(task: str) -> list[float]:
        task_base = float(base) if base is not None else get_task(task).base_lr
        return [task_base * m for m in multipliers]

    return lrs


def _on_grid(results: Mapping[Any, dict[str, Any]], grid: bool) -> dict[str, Any]:
    """The result of one task at its best lr (one lr: that result as it is), its metrics with ``lr_grid``."""
    from evaluators.fitness import best_on_grid

    if not grid:
        return next(iter(results.values()))
    lr, best = best_on_grid(results)
    fitnesses = {repr(float(x)): (float(r["metrics"]["fitness"]) if r["status"] == "ok" else None)
                 for x, r in results.items()}
    metrics = {**best["metrics"], "lr": float(lr), "lr_grid": fitnesses}
    if best["status"] != "ok":
        return {**best, "metrics": metrics, "error": f"failed at every lr of the grid; at lr={lr:g}: {best['error']}"}
    return {**best, "metrics": metrics}


class _Cascade:
    """Hurdles (``payload["hurdle"]``, a ratio to AdamW): the tasks are stages, trained in the payload's order, and a
    candidate goes on to the next task only while the aggregate of its ratios so far is at least the hurdle
    (AutoML-Zero's hurdles; OpenEvolve's cascade). One that stops is scored on the tasks it ran — the aggregate that
    stopped it, below the hurdle — and its result says so (``hurdle``: the threshold, the aggregate after each stage
    checked, the task it stopped after or None). No hurdle, no baselines (the baseline's own measurement) or one task:
    every task is trained."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        hurdle = payload.get("hurdle")
        tasks = list(payload.get("tasks") or ())
        self.baselines = payload.get("baselines") or {}
        self.hurdle = float(hurdle) if hurdle is not None and self.baselines and len(tasks) > 1 else None
        self.last = tasks[-1] if tasks else None
        self.aggregate = payload.get("aggregate")
        self.stages: list[float] = []
        self.stopped_after: str | None = None

    def clears(self, scores: Mapping[str, float]) -> bool:
        """Whether a candidate scored on ``scores`` (the tasks so far) goes on to the next task."""
        from evaluators.fitness import GEOMEAN, normalized_fitness

        task = next(reversed(scores))
        if self.hurdle is None or task == self.last:
            return True
        aggregate = normalized_fitness(scores, self.baselines, aggregate=self.aggregate or GEOMEAN)
        self.stages.append(aggregate)
        if aggregate >= self.hurdle:
            return True
        self.stopped_after = task
        return False

    def scored(self, payload: Mapping[str, Any], scores: dict[str, float], metrics: dict[str, Any]) -> dict[str, Any]:
        result = _scored(payload, scores, metrics)
        if self.hurdle is not None:
            result["hurdle"] = {"threshold": self.hurdle, "stages": self.stages, "stopped_after": self.stopped_after}
        return result


def _scored(payload: Mapping[str, Any], scores: dict[str, float], metrics: dict[str, Any]) -> dict[str, Any]:
    """The ok result: the normalised fitness (the payload's ``aggregate``) with each task's ratio in its metrics, or
    the mean raw fitness without baselines."""
    from evaluators.fitness import GEOMEAN, normalized_fitness, task_ratios

    baselines = payload.get("baselines") or {}
    if baselines:
        fitness = normalized_fitness(scores, baselines, aggregate=payload.get("aggregate") or GEOMEAN)
        for task, ratio in task_ratios(scores, baselines).items():
            metrics[task] = {**metrics[task], "ratio": ratio}
    else:
        fitness = sum(scores.values()) / len(scores)
    return {"status": "ok", "fitness": fitness, "metrics": metrics, "scores": scores, "error": None}


# -- architectures -----------------------------------------------------------------------------------------------

SPLIT_SEED = 0  # the fixed train/validation split of a task's training set, the same for every candidate
NUM_CLASSES = 10  # MNIST-1D and digits
DARTS_LAYERS = 3  # default cells of a DARTS network: reduction cells at 1 and 2
NB201_CELLS_PER_STAGE = 1


def evaluate_architecture(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Score the genotype ``payload["genotype"]`` (space ``payload["space"]``) on every task of ``payload["tasks"]``.

    Fitness: the validation accuracy after training from scratch with ``payload["budget"]`` (a ``ScratchBudget``;
    ``payload["seed"]`` decides the initial weights and the batch order), or with ``payload["fitness"]`` =
    ``"supernet:RUN"`` the accuracy with weights inherited from that run's one-shot supernet, or minus its loss with
    ``payload["supernet_metric"] == "loss"``. Several tasks give the mean. Returns ``{"status", "fitness", "metrics":
    {task: metrics}, "scores": {task: score}, "error"}``; a
    diverging training (NaN/inf loss) fails the evaluation with its reason.
    """
    import torch

    from search.kinds._architecture import ArchitectureKind

    kind = ArchitectureKind(space=payload["space"], fitness=payload.get("fitness", "scratch"),
                            budget=payload.get("budget") or {},
                            supernet_metric=payload.get("supernet_metric", "accuracy"))  # absent: an older payload
    by_loss = kind.supernet_run is not None and kind.supernet_metric == "loss"
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
        scores[task] = -float(result["val_loss"]) if by_loss else float(result["val_accuracy"])
    return {"status": "ok", "fitness": float(np.mean(list(scores.values()))), "metrics": metrics, "scores": scores,
            "error": None}


def _scratch(genotype: Any, task: str, kind: Any, seed: int, device: str) -> dict[str, Any]:
    """Train ``genotype``'s network from scratch on the task's fixed split and measure it on the validation part:
    ``nas.train.train_genotype``, one recipe whatever the space (DARTS: ``budget.layers`` cells, default 3; NB201:
    ``budget.layers`` cells per stage, default 1)."""
    from nas import NB201Genotype
    from nas.train import TrainConfig, train_genotype

    budget = kind.budget
    train, valid = task_split(task, budget.train_examples, budget.valid_examples)
    layers = budget.layers or (NB201_CELLS_PER_STAGE if isinstance(genotype, NB201Genotype) else DARTS_LAYERS)
    net = {"C": budget.channels, "layers": layers, "num_classes": NUM_CLASSES, "seed": seed}
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
        "train_examples": len(train[1]), "valid_examples": len(valid[1]),
    }


def _inherited(genotype: Any, task: str, run: str, device: str) -> dict[str, Any]:
    """Validation accuracy and loss with the weights of the one-shot supernet in run folder ``run`` (BatchNorm
    recalibrated per architecture, ``nas.oneshot_train.evaluate``) on the supernet's own held-out split."""
    import time
    from pathlib import Path

    from nas.oneshot_train import SUPERNET_FILE, evaluate

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
    inherited = evaluate(saved.supernet, [genotype], data, device=device)[0]
    return {"status": "ok", "error": None, "val_accuracy": inherited.accuracy, "val_loss": inherited.loss,
            "supernet_epoch": saved.epoch,
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


# -- the meta-validation funnel ----------------------------------------------------------------------------------

def tune_lr_sweep(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Tune the base lr of ``payload["program"]`` on ``payload["task"]`` with ``evaluators.tune_lr``.

    Payload: ``program`` (text), ``task`` (e.g. ``"quadratic@10x"``), ``n_trials``, ``seed``, ``storage`` (RDB
    URL), ``study_name``, optional ``device`` (default: CUDA when the worker has it, else CPU).
    Returns ``{"status": "ok", "fitness", "lr", "metrics", "trials", "error": None}`` with the best trial's raw task
    fitness, or ``{"status": "failed", "fitness": None, "lr": None, "metrics", "trials", "error": reason}`` when
    every trial failed (NaN, divergence, ...) or the request is invalid (unknown task, unparsable program).
    ``trials`` counts the study's trials by state. Storage errors raise (the executor reports them as failures).
    """
    import optuna
    import torch

    from evaluators import EvaluationFailed, TaskError, tune_lr
    from programs import ProgramError

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are recorded in the study, not logged
    device = payload.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    storage, study_name = str(payload["storage"]), str(payload["study_name"])
    try:
        lr, metrics = tune_lr(str(payload["program"]), str(payload["task"]), int(payload["n_trials"]),
                              int(payload["seed"]), storage, study_name, device=device)
    except (ProgramError, TaskError) as error:
        return _failed(f"invalid request: {error}", {})
    except EvaluationFailed as failure:
        return _failed(failure.reason, _trial_counts(storage, study_name))
    return {"status": "ok", "fitness": float(metrics["fitness"]), "lr": lr, "metrics": metrics,
            "trials": _trial_counts(storage, study_name), "error": None}


def _failed(reason: str, trials: dict[str, int]) -> dict[str, Any]:
    return {"status": "failed", "fitness": None, "lr": None, "metrics": {}, "trials": trials, "error": reason}


def _trial_counts(storage: str, study_name: str) -> dict[str, int]:
    """The study's trials by state name, e.g. ``{"COMPLETE": 6, "FAIL": 2}``; {} if the study does not exist."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return {}
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


# -- ground-truth tables -----------------------------------------------------------------------------------------

def train_nb201(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Train the NAS-Bench-201 architecture ``payload["arch"]`` from scratch (``nas.groundtruth``).

    Payload: ``arch`` (NB201 text), ``dataset`` (``mnist1d`` | ``digits``), ``budget`` (``TrainBudget`` fields),
    optional ``limit`` (examples per split) and ``device``. Returns ``{"status": "ok", "accuracy", "test_loss",
    "train_accuracy", "train_loss", "params", "seconds", "error": None}`` or ``{"status": "failed", "error"}``.
    """
    import torch

    from nas.groundtruth import TrainBudget, train_from_scratch
    from nas.nb201 import NB201Genotype
    from nas.oneshot_train import load_dataset

    try:
        genotype = NB201Genotype.from_text(payload["arch"])
        budget = TrainBudget(**payload.get("budget", {}))
        data = load_dataset(str(payload["dataset"]))  # generated once per worker process
        device = payload.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        result = train_from_scratch(genotype, data, budget, device, limit=payload.get("limit"))
    except (ValueError, KeyError, TypeError) as error:  # NasError is a ValueError
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    return {"status": "ok", "accuracy": result.accuracy, "test_loss": result.test_loss,
            "train_accuracy": result.train_accuracy, "train_loss": result.train_loss, "params": result.params,
            "seconds": result.seconds, "error": None}
