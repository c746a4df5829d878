"""Worker functions for tests/search/test_job.py, imported by name in worker processes (tests/search is on sys.path)."""

from __future__ import annotations

import time
from typing import Any, Mapping


def hang_on_sign(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Like ``search.workers.evaluate_optimizer``, but programs that call ``sign`` hang (a stuck evaluation)."""
    from search.kinds.workers import evaluate_optimizer

    if "sign(" in payload["program"]:
        time.sleep(600)
    return evaluate_optimizer(payload)
