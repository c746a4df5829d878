"""Importing this module registers every built-in job type (each module registers itself)."""

from __future__ import annotations

from search.jobs import _darts, _fewshot, _groundtruth, _oneshot, _search, _train, _validate  # noqa: F401
