"""Importing this module registers every built-in job type (each module registers itself)."""

from __future__ import annotations

from search.jobs import _search  # noqa: F401
