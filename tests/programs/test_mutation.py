"""Mutation and random programs: validity, the three edits, reproducibility, configuration."""

from __future__ import annotations

import numpy as np
import pytest

import programs
from programs import library
from programs.analysis import check, infer_types, is_valid
from programs.mutation import (
    Mutation,
    MutationConfig,
    is_valid_fast,
    mutate,
    mutate_with_info,
    random_program,
)
from programs.primitives import CONSTANT_LIMIT
from programs.program import Program, Statement

LIBRARY = [library.get(name) for name in library.names()]


def _lineage(seed: int, steps: int) -> list[tuple[Program, Mutation]]:
    rng = np.random.default_rng(seed)
    program = library.get("adamw")
    out = []
    for _ in range(steps):
        program, info = mutate_with_info(program, rng)
        out.append((program, info))
    return out


def test_children_are_always_valid_along_long_lineages():
    for seed in range(3):
        for child, _ in _lineage(seed, 300):
            check(child)  # raises on an invalid child


def test_all_three_kinds_occur_with_roughly_equal_weight():
    kinds = [info.kind for _, info in _lineage(0, 600)]
    counts = {kind: kinds.count(kind) for kind in ("insert", "delete", "modify")}
    assert all(120 < count < 280 for count in counts.values()), counts


def test_same_seed_gives_same_child_and_different_seeds_differ():
    parent = library.get("lion")
    children = [mutate(parent, np.random.default_rng(7)) for _ in range(2)]
    assert children[0] == children[1]
    others = {mutate(parent, np.random.default_rng(seed)) for seed in range(20)}
    assert len(others) > 10


def test_mutate_is_the_program_of_mutate_with_info():
    parent = library.get("adam")
    assert mutate(parent, np.random.default_rng(3)) == mutate_with_info(parent, np.random.default_rng(3))[0]


def test_insert_adds_one_statement_reading_only_defined_names():
    config = MutationConfig(delete_weight=0, modify_weight=0)
    parent = library.get("lion")
    rng = np.random.default_rng(1)
    for _ in range(50):
        child, info = mutate_with_info(parent, rng, config)
        assert info.kind == "insert" and len(child) == len(parent) + 1
        inserted = child.statements[info.index]
        assert child.statements[: info.index] + child.statements[info.index + 1 :] == parent.statements
        defined = set(infer_types(child)[info.index])
        assert set(inserted.variables()) <= defined
        assert info.detail == f"insert {info.index}: {inserted.to_text()}"


def test_insert_targets_both_fresh_and_existing_variables_including_state():
    config = MutationConfig(delete_weight=0, modify_weight=0)
    parent = library.get("lion")
    rng = np.random.default_rng(2)
    targets = set()
    for _ in range(300):
        child, info = mutate_with_info(parent, rng, config)
        targets.add(child.statements[info.index].target)
    assert "x1" in targets and {"m", "v", "update", "c"} <= targets


def test_delete_removes_one_statement():
    config = MutationConfig(insert_weight=0, modify_weight=0)
    parent = library.get("adamw")
    rng = np.random.default_rng(4)
    for _ in range(30):
        child, info = mutate_with_info(parent, rng, config)
        assert info.kind == "delete" and len(child) == len(parent) - 1
        assert child.statements == parent.statements[: info.index] + parent.statements[info.index + 1 :]


def test_delete_that_would_break_a_read_is_redrawn():
    # Deleting the only statement leaves 'update' unassigned: with deletion as the only edit, no child exists.
    sgd = library.get("sgd")
    with pytest.raises(programs.ProgramError, match="no valid mutation"):
        mutate(sgd, np.random.default_rng(0), MutationConfig(insert_weight=0, modify_weight=0, edit_tries=50))


def test_modify_changes_one_argument_and_keeps_every_type():
    config = MutationConfig(insert_weight=0, delete_weight=0)
    parent = library.get("adamw")
    parent_types = infer_types(parent)
    rng = np.random.default_rng(5)
    for _ in range(200):
        child, info = mutate_with_info(parent, rng, config)
        changed = [i for i, (a, b) in enumerate(zip(parent.statements, child.statements)) if a != b]
        assert changed == [info.index] and len(child) == len(parent)
        old, new = parent.statements[info.index], child.statements[info.index]
        assert (old.target, old.fn) == (new.target, new.fn)
        assert sum(a != b for a, b in zip(old.args, new.args)) <= 1  # a constant may be redrawn to the same value
        assert infer_types(child) == parent_types


def test_modified_constants_follow_the_paper_and_stay_clipped():
    config = MutationConfig(insert_weight=0, delete_weight=0)
    parent = Program((Statement("update", "mul", ("g", 1e10)),))
    rng = np.random.default_rng(6)
    values = []
    for _ in range(300):
        child, info = mutate_with_info(parent, rng, config)
        if info.detail.startswith("modify 0: 1e+10 -> "):
            values.append(child.statements[0].args[1])
        else:
            assert child.statements[0].args[1] == 1e10 and info.detail.startswith("modify 0: g -> ")
    values = np.array(values)
    assert len(values) > 100
    assert np.all(np.abs(values) <= CONSTANT_LIMIT)
    assert np.any(values == CONSTANT_LIMIT)  # 1e10 * 2^a with a > 0 is clipped
    assert np.any((np.abs(values) < 5) & (values != 0))  # a fresh N(0, 1) draw
    assert np.any((values > 1e8) & (values < 1e10))  # 1e10 * 2^a with a < 0


def test_variables_are_swapped_only_for_the_same_type():
    # 'lr' is the only scalar: swapping it is impossible; the tensor 'g' can become w, m or v.
    config = MutationConfig(insert_weight=0, delete_weight=0)
    parent = Program((Statement("update", "mul", ("g", "lr")),))
    rng = np.random.default_rng(8)
    seen = {mutate(parent, rng, config).statements[0].args for _ in range(100)}
    assert seen == {("w", "lr"), ("m", "lr"), ("v", "lr")}


def test_insertion_can_be_disabled():
    config = MutationConfig(insertion=False)
    rng = np.random.default_rng(9)
    program = library.get("adamw")
    for _ in range(40):
        shorter, info = mutate_with_info(program, rng, config)
        assert info.kind in ("delete", "modify") and len(shorter) <= len(program)
        program = shorter
    with pytest.raises(programs.ProgramError, match="insertion turned off"):
        mutate(Program((), outputs=("g", "m", "v")), rng, config)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        MutationConfig(insert_weight=-1)
    with pytest.raises(ValueError):
        MutationConfig(insert_weight=0, delete_weight=0, modify_weight=0)
    with pytest.raises(ValueError):
        MutationConfig(functions=("frobnicate",))


def test_restricted_function_set_is_respected():
    config = MutationConfig(functions=("add", "sign"), delete_weight=0, modify_weight=0)
    rng = np.random.default_rng(10)
    program = library.get("sgd")
    for _ in range(30):
        program = mutate(program, rng, config)
    assert {s.fn for s in program.statements} <= {"add", "sign", "mul"}


def test_fast_validity_agrees_with_abstract_execution():
    rng = np.random.default_rng(11)
    config = MutationConfig(insert_weight=3)
    for parent in LIBRARY:
        for _ in range(40):
            # raw edits, valid or not: delete any statement / insert at random
            index = int(rng.integers(len(parent)))
            broken = parent.replace_statements(parent.statements[:index] + parent.statements[index + 1 :])
            assert is_valid_fast(broken) == is_valid(broken)
            grown = mutate(parent, rng, config)
            assert is_valid_fast(grown) and is_valid(grown)
    swapped = Program((Statement("m", "norm", ("g",)), Statement("update", "mul", ("g", "lr"))))
    assert not is_valid_fast(swapped) and not is_valid(swapped)


@pytest.mark.parametrize("length", [1, 2, 5, 20])
def test_random_programs_are_valid_with_the_requested_length(length):
    rng = np.random.default_rng(length)
    for _ in range(50):
        program = random_program(rng, length)
        check(program)
        assert len(program) == length
        assert program.outputs == ("update", "m", "v") and program.statements[-1].target == "update"


def test_random_programs_sometimes_carry_state_and_are_reproducible():
    rng = np.random.default_rng(12)
    drawn = [random_program(rng, 6) for _ in range(100)]
    writes_state = [p for p in drawn if any(s.target in ("m", "v") for s in p.statements)]
    assert 10 < len(writes_state) < 100
    assert len(set(drawn)) == 100
    assert random_program(np.random.default_rng(1), 6) == random_program(np.random.default_rng(1), 6)
    with pytest.raises(ValueError):
        random_program(rng, 0)


def test_random_programs_mutate_and_round_trip():
    rng = np.random.default_rng(13)
    for _ in range(30):
        program = mutate(random_program(rng, 8), rng)
        assert programs.parse(program.to_text()) == program


def test_fcm_children_differ_functionally_from_their_parent():
    from hashing import functional_hash

    rng = np.random.default_rng(14)
    parent = library.get("lion")
    parent_hash = functional_hash(parent)
    plain = [mutate(parent, rng) for _ in range(60)]
    assert any(functional_hash(child) == parent_hash for child in plain)  # e.g. an inserted dead statement
    fcm = MutationConfig(fcm=True)
    for _ in range(30):
        child = mutate(parent, rng, fcm)
        check(child)
        assert functional_hash(child) != parent_hash


def test_fcm_gives_up_after_its_tries_and_returns_a_valid_child():
    # With deletion alone, the only valid child drops the dead statement: same behaviour, so FCM gives up.
    from hashing import functional_hash

    parent = Program((Statement("update", "mul", ("g", "lr")), Statement("x", "exp", ("w",))))
    config = MutationConfig(fcm=True, fcm_tries=5, insert_weight=0, modify_weight=0)
    child, info = mutate_with_info(parent, np.random.default_rng(15), config)
    assert child == Program((Statement("update", "mul", ("g", "lr")),)) and info.kind == "delete"
    assert functional_hash(child) == functional_hash(parent)


# ---------------------------------------------------------------- bounded cost (issue 13)


def _chain(length: int, live_tail: int = 1) -> Program:
    """``length`` statements: a chain of ``length - live_tail`` dead tensor statements, then ``live_tail`` live ones
    ending in ``update``."""
    dead = [Statement(f"d{i}", "mul", (f"d{i - 1}" if i else "g", 0.5)) for i in range(length - live_tail)]
    live = [Statement(f"k{i}", "add", (f"k{i - 1}" if i else "g", "m")) for i in range(live_tail - 1)]
    last = f"k{live_tail - 2}" if live_tail > 1 else "g"
    return Program(tuple(dead + live + [Statement("update", "mul", (last, "lr"))]))


def test_mutation_never_grows_a_program_past_the_statement_limit():
    from programs.program import MAX_STATEMENTS

    rng = np.random.default_rng(20)
    program = _chain(MAX_STATEMENTS)
    for _ in range(60):
        child, info = mutate_with_info(program, rng)
        assert len(child) <= MAX_STATEMENTS and info.kind != "insert"
        program = child if len(child) == MAX_STATEMENTS else program
    config = MutationConfig(max_statements=12)
    program = library.get("sgd")
    for _ in range(300):
        program = mutate(program, rng, config)
        assert len(program) <= 12
    with pytest.raises(ValueError):
        MutationConfig(max_statements=MAX_STATEMENTS + 1)


def test_random_program_length_is_bounded():
    from programs.program import MAX_STATEMENTS

    with pytest.raises(ValueError, match="1..1000"):
        random_program(np.random.default_rng(0), MAX_STATEMENTS + 1)


def test_live_indices_are_the_update_ancestors_in_the_dataflow_graph():
    import networkx as nx

    from programs.simplify import dataflow_graph, live_indices

    rng = np.random.default_rng(21)
    parents = LIBRARY + [random_program(rng, int(rng.integers(1, 15))) for _ in range(60)]
    for program in parents:
        for _ in range(5):
            program = mutate(program, rng)
            ancestors = nx.ancestors(dataflow_graph(program), ("out", "update"))
            assert live_indices(program) == tuple(sorted(i for kind, i in ancestors if kind == "stmt"))


def _fcm_hashing_every_child(program, rng, config):
    """The reference FCM: hash every child (what mutate_with_info did before it skipped dead-code edits)."""
    from hashing import functional_hash
    from programs.mutation import _edit, _kind_table

    parent_hash = functional_hash(program)
    for _ in range(config.fcm_tries):
        child, mutation = _edit(program, rng, config, _kind_table(program, config)).finish()
        if functional_hash(child) != parent_hash:
            break
    return child, mutation


def _edit_histograms(parent, config, draws: int, seed: int):
    """How often each (kind, index) edit is returned by FCM, and by the reference FCM that hashes every child."""
    import collections

    fast, reference = collections.Counter(), collections.Counter()
    for k in range(draws):
        info = mutate_with_info(parent, np.random.default_rng([seed, k]), config)[1]
        fast[(info.kind, info.index)] += 1
        info = _fcm_hashing_every_child(parent, np.random.default_rng([seed, k, 1]), config)[1]
        reference[(info.kind, info.index)] += 1
    return fast, reference


@pytest.mark.parametrize("parent", [_chain(24, live_tail=4), "adamw with dead code"], ids=["chain", "adamw"])
def test_fcm_returns_the_edits_of_hashing_every_child_in_the_same_proportions(parent):
    # FCM draws only edits that can change the live code (programs.mutation._LiveDraws): a different random stream,
    # the same distribution of children as drawing every edit and hashing every child. A chi-square test of the
    # (kind, statement) counts; with the kinds drawn by their plain weights (deletes of the 4 live statements as
    # often as inserts) it fails with p < 1e-20.
    from scipy.stats import chi2_contingency

    if parent == "adamw with dead code":
        adamw = library.get("adamw")
        dead = tuple(Statement(f"d{i}", "exp", ("g",)) for i in range(12))
        parent = adamw.replace_statements(dead + adamw.statements)
    fast, reference = _edit_histograms(parent, MutationConfig(fcm=True), draws=700, seed=41)
    keys = sorted(set(fast) | set(reference))
    common = [k for k in keys if fast[k] + reference[k] >= 10]  # rare cells pooled, as the test requires
    table = [[fast[k] for k in common] + [sum(fast[k] for k in keys if k not in common)],
             [reference[k] for k in common] + [sum(reference[k] for k in keys if k not in common)]]
    table = [row for row in zip(*table) if sum(row) > 0]
    p_value = chi2_contingency(list(zip(*table)))[1]
    assert p_value > 1e-3, (p_value, fast.most_common(8), reference.most_common(8))


def _count_hashed_statements(monkeypatch, limit: int) -> list[int]:
    """Make every functional_hash record the length of what it hashes, failing once ``limit`` statements are passed."""
    import hashing

    hashed: list[int] = []
    real = hashing.functional_hash

    def counting(candidate, config=None):
        hashed.append(len(candidate))
        assert sum(hashed) <= limit, f"FCM hashed {sum(hashed):,} statements"
        return real(candidate, config)

    monkeypatch.setattr(hashing, "functional_hash", counting)
    return hashed


def test_fcm_does_not_hash_children_that_edit_only_dead_code(monkeypatch):
    # Before: one FCM mutation of a 3,000-statement program took 312 s, hashing up to 1,000 children.
    parent = _chain(300, live_tail=2)  # 298 dead statements
    hashed = _count_hashed_statements(monkeypatch, limit=20 * len(parent))
    child, _ = mutate_with_info(parent, np.random.default_rng(23), MutationConfig(fcm=True))
    check(child)
    assert hashed, "FCM must still hash children whose live code changed"


def test_fcm_hashes_at_most_its_budget(monkeypatch):
    # Live edits that keep the hash (a live chain multiplied by zero) make FCM try on: the budget stops it.
    dead_weight = [Statement(f"k{i}", "add", (f"k{i - 1}" if i else "g", "m")) for i in range(150)]
    parent = Program(tuple(dead_weight) + (
        Statement("z", "mul", ("k149", 0.0)),
        Statement("s", "sign", ("z",)),
        Statement("y", "add", ("g", "s")),
        Statement("update", "mul", ("y", "lr")),
    ))
    config = MutationConfig(fcm=True, fcm_budget=2_000, insert_weight=0, delete_weight=0)
    hashed = _count_hashed_statements(monkeypatch, limit=config.fcm_budget)
    child, _ = mutate_with_info(parent, np.random.default_rng(24), config)
    check(child)
    assert sum(hashed) <= config.fcm_budget and len(hashed) >= 2


def _programs_with_dead_code(seed: int, count: int = 80) -> list[Program]:
    """Library programs, random programs and their FCM children (dead code accumulates as in a search)."""
    rng = np.random.default_rng(seed)
    found = LIBRARY + [random_program(rng, int(rng.integers(1, 16))) for _ in range(count)]
    for _ in range(3):
        found += [mutate(p, rng, MutationConfig(fcm=True)) for p in found[-count:]]
    return found


def test_deleting_a_statement_read_by_nobody_before_its_rewrite_keeps_the_program_valid():
    from programs.mutation import _unread_until_rewritten

    decided = 0
    for program in _programs_with_dead_code(31):
        for index in range(len(program)):
            verdict = _unread_until_rewritten(program, index)
            child = program.replace_statements(program.statements[:index] + program.statements[index + 1:])
            if verdict is not None:
                decided += 1
                assert verdict and is_valid(child), (program.to_text(), index)
    assert decided > 200


def test_an_insert_of_a_fresh_variable_is_dead_and_valid():
    from programs.mutation import _fresh, _live_code, _types_before, types_before

    rng = np.random.default_rng(32)
    for program in _programs_with_dead_code(33, count=30):
        target = _fresh(program)
        assert target not in program.names()
        for index in range(len(program) + 1):
            assert _types_before(program, index) == types_before(program, index)
            env = types_before(program, index)
            fn = str(rng.choice(list(programs.PRIMITIVES)))
            args = tuple(str(rng.choice(list(env))) if rng.random() < 0.8 else 0.5
                         for _ in range(programs.PRIMITIVES[fn].arity))
            child = program.replace_statements(
                program.statements[:index] + (Statement(target, fn, args),) + program.statements[index:])
            assert is_valid(child) and _live_code(child) == _live_code(program), (program.to_text(), index)


def test_fcm_that_finds_no_valid_live_edit_draws_among_all_edits():
    # the live update cannot be deleted (invalid) and nothing else is allowed: the live draws find no valid edit,
    # and FCM goes on with the full draw, whose dead delete it returns when its tries run out
    parent = Program((Statement("update", "mul", ("g", "lr")), Statement("x", "exp", ("w",))))
    config = MutationConfig(fcm=True, fcm_tries=3, insert_weight=0, modify_weight=0, edit_tries=20)
    child, info = mutate_with_info(parent, np.random.default_rng(5), config)
    assert child == Program((Statement("update", "mul", ("g", "lr")),)) and info.kind == "delete"
