"""Functional hashes probe a program's live statements and memoise by them: dead code never costs a probe."""

from __future__ import annotations

from hashing import _fingerprint, functional_hash, register_probe_runner
from programs import Program, Statement, library, parse
from programs.probe import live_program, run_program_probe

STATE_WRITTEN_LAST_BY_DEAD_CODE = """
def train(w, g, m, v, lr):
    v = lr * lr
    a = v * g
    v = g * g
    update = a * lr
    return update, m, v
"""


def test_dead_code_variants_hash_equal_and_are_probed_once(monkeypatch) -> None:
    calls = []

    def counting(program, config):
        calls.append(program)
        return run_program_probe(program, config)

    register_probe_runner(Program, counting, canonical=live_program)
    try:
        _fingerprint._memo.clear()
        adamw = library.get("adamw")
        dead = Statement("junk", "mul", ("g", 3.0))
        variants = [adamw.replace_statements(adamw.statements[:i] + (dead,) + adamw.statements[i:])
                    for i in range(len(adamw) - 1)]
        digests = {functional_hash(p) for p in [adamw, *variants]}
        assert len(digests) == 1
        assert len(calls) == 1 and len(calls[0]) == len(live_program(adamw))
    finally:
        register_probe_runner(Program, run_program_probe, canonical=live_program)


def test_a_state_whose_last_write_is_dead_keeps_the_program_valid() -> None:
    program = parse(STATE_WRITTEN_LAST_BY_DEAD_CODE)
    assert live_program(program) is program  # without its dead `v = g * g`, v would be returned as a scalar
    assert functional_hash(program) == functional_hash(parse(STATE_WRITTEN_LAST_BY_DEAD_CODE.replace(
        "    update", "    junk = g + g\n    update")))
