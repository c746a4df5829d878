"""Functional hashing of large programs costs linear time and memory, and long programs do not fill the plan cache."""

from __future__ import annotations

import tracemalloc

from hashing import functional_hash
from programs import Program, Statement, library, simplify
from programs.probe import plan_for, probe_lanes


def _chain(length: int) -> Program:
    statements = [Statement(f"x{i}", "interp", (f"x{i - 1}" if i else "g", "m", 0.9)) for i in range(length - 1)]
    return Program(tuple(statements) + (Statement("update", "mul", (f"x{length - 2}", "lr")),))


def test_hashing_memory_is_linear_in_the_statement_count():
    # Before: the plan's abstract execution kept a copy of the variable table per statement (~300 MB at 5,000).
    program = _chain(3_000)
    tracemalloc.start()
    try:
        digest = functional_hash(program)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40_000_000, f"hashing 3,000 statements allocated {peak:,} bytes at the peak"
    assert digest == functional_hash(simplify(program))


def test_long_programs_are_not_kept_in_the_plan_cache():
    from hashing import _fingerprint

    _fingerprint._memo.clear()  # digests memoised by earlier tests would skip the probe (and the plan)
    probe_lanes.cache_clear()  # and so would probe outputs kept for the lr probe
    plan_for.cache_clear()
    functional_hash(_chain(200))
    assert plan_for.cache_info().currsize == 0
    functional_hash(library.get("adamw"))
    assert plan_for.cache_info().currsize == 1
