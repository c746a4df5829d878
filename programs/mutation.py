"""Mutation of optimizer programs and random programs (Chen et al. 2023, Lion).

Three edits, drawn with weights 1:1:1 by default: *insert* a random statement, *delete* one, *modify* one argument.
A modified constant is replaced by a draw from N(0, 1) or multiplied by 2^a, a ~ N(0, 1), and clipped to ±1e10; a
modified variable is swapped only for another variable of the same type (scalar/tensor) defined at that point, so a
modification never changes any type. Edits that abstract execution rejects are drawn again, so every child passes
``programs.analysis.check``. With ``fcm=True`` (functionally-equivalent-mutation avoidance) the parent is re-mutated
until the child's functional hash differs from the parent's.

The driver's work per child is bounded: no edit grows a program past ``MAX_STATEMENTS``; every edit and check is
linear in the program's length; FCM hashes only children whose live statements (those the update depends on) differ
from the parent's — an edit of dead code keeps the behaviour, hence the hash — and hashes at most ``fcm_budget``
statements per mutation.

All randomness comes from the ``numpy.random.Generator`` passed in: the same generator state gives the same child.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Callable

import numpy as np

from programs.analysis import input_types
from programs.errors import ProgramError
from programs.primitives import ALIASES, CONSTANT_LIMIT, PRIMITIVES, result_kind
from programs.program import MAX_STATEMENTS, STATE, Arg, Program, Statement
from programs.simplify import live_indices

INSERT, DELETE, MODIFY = "insert", "delete", "modify"
KINDS = (INSERT, DELETE, MODIFY)


@dataclass(frozen=True)
class MutationConfig:
    """How children and random programs are drawn.

    ``insertion=False`` turns insertion off (simplification by evolution: only deletions and modifications).
    ``fcm=True`` re-mutates up to ``fcm_tries`` times until the functional hash differs from the parent's, hashing
    at most ``fcm_budget`` statements in all (parent and children; children that only edit dead code cost none).
    ``edit_tries`` bounds the redraws of invalid edits before ``ProgramError`` is raised.
    ``max_statements``: insertion is off for a program this long (at most ``MAX_STATEMENTS``).
    """

    insert_weight: float = 1.0
    delete_weight: float = 1.0
    modify_weight: float = 1.0
    insertion: bool = True
    fcm: bool = False
    fcm_tries: int = 1000
    fcm_budget: int = 50_000
    edit_tries: int = 1000
    max_statements: int = MAX_STATEMENTS
    constant_probability: float = 0.2  # an inserted argument is a constant ~ N(0, 1) rather than a variable
    new_variable_probability: float = 0.5  # an inserted statement writes a fresh variable rather than an existing one
    state_probability: float = 0.3  # random_program: a statement writes m or v
    functions: tuple[str, ...] = field(default_factory=lambda: tuple(PRIMITIVES))

    def __post_init__(self) -> None:
        weights = (self.insert_weight, self.delete_weight, self.modify_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"mutation weights must be >= 0 with a positive sum, got {weights}")
        unknown = [name for name in self.functions if name not in PRIMITIVES]
        if unknown or not self.functions:
            raise ValueError(f"unknown or no functions in MutationConfig.functions: {unknown}")
        if self.fcm_tries < 1 or self.edit_tries < 1 or self.fcm_budget < 1:
            raise ValueError("fcm_tries, fcm_budget and edit_tries must be >= 1")
        if not 1 <= self.max_statements <= MAX_STATEMENTS:
            raise ValueError(f"MutationConfig.max_statements must be in 1..{MAX_STATEMENTS}, got {self.max_statements}")


@dataclass(frozen=True)
class Mutation:
    """What one mutation did, for lineage: ``kind`` (insert/delete/modify), the 0-based ``index`` of the statement in
    the parent (for insert: its position in the child) and a short ``detail`` such as ``"modify 3: 0.9 -> 0.95"``."""

    kind: str
    index: int
    detail: str


_DEFAULT = MutationConfig()


def mutate(program: Program, rng: np.random.Generator, config: MutationConfig | None = None) -> Program:
    """A valid child of ``program`` made by one insert/delete/modify edit (see ``mutate_with_info``)."""
    return mutate_with_info(program, rng, config)[0]


def mutate_with_info(
    program: Program, rng: np.random.Generator, config: MutationConfig | None = None
) -> tuple[Program, Mutation]:
    """A valid child of ``program`` and the record of its edit.

    Raises ``ProgramError`` when no valid edit is found in ``config.edit_tries`` draws (e.g. an empty program with
    insertion turned off). With ``config.fcm`` the child differs functionally from the parent when one of
    ``config.fcm_tries`` children does (within ``config.fcm_budget`` hashed statements); otherwise the last child is
    returned.
    """
    config = config or _DEFAULT
    table = _kind_table(program, config)
    if not config.fcm:
        return _edit(program, rng, config, table).finish()
    from hashing import functional_hash  # lazy: hashing sits beside programs and registers a program runner

    live = live_indices(program)
    parent_live = (tuple(program.statements[i] for i in live), program.inputs, program.outputs)
    dead = frozenset(range(len(program))).difference(live)
    live_draws = _live_draws(program, config, live)
    parent_hash: str | None = None  # hashed on the first child whose live code differs
    budget = config.fcm_budget
    for attempt in range(config.fcm_tries):
        last = attempt == config.fcm_tries - 1
        if live_draws is not None and not last:
            # Only edits that can change the live code are drawn (see ``_live_draws``): an edit of dead code
            # keeps the behaviour, so FCM would reject it anyway, and in a bloated program most edits are such.
            try:
                edit = _edit(program, rng, config, live_draws.table, live=live_draws)
            except ProgramError:  # no valid edit of the live code: draw among all edits from here on
                live_draws = None
                continue
        else:
            # An edit of a dead statement is drawn, then dropped without building the child. The last try is
            # always built: it is returned if none differs.
            edit = _edit(program, rng, config, table, None if last else dead)
        if edit.child is None or _live_code(edit.child) == parent_live:
            continue  # only dead code changed: the same behaviour, so the same hash (simplify keeps the hash)
        cost = len(edit.child) + (len(program) if parent_hash is None else 0)
        if cost > budget:
            break
        budget -= cost
        if parent_hash is None:
            parent_hash = functional_hash(program)
        if functional_hash(edit.child) != parent_hash:
            break
    return edit.finish()


@dataclass(frozen=True)
class _LiveDraws:
    """FCM's draws restricted to edits that can change the live code, in the proportions of the full draw.

    An edit of a whole program is (kind, details): delete and modify pick a statement uniformly (modify: among those
    with arguments), insert picks its target last, a fresh variable with ``new_variable_probability``. The edits that
    leave the live code as it is, and that FCM therefore rejects, are exactly the deletes and modifies of a dead
    statement and the inserts of a fresh variable (plus some built edits that the live-code check still rejects).
    Drawing the kind with weight ``weight x P(not such an edit | kind)``, then the statement uniformly among the live
    ones (the target among the existing variables), gives the distribution of the full draw conditioned on not being
    such an edit: the children FCM would return, without drawing the edits it would drop (in a converged search
    ~70 % of a program is dead and they were ~9 draws per mutation). Invalid edits are drawn again, kind included,
    as in the full draw. The random stream differs from the full draw's; the distribution is the same (tested).
    """

    table: tuple[list[str], list[float]]
    statements: tuple[int, ...]  # the live statements (delete)
    with_args: tuple[int, ...]  # the live statements with arguments (modify)


def _live_draws(program: Program, config: MutationConfig, live: tuple[int, ...]) -> _LiveDraws | None:
    """The full draw's kind weights (``_kind_weights``), each times the chance that an edit of its kind can change
    the live code; None when no kind can."""
    statements = program.statements
    with_args = tuple(i for i in live if statements[i].args)
    weights = _kind_weights(program, config)
    if INSERT in weights:
        weights[INSERT] = weights[INSERT] * (1.0 - config.new_variable_probability)
    if DELETE in weights:
        weights[DELETE] = weights[DELETE] * len(live) / len(statements)
    if MODIFY in weights:
        weights[MODIFY] = weights[MODIFY] * len(with_args) / sum(1 for s in statements if s.args)
    table = _table(weights)
    return _LiveDraws(table, tuple(live), with_args) if table[0] else None


def _live_code(program: Program) -> tuple[tuple[Statement, ...], tuple[str, ...], tuple[str, str, str]]:
    """What a program's behaviour depends on: its live statements (in order), signature and outputs."""
    statements = program.statements
    return tuple(statements[i] for i in live_indices(program)), program.inputs, program.outputs


@dataclass(frozen=True)
class _Edit:
    """A drawn edit: the child (None: an edit of dead code not built, see ``mutate_with_info``) and its record,
    whose text is rendered only for the child returned."""

    child: Program | None
    kind: str
    index: int
    describe: Callable[[], str]

    def finish(self) -> tuple[Program, Mutation]:
        assert self.child is not None, "the returned edit is always built"
        return self.child, Mutation(self.kind, self.index, self.describe())


def _edit(program: Program, rng: np.random.Generator, config: MutationConfig, table: tuple[list[str], list[float]],
          dead: frozenset[int] | None = None, live: _LiveDraws | None = None) -> _Edit:
    """One valid edit. ``dead`` (FCM): the parent's dead statements; an edit that cannot change the live code is
    drawn (the same random numbers) but not built (``child`` None). None: every child is built. ``live`` (FCM):
    only edits that can change the live code are drawn (``_LiveDraws``; ``table`` is its kind table)."""
    kinds, cumulative = table
    if not kinds:
        raise ProgramError(f"cannot mutate a program of {len(program)} statements with insertion turned off")
    for _ in range(config.edit_tries):
        kind = kinds[bisect_right(cumulative, rng.random() * cumulative[-1])]
        result = _EDITS[kind](program, rng, config, dead, live)
        if result is not None and (kind == MODIFY or result.child is None or is_valid_fast(result.child)):
            return result  # a modification keeps every type and definition, so its child is valid by construction
    raise ProgramError(f"no valid mutation found in {config.edit_tries} tries for a program of {len(program)} statements")


def _kind_table(program: Program, config: MutationConfig) -> tuple[list[str], list[float]]:
    return _table(_kind_weights(program, config))


def _kind_weights(program: Program, config: MutationConfig) -> dict[str, float]:
    """The weight of each kind of edit ``program`` allows (a kind it does not allow is absent)."""
    weights = {INSERT: config.insert_weight} if config.insertion and len(program) < config.max_statements else {}
    if program.statements:
        weights[DELETE] = config.delete_weight
    if any(s.args for s in program.statements):
        weights[MODIFY] = config.modify_weight
    return weights


def _table(weights: dict[str, float]) -> tuple[list[str], list[float]]:
    """The kinds of positive weight, in ``KINDS`` order, and their cumulative weights (what ``_edit`` draws from)."""
    kinds = [k for k in KINDS if weights.get(k, 0.0) > 0]
    return kinds, list(accumulate(weights[k] for k in kinds))


Edit = Callable[[Program, np.random.Generator, MutationConfig, "frozenset[int] | None", "_LiveDraws | None"],
               "_Edit | None"]


def _insert(program: Program, rng: np.random.Generator, config: MutationConfig, dead: frozenset[int] | None,
            live: _LiveDraws | None = None) -> _Edit:
    index = int(rng.integers(len(program) + 1))
    env = _types_before(program, index)
    fn = config.functions[int(rng.integers(len(config.functions)))]
    args = tuple(_random_arg(env, rng, config) for _ in range(PRIMITIVES[fn].arity))
    target = _random_target(program, rng, config) if live is None else _existing_target(program, rng)
    if dead is not None and target == _fresh(program):
        # A fresh variable is read by no statement and returned by none: the new statement is dead, the live code
        # unchanged, and the child valid (nothing else changes type or loses a definition)
        return _Edit(None, INSERT, index, str)
    statement = Statement(target, fn, args)
    statements = program.statements[:index] + (statement,) + program.statements[index:]
    return _Edit(program.replace_statements(statements), INSERT, index,
                 lambda: f"insert {index}: {statement.to_text()}")


def _delete(program: Program, rng: np.random.Generator, config: MutationConfig, dead: frozenset[int] | None,
            live: _LiveDraws | None = None) -> _Edit:
    index = (int(rng.integers(len(program))) if live is None
             else live.statements[int(rng.integers(len(live.statements)))])
    removed = program.statements[index]
    if dead is not None and index in dead:  # deleting a dead statement leaves the live code as it is; still checked
        valid = _unread_until_rewritten(program, index)
        if valid is None:
            statements = program.statements[:index] + program.statements[index + 1 :]
            valid = is_valid_fast(program.replace_statements(statements))
        return _Edit(None, DELETE, index, str) if valid else None  # type: ignore[return-value]
    statements = program.statements[:index] + program.statements[index + 1 :]
    child = program.replace_statements(statements)
    return _Edit(child, DELETE, index, lambda: f"delete {index}: {removed.to_text()}")


def _unread_until_rewritten(program: Program, index: int) -> bool | None:
    """True when nothing reads what statement ``index`` writes before it is written again, and it is not returned:
    then deleting that statement keeps a valid program valid (no read loses its definition or changes type).
    None when it is read or returned: only a full check (``is_valid_fast`` of the child) can tell."""
    target = program.statements[index].target
    for statement in program.statements[index + 1:]:
        if target in statement.variables():
            return None
        if statement.target == target:
            return True
    return None if target in program.outputs else True


def _modify(program: Program, rng: np.random.Generator, config: MutationConfig,
            dead: frozenset[int] | None, live: _LiveDraws | None = None) -> _Edit | None:
    candidates = [i for i, s in enumerate(program.statements) if s.args] if live is None else live.with_args
    index = candidates[int(rng.integers(len(candidates)))]
    statement = program.statements[index]
    position = int(rng.integers(len(statement.args)))
    old = statement.args[position]
    if isinstance(old, str):
        new: Arg | None = _swap_variable(_types_before(program, index), old, rng)
        if new is None:
            return None  # no other variable of the same type is defined here: draw another edit
    else:
        new = _perturb_constant(old, rng)
    if dead is not None and index in dead:  # a dead statement stays dead whatever its arguments
        return _Edit(None, MODIFY, index, str)
    args = statement.args[:position] + (new,) + statement.args[position + 1 :]
    modified = Statement(statement.target, statement.fn, args)
    statements = program.statements[:index] + (modified,) + program.statements[index + 1 :]
    return _Edit(program.replace_statements(statements), MODIFY, index,
                 lambda: f"modify {index}: {_show(old)} -> {_show(new)}")


_EDITS: dict[str, Edit] = {INSERT: _insert, DELETE: _delete, MODIFY: _modify}


_ENVS: list = [None, {}]  # the program last asked about and its environments by index (read-only dicts)


def _types_before(program: Program, index: int) -> dict[str, bool]:
    """``types_before``, memoised for the program being mutated: FCM draws several edits of one parent, each of
    which asks for the environment at its index. The dict returned is shared: read it, never change it."""
    if _ENVS[0] is not program:
        _ENVS[0], _ENVS[1] = program, {}
    envs: dict[int, dict[str, bool]] = _ENVS[1]
    env = envs.get(index)
    if env is None:
        env = envs[index] = types_before(program, index)
    return env


def types_before(program: Program, index: int) -> dict[str, bool]:
    """Types (True: tensor) of the variables defined before statement ``index`` of a valid program, in order of
    first definition (so that draws from it are reproducible)."""
    env = input_types(program)
    for statement in program.statements[:index]:
        arg_types = [isinstance(a, str) and env[a] for a in statement.args]
        env[statement.target] = result_kind(statement.fn, arg_types)
    return env


def is_valid_fast(program: Program) -> bool:
    """``programs.analysis.is_valid`` in one pass without per-statement environments (mutation calls it a lot)."""
    env = input_types(program)
    for statement in program.statements:
        arg_types = []
        for arg in statement.args:
            if isinstance(arg, str):
                if arg not in env:
                    return False
                arg_types.append(env[arg])
            else:
                arg_types.append(False)
        env[statement.target] = result_kind(statement.fn, arg_types)
    return all(env.get(name) is True for name in program.outputs)


def _random_arg(env: dict[str, bool], rng: np.random.Generator, config: MutationConfig) -> Arg:
    if rng.random() < config.constant_probability:
        return _clip(float(rng.normal()))
    names = list(env)
    return names[int(rng.integers(len(names)))]


def _random_target(program: Program, rng: np.random.Generator, config: MutationConfig) -> str:
    if rng.random() < config.new_variable_probability:
        return _fresh(program)
    return _existing_target(program, rng)


def _existing_target(program: Program, rng: np.random.Generator) -> str:
    existing = program.derived("existing_names", lambda p: tuple(dict.fromkeys(
        p.inputs + tuple(s.target for s in p.statements))))
    return existing[int(rng.integers(len(existing)))]


def _fresh(program: Program) -> str:
    """The fresh variable an insertion into ``program`` writes (computed once per program: a parent is mutated
    many times)."""
    return program.derived("fresh_name", lambda p: fresh_name(p.names()))


def fresh_name(taken: set[str] | frozenset[str], prefix: str = "x") -> str:
    """The first of ``x1, x2, ...`` not in ``taken`` (never a function name)."""
    k = 1
    while f"{prefix}{k}" in taken or f"{prefix}{k}" in PRIMITIVES or f"{prefix}{k}" in ALIASES:
        k += 1
    return f"{prefix}{k}"


def _swap_variable(env: dict[str, bool], old: str, rng: np.random.Generator) -> str | None:
    same_type = [name for name, is_tensor in env.items() if is_tensor == env[old] and name != old]
    if not same_type:
        return None
    return same_type[int(rng.integers(len(same_type)))]


def _perturb_constant(value: float, rng: np.random.Generator) -> float:
    if rng.random() < 0.5:
        return _clip(float(rng.normal()))
    return _clip(value * 2.0 ** float(rng.normal()))


def _clip(value: float) -> float:
    return min(max(value, -CONSTANT_LIMIT), CONSTANT_LIMIT)


def _show(arg: Arg) -> str:
    return arg if isinstance(arg, str) else f"{arg:.6g}"


def random_program(rng: np.random.Generator, length: int, config: MutationConfig | None = None) -> Program:
    """A valid random program of ``length`` statements for the random-search baseline.

    Statements call random functions of the variables defined so far (inputs included) and constants; each writes a
    fresh variable, or ``m``/``v`` (with probability ``config.state_probability``, always as a tensor) so that state is
    carried across steps. The last statement writes ``update`` as a tensor. The signature is ``(w, g, m, v, lr)``.
    """
    if not 1 <= length <= MAX_STATEMENTS:
        raise ValueError(f"a random program has 1..{MAX_STATEMENTS} statements (the last is the update), got {length}")
    config = config or _DEFAULT
    env = input_types(Program(()))
    statements: list[Statement] = []
    for position in range(length):
        last = position == length - 1
        if last:
            target = "update"
        elif rng.random() < config.state_probability:
            target = STATE[int(rng.integers(len(STATE)))]
        else:
            target = fresh_name(set(env))
        statement = _random_statement(env, target, rng, config, need_tensor=last or target in STATE)
        env[target] = result_kind(statement.fn, [isinstance(a, str) and env[a] for a in statement.args])
        statements.append(statement)
    return Program(tuple(statements))


def _random_statement(
    env: dict[str, bool], target: str, rng: np.random.Generator, config: MutationConfig, need_tensor: bool
) -> Statement:
    for _ in range(config.edit_tries):
        fn = config.functions[int(rng.integers(len(config.functions)))]
        args = tuple(_random_arg(env, rng, config) for _ in range(PRIMITIVES[fn].arity))
        if not need_tensor or result_kind(fn, [isinstance(a, str) and env[a] for a in args]):
            return Statement(target, fn, args)
    raise ProgramError(f"no tensor-valued statement drawn in {config.edit_tries} tries; check MutationConfig.functions")
