"""Atomic file writes: a reader, or a resume after ``kill -9``, sees a complete old file or a complete new one, never
a torn one. The one implementation behind every file autodisco writes — job state (DARTS, supernets), dataset caches,
ground-truth tables, scores, exported modules."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)``: into a new temporary file beside it, fsync, the permissions of an
    ordinary new file (umask applied), rename over ``path``, fsync the folder. The folder is made if missing; the
    temporary file is removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; these files are data to share
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_text(path: str | Path, text: str) -> None:
    """``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def write_json(path: str | Path, value: Any, *, sort_keys: bool = False) -> None:
    """``value`` as indented JSON (one space) to ``path`` atomically."""
    write_text(path, json.dumps(value, indent=1, sort_keys=sort_keys) + "\n")


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
