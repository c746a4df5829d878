"""Functions that executor workers call by name (``"search.workers:<fn>"``); each maps a JSON payload to a result.

They run in worker processes: the device is the worker's (``CUDA_VISIBLE_DEVICES`` is set before torch loads).
"""

from __future__ import annotations

from typing import Any, Mapping


def evaluate_optimizer(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate an optimizer program on every task of ``payload["tasks"]`` with ``evaluators.evaluate``.

    Returns ``{"status", "fitness", "metrics": {task: metrics}, "error"}``. With ``baselines`` (task → AdamW's
    fitness) the fitness is normalised (AdamW = 1.0, ``evaluators.normalized_fitness``); without, it is the mean raw
    task fitness. The first failing task fails the evaluation with its reason.
    """
    import torch

    from evaluators import evaluate, normalized_fitness

    device = payload.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    scores: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    for task in payload["tasks"]:
        result = evaluate({"program": payload["program"], "task": task, "seed": int(payload.get("seed", 0)),
                           "lr": payload.get("lr"), "device": device})
        metrics[task] = result["metrics"]
        if result["status"] != "ok":
            return {"status": "failed", "fitness": None, "metrics": metrics, "error": f"{task}: {result['error']}"}
        scores[task] = float(result["metrics"]["fitness"])
    baselines = payload.get("baselines") or {}
    if baselines:
        fitness = normalized_fitness(scores, baselines)
    else:
        fitness = sum(scores.values()) / len(scores)
    return {"status": "ok", "fitness": fitness, "metrics": metrics, "scores": scores, "error": None}


def evaluate_optimizer_batch(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``evaluate_optimizer`` for a batch: ``payload["requests"]`` is a list of its payloads, one per program.

    Requests with the same tasks, seed and lr are trained together, one task at a time (``evaluators.evaluate_batch``:
    K programs at once, each row equal to its one-at-a-time evaluation); a program that fails a task is not run on
    the next ones, as ``evaluate_optimizer`` stops at its first failing task. Returns ``{"results": [...]}``, one
    ``evaluate_optimizer`` result per request, in order (a malformed request gets its own failed result).
    """
    import torch

    from evaluators import evaluate_batch, normalized_fitness

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
        device = first.get("device") or default_device
        scores: dict[int, dict[str, float]] = {i: {} for i in indices}
        metrics: dict[int, dict[str, Any]] = {i: {} for i in indices}
        alive = list(indices)
        for task in first["tasks"]:
            rows = evaluate_batch([requests[i]["program"] for i in alive], task, seed=int(first.get("seed", 0)),
                                  lr=first.get("lr"), device=device)
            still = []
            for i, row in zip(alive, rows):
                metrics[i][task] = row["metrics"]
                if row["status"] != "ok":
                    results[i] = {"status": "failed", "fitness": None, "metrics": metrics[i],
                                  "error": f"{task}: {row['error']}"}
                else:
                    scores[i][task] = float(row["metrics"]["fitness"])
                    still.append(i)
            alive = still
        for i in alive:
            baselines = requests[i].get("baselines") or {}
            fitness = (normalized_fitness(scores[i], baselines) if baselines
                       else sum(scores[i].values()) / len(scores[i]))
            results[i] = {"status": "ok", "fitness": fitness, "metrics": metrics[i], "scores": scores[i],
                          "error": None}
    return {"results": results}


def batch_key(request: Mapping[str, Any]) -> str:
    """Requests with equal keys can be trained together: the same tasks, seed, lr, baselines and device."""
    import json

    fields = {name: request.get(name) for name in ("tasks", "seed", "lr", "baselines", "device")}
    return json.dumps(fields, sort_keys=True)
