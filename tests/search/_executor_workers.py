"""Small evaluation functions for the executor tests, importable in worker processes (no torch)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def ok(payload: dict[str, Any]) -> dict[str, Any]:
    return {"fitness": payload.get("x", 0) * 2, "echo": payload, "pair": (1, 2)}


def sleep(payload: dict[str, Any]) -> dict[str, Any]:
    time.sleep(payload["seconds"])
    return {"slept": payload["seconds"], "pid": os.getpid()}


def crash(payload: dict[str, Any]) -> dict[str, Any]:
    os._exit(3)


def crash_once(payload: dict[str, Any]) -> dict[str, Any]:
    """Crashes on the first call for a marker path, succeeds afterwards (the marker remembers across processes)."""
    marker = Path(payload["marker"])
    if not marker.exists():
        marker.write_text("crashed")
        os._exit(3)
    return {"pid": os.getpid()}


def raise_error(payload: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError(f"bad candidate {payload.get('x')}\nsecond line")


def pid(payload: dict[str, Any]) -> dict[str, Any]:
    time.sleep(payload.get("seconds", 0))
    return {"pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "omp": os.environ.get("OMP_NUM_THREADS")}


def task_failed(payload: dict[str, Any]) -> dict[str, Any]:
    return {"status": "failed", "reason": "nan loss"}


def not_a_dict(payload: dict[str, Any]) -> Any:
    return [1, 2]


def cuda_info(payload: dict[str, Any]) -> dict[str, Any]:
    """What torch sees in this worker (imports torch: used by the GPU test only)."""
    import torch

    return {"count": torch.cuda.device_count(), "threads": torch.get_num_threads(),
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def slow_optimizer(payload: dict[str, Any]) -> dict[str, Any]:
    """``search.kinds.workers.evaluate_optimizer`` taking at least 0.3 s (so that a node can be lost under it)."""
    from search.kinds.workers import evaluate_optimizer

    time.sleep(0.3)
    return evaluate_optimizer(payload)
