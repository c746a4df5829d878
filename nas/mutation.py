"""Mutation of genotypes and random genotypes, for evolutionary NAS (Real et al. 2019, related work).

Two mutations, each a plain function ``(genotype, rng) -> (child, description)`` that works on DARTS-space
``Genotype``s (a cell, normal or reduce, drawn uniformly) and on ``NB201Genotype``s:

- ``mut_op``: one edge gets another operation of the space;
- ``mut_edge``: one edge reads another input node. In a DARTS cell an ``(op, input)`` pair takes another input
  below its node, preferring one its sibling pair does not read (DARTS cells read two distinct nodes). A NAS-Bench-201
  cell has every edge, so rewiring moves an operation: two inputs of one node swap their (different) operations, so
  the op on ``i → j`` now reads ``i'``. A cell with nothing to swap (every node reading all its inputs through one op)
  gets ``mut_op`` instead, and the description says so.

``mutate`` draws one of the two with equal probability (Real et al.'s op and hidden-state mutations). Every child
is a valid genotype of the same space and differs from its parent as text; with ``fcm=True`` (as for programs) the
parent is re-mutated until the child's functional hash differs too. All randomness comes from the generator passed
in: the same generator state gives the same child.
"""

from __future__ import annotations

from typing import Sequence, TypeVar, Union

import numpy as np

from nas.errors import GenotypeError
from nas.genotypes import CELLS, N_INPUTS, Genotype
from nas.nb201 import NB201_NODES, NB201Genotype
from nas.spaces import DARTS_PRIMITIVES, NB201_PRIMITIVES

AnyGenotype = Union[Genotype, NB201Genotype]
G = TypeVar("G", Genotype, NB201Genotype)

DARTS_MUTATION_OPS: tuple[str, ...] = tuple(op for op in DARTS_PRIMITIVES if op != "none")
"""Operations a DARTS-space mutation draws from: derived DARTS cells never hold ``none``."""

FCM_TRIES = 20  # re-mutations before an equivalent child is accepted (tiny cells may have no other neighbour)


def mutate(genotype: G, rng: np.random.Generator, *, primitives: Sequence[str] | None = None,
           fcm: bool = False) -> tuple[G, str]:
    """``mut_op`` or ``mut_edge`` with equal probability. With ``fcm``, re-mutate (up to ``FCM_TRIES`` times) until
    the child's functional hash differs from the parent's; the description then ends with the number of tries."""
    if not fcm:
        return _mutate_once(genotype, rng, primitives)
    from hashing import functional_hash

    parent_hash = functional_hash(genotype)
    for tries in range(1, FCM_TRIES + 1):
        child, description = _mutate_once(genotype, rng, primitives)
        if functional_hash(child) != parent_hash:
            break
    return child, description if tries == 1 else f"{description} (fcm: {tries} tries)"


def _mutate_once(genotype: G, rng: np.random.Generator, primitives: Sequence[str] | None) -> tuple[G, str]:
    if rng.random() < 0.5:
        return mut_op(genotype, rng, primitives=primitives)
    return mut_edge(genotype, rng, primitives=primitives)


def mut_op(genotype: G, rng: np.random.Generator, *, primitives: Sequence[str] | None = None) -> tuple[G, str]:
    """One edge, drawn uniformly, gets an operation of ``primitives`` (default: the space's) other than its own."""
    ops = _primitives(genotype, primitives)
    if isinstance(genotype, NB201Genotype):
        j, i = _nb201_edges()[int(rng.integers(len(_nb201_edges())))]
        old = genotype.ops[j - 1][i]
        new = _other(ops, old, rng)
        return _nb201_with(genotype, {(j, i): new}), f"op node {j} input {i}: {old} -> {new}"
    cell = CELLS[int(rng.integers(len(CELLS)))]
    edges = list(getattr(genotype, cell))
    k = int(rng.integers(len(edges)))
    old, source = edges[k]
    new = _other(ops, old, rng)
    edges[k] = (new, source)
    return _darts_with(genotype, cell, edges), f"op {cell} node {k // 2 + N_INPUTS} edge {k % 2}: {old} -> {new}"


def mut_edge(genotype: G, rng: np.random.Generator, *, primitives: Sequence[str] | None = None) -> tuple[G, str]:
    """One edge, drawn uniformly, reads another input node (see the module docstring); ``primitives`` only serve
    the NAS-Bench-201 fallback to ``mut_op``."""
    if isinstance(genotype, NB201Genotype):
        return _nb201_rewire(genotype, rng, primitives)
    cell = CELLS[int(rng.integers(len(CELLS)))]
    edges = list(getattr(genotype, cell))
    k = int(rng.integers(len(edges)))
    op, old = edges[k]
    node = k // 2 + N_INPUTS
    sibling = edges[k ^ 1][1]
    choices = [s for s in range(node) if s not in (old, sibling)] or [s for s in range(node) if s != old]
    new = choices[int(rng.integers(len(choices)))]
    edges[k] = (op, new)
    return _darts_with(genotype, cell, edges), f"edge {cell} node {node} edge {k % 2} ({op}): input {old} -> {new}"


def _nb201_rewire(genotype: NB201Genotype, rng: np.random.Generator,
                  primitives: Sequence[str] | None) -> tuple[NB201Genotype, str]:
    pairs = [(j, a, b) for j, row in enumerate(genotype.ops, start=1)
             for a in range(j) for b in range(a + 1, j) if row[a] != row[b]]
    if not pairs:
        child, description = mut_op(genotype, rng, primitives=primitives)
        return child, f"{description} (no edge to rewire)"
    j, a, b = pairs[int(rng.integers(len(pairs)))]
    row = genotype.ops[j - 1]
    child = _nb201_with(genotype, {(j, a): row[b], (j, b): row[a]})
    return child, f"edge node {j}: {row[a]} input {a} -> {b}, {row[b]} input {b} -> {a}"


# -- random genotypes ---------------------------------------------------------------------------------------------


def random_genotype(rng: np.random.Generator, *, steps: int = 4,
                    primitives: Sequence[str] = DARTS_MUTATION_OPS) -> Genotype:
    """A random DARTS-space genotype: per cell and node two distinct inputs (drawn uniformly among the states
    below it) with an operation each drawn uniformly from ``primitives``; every node concatenated."""
    if steps < 1:
        raise GenotypeError(f"a cell needs at least one intermediate node, got steps={steps}")
    cells = {cell: _random_cell(rng, steps, primitives) for cell in CELLS}
    concat = tuple(range(N_INPUTS, N_INPUTS + steps))
    return Genotype(cells["normal"], concat, cells["reduce"], concat)


def random_nb201(rng: np.random.Generator, *, primitives: Sequence[str] = NB201_PRIMITIVES) -> NB201Genotype:
    """A random NAS-Bench-201 cell: each of the 6 edges gets an operation drawn uniformly from ``primitives``."""
    ops = list(primitives)
    return NB201Genotype(tuple(tuple(ops[int(rng.integers(len(ops)))] for _ in range(j))
                               for j in range(1, NB201_NODES)))


def _random_cell(rng: np.random.Generator, steps: int, primitives: Sequence[str]) -> list[tuple[str, int]]:
    ops = list(primitives)
    edges = []
    for node in range(N_INPUTS, N_INPUTS + steps):
        for source in sorted(int(s) for s in rng.choice(node, size=2, replace=False)):
            edges.append((ops[int(rng.integers(len(ops)))], source))
    return edges


# -- helpers ------------------------------------------------------------------------------------------------------


def _primitives(genotype: AnyGenotype, primitives: Sequence[str] | None) -> tuple[str, ...]:
    if primitives is not None:
        ops = tuple(primitives)
    else:
        ops = NB201_PRIMITIVES if isinstance(genotype, NB201Genotype) else DARTS_MUTATION_OPS
    if len(ops) < 2:
        raise GenotypeError(f"mutating an operation needs at least two primitives, got {list(ops)}")
    return ops


def _other(ops: Sequence[str], old: str, rng: np.random.Generator) -> str:
    choices = [op for op in ops if op != old]
    return choices[int(rng.integers(len(choices)))]


def _nb201_edges() -> tuple[tuple[int, int], ...]:
    return tuple((j, i) for j in range(1, NB201_NODES) for i in range(j))


def _nb201_with(genotype: NB201Genotype, changes: dict[tuple[int, int], str]) -> NB201Genotype:
    return NB201Genotype(tuple(tuple(changes.get((j, i), op) for i, op in enumerate(row))
                               for j, row in enumerate(genotype.ops, start=1)))


def _darts_with(genotype: Genotype, cell: str, edges: list[tuple[str, int]]) -> Genotype:
    fields = {c: getattr(genotype, c) for c in CELLS}
    fields[cell] = tuple(edges)
    return Genotype(fields["normal"], genotype.normal_concat, fields["reduce"], genotype.reduce_concat)
