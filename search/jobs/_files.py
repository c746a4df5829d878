"""Atomic file saves for job state: a reader (or a resume after kill -9) sees a complete old file or a complete new
one, never a torn one. The one implementation every job uses."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Callable


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, fsync, rename over ``path``, fsync the
    folder."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def save_torch(path: str | Path, state: Any) -> None:
    """``torch.save(state)`` to ``path`` atomically."""
    import torch

    atomic_write(path, lambda file: torch.save(state, file))


def load_torch(path: str | Path) -> Any | None:
    """What ``save_torch`` wrote (tensors on the CPU, ``weights_only``), or None if there is no file yet; ``OSError``
    / ``RuntimeError`` / ``pickle`` errors for a damaged file are the caller's to explain."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def save_json(path: str | Path, value: Any) -> None:
    """``value`` as indented JSON at ``path``, atomically, world-readable."""
    text = json.dumps(value, indent=1, sort_keys=True) + "\n"
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))
    os.chmod(path, 0o644)
