"""Simplification of optimizer programs (Chen et al. 2023, Lion, step 1 and the renaming of step 3).

``simplify`` drops every statement the returned update does not depend on, across steps, then renames canonically.
The dependencies form a dataflow graph (networkx): a node per input, per statement and per output, an edge from each
value to the statements and outputs that read it, and an edge from the output ``m`` (``v``) to the input ``m``
(``v``) of the next step. The live statements are the ancestors of the output update; reachability closes the
fixpoint across steps by itself (a live read of input ``m`` makes the statements producing the returned ``m``
live, and so on). A dead state is returned unchanged (``return ..., m, v``) and costs no buffer.

Renaming is SSA-style: the kept statements write ``x1, x2, ...`` in order, each name once, except that the returned
update is written as ``update`` and a returned state as ``m``/``v`` when no later statement still reads the input of
that name.
The signature drops ``t`` when nothing live reads it. The optimizer trajectory is unchanged: from any states, every
step gives the same update, and the same live states.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from programs.analysis import check
from programs.program import SIGNATURE, STATE, Program, Statement

UPDATE = "update"
Node = tuple[str, object]  # ("in", name) | ("stmt", index) | ("out", role)


@dataclass(frozen=True)
class SimplifyReport:
    """The result of ``simplify`` with what it found.

    ``removed`` lists the 0-based indices of the dropped statements of the original; ``live_state`` names the state
    buffers the simplified program really carries (``m``, ``v`` or neither): its memory cost in buffers, against
    AdamW's two.
    """

    program: Program
    original_length: int
    removed: tuple[int, ...]
    live_state: tuple[str, ...]

    @property
    def buffers(self) -> int:
        return len(self.live_state)

    @property
    def redundancy(self) -> float:
        """The fraction of the original statements that were removed (0 for an empty program)."""
        return len(self.removed) / self.original_length if self.original_length else 0.0


def simplify(program: Program) -> Program:
    """``program`` without dead statements, canonically renamed; its update trajectory is unchanged."""
    return simplify_report(program).program


def redundancy_fraction(program: Program) -> float:
    """The fraction of ``program``'s statements that ``simplify`` removes (the Lion paper reports ~70% in searches)."""
    return simplify_report(program).redundancy


def simplify_report(program: Program) -> SimplifyReport:
    """Simplify a valid ``program`` (``ProgramError`` otherwise) and report what was removed and which state lives."""
    check(program)
    graph = dataflow_graph(program)
    live = nx.ancestors(graph, ("out", UPDATE)) | {("out", UPDATE)}
    kept = [i for i in range(len(program)) if ("stmt", i) in live]
    live_state = tuple(name for name in STATE if ("out", name) in live)
    simplified = _rename(program, kept, live_state)
    removed = tuple(i for i in range(len(program)) if ("stmt", i) not in live)
    return SimplifyReport(simplified, len(program), removed, live_state)


def dataflow_graph(program: Program) -> nx.DiGraph:
    """Def-use edges of one step plus the step-to-step edges ``("out", s) -> ("in", s)`` for the states ``m, v``."""
    graph = nx.DiGraph()
    definition: dict[str, Node] = {name: ("in", name) for name in program.inputs}
    graph.add_nodes_from(definition.values())
    for index, statement in enumerate(program.statements):
        node: Node = ("stmt", index)
        graph.add_node(node)
        graph.add_edges_from((definition[name], node) for name in statement.variables())
        definition[statement.target] = node
    for role, name in zip((UPDATE,) + STATE, program.outputs):
        graph.add_edge(definition[name], ("out", role))
    graph.add_edges_from((("out", state), ("in", state)) for state in STATE)
    return graph


def _rename(program: Program, kept: list[int], live_state: tuple[str, ...]) -> Program:
    """SSA names for the kept statements; see the module docstring for the preferred names."""
    inputs = program.inputs
    names = {name: name for name in inputs}  # current name in the original -> name in the simplified program
    statements = [program.statements[i] for i in kept]
    finals = _final_writers(program, kept)
    preferred = _preferred_names(statements, finals, live_state)
    renamed: list[Statement] = []
    counter = 0
    for position, statement in enumerate(statements):
        args = tuple(names[a] if isinstance(a, str) else a for a in statement.args)
        if position in preferred:
            target = preferred[position]
        else:
            counter += 1
            target = f"x{counter}"
        names[statement.target] = target
        renamed.append(Statement(target, statement.fn, args))
    outputs = tuple(
        names[name] if role == UPDATE or role in live_state else role
        for role, name in zip((UPDATE,) + STATE, program.outputs)
    )
    if "t" in inputs and not any("t" in s.variables() for s in renamed) and "t" not in outputs:
        inputs = SIGNATURE
    return Program(tuple(renamed), outputs, inputs)  # type: ignore[arg-type]


def _final_writers(program: Program, kept: list[int]) -> dict[str, int | None]:
    """For each output role, the position (among the kept statements) of the statement whose value is returned, or
    None when an input is returned unchanged."""
    last: dict[str, int] = {}
    for position, index in enumerate(kept):
        last[program.statements[index].target] = position
    return {role: last.get(name) for role, name in zip((UPDATE,) + STATE, program.outputs)}


def _preferred_names(
    statements: list[Statement], finals: dict[str, int | None], live_state: tuple[str, ...]
) -> dict[int, str]:
    """``update`` for the returned update's statement; ``m``/``v`` for a returned live state's statement when the
    input of that name is not read after it (and the statement is not already named)."""
    preferred: dict[int, str] = {}
    if finals[UPDATE] is not None:
        preferred[finals[UPDATE]] = UPDATE
    for state in live_state:
        position = finals[state]
        if position is None or position in preferred:
            continue
        if _last_input_read(statements, state) <= position:
            preferred[position] = state
    return preferred


def _last_input_read(statements: list[Statement], name: str) -> int:
    """The position of the last statement that reads the *input* ``name`` (before any statement rewrites it), or -1."""
    last = -1
    for position, statement in enumerate(statements):
        if name in statement.variables():
            last = position
        if statement.target == name:
            break  # later reads see the rewritten value
    return last


def live_indices(program: Program) -> tuple[int, ...]:
    """The 0-based indices of the statements the returned update depends on, across steps (the statements
    ``simplify`` keeps), in one backward pass per live output: linear, no graph.

    The same set as the ancestors of the update in ``dataflow_graph``; mutation calls it on every FCM child, and
    the functional hash and the lr probe on the same child again: computed once per program object.
    """
    return program.derived("live_indices", _live_indices)


def _live_indices(program: Program) -> tuple[int, ...]:
    statements = program.statements
    live: set[int] = set()
    roots = [0]  # output positions to trace: the update, then each state whose input a live statement reads
    traced: set[int] = set()
    while roots:
        role = roots.pop()
        traced.add(role)
        needed = {program.outputs[role]}
        for index in range(len(statements) - 1, -1, -1):
            statement = statements[index]
            if statement.target in needed:
                needed.discard(statement.target)
                needed.update(statement.variables())
                live.add(index)
        for role_of_state, state in enumerate(STATE, start=1):
            if state in needed and role_of_state not in traced and role_of_state not in roots:
                roots.append(role_of_state)
    return tuple(sorted(live))
