"""The Ray actor that runs evaluations: one long-lived worker per GPU (or CPU slot) of the cluster.

It is the Ray twin of ``search.executor._worker.main``: a request arrives as JSON bytes, ``call`` runs it, the outcome
goes back as JSON bytes; modules named in ``preload`` are imported once, before the actor reports ready, so whatever
they keep at module level (task data, compiled programs) stays warm between evaluations. No code object or pickle of
the user's crosses the wire; Ray itself ships only this class, by reference to this module (autodisco must be
installed on every node, as the README says).
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
from typing import Any

from search.executor._worker import _limit_torch_threads, call


class EvalActor:
    """Runs ``fn(payload)`` requests one at a time (Ray actors have ``max_concurrency=1`` by default)."""

    def __init__(self, spec_json: str) -> None:
        spec = json.loads(spec_json)
        for entry in reversed(spec.get("sys_path", [])):  # the driver's import path, where it exists on this node
            if entry not in sys.path and (entry == "" or os.path.isdir(entry)):
                sys.path.insert(0, entry)
        self.threads = spec.get("torch_threads")
        if self.threads:
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ[name] = str(self.threads)
        for module in spec.get("preload", ()):
            importlib.import_module(module)
        _limit_torch_threads(self.threads)
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        self.name = f"{socket.gethostname()}:{os.getpid()}:{'gpu' + gpus if spec.get('gpu') else 'cpu'}"

    def ready(self) -> str:
        """Once started: JSON ``{"name": "host:pid:device", "node": Ray node id}``."""
        import ray

        return json.dumps({"name": self.name, "node": ray.get_runtime_context().get_node_id()})

    def run(self, message: bytes) -> bytes:
        """One evaluation: the request as ``EvalRequest.encode`` wrote it in, the outcome as JSON out."""
        request: dict[str, Any] = json.loads(message)
        outcome = call(request["fn"], request["payload"])
        _limit_torch_threads(self.threads)
        return json.dumps({"key": request["key"], **outcome}).encode()

    def pid(self) -> int:
        return os.getpid()
