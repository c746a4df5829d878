"""Abstract execution: infer the type (scalar or tensor) of every value and reject invalid programs.

Types flow forward through the statements: ``w, g, m, v`` are tensors, ``lr`` and ``t`` scalars, constants scalars,
and each primitive's kind gives its result type (``programs.primitives.result_kind``). A valid program returns a
tensor update and tensor state, and never reads a variable before it is assigned.

Program text is untrusted, so the analysis is linear in the number of statements: the environments before each
statement are views of one history per variable (``TypeEnvs``), not a copy of the table per statement.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterator, Mapping, Sequence, overload

from programs.errors import ProgramError
from programs.primitives import result_kind
from programs.program import TENSOR_INPUTS, Program

TENSOR = True
SCALAR = False
TypeEnv = Mapping[str, bool]  # variable name -> is it a tensor?


def input_types(program: Program) -> dict[str, bool]:
    return {name: name in TENSOR_INPUTS for name in program.inputs}


class TypeEnvs(Sequence[TypeEnv]):
    """The type environments of a program at each position: ``envs[i]`` before statement ``i``, ``envs[-1]`` after
    the last one (``len(program) + 1`` positions).

    Each environment is a read-only mapping (name -> is it a tensor), iterating in order of first definition. They
    share one history of the (position, type) writes per variable: O(statements) memory, and a lookup costs a binary
    search over that variable's writes.
    """

    def __init__(self, program: Program) -> None:
        """Run the abstract execution; ``ProgramError`` for a read of an unassigned variable."""
        self._order: list[str] = []  # names in order of first definition
        self._first: list[int] = []  # the position of each first definition (non-decreasing)
        self._writes: dict[str, tuple[list[int], list[bool]]] = {}  # name -> positions, types
        env = input_types(program)
        for name, is_tensor in env.items():
            self._write(name, 0, is_tensor)
        for index, statement in enumerate(program.statements):
            arg_types = []
            for arg in statement.args:
                if isinstance(arg, str):
                    if arg not in env:
                        raise ProgramError(
                            f"statement {index + 1} ({statement.to_text()}): {arg!r} is used before it is assigned"
                        )
                    arg_types.append(env[arg])
                else:
                    arg_types.append(SCALAR)
            is_tensor = result_kind(statement.fn, arg_types)
            env[statement.target] = is_tensor
            self._write(statement.target, index + 1, is_tensor)
        self._positions = len(program) + 1

    def _write(self, name: str, position: int, is_tensor: bool) -> None:
        writes = self._writes.get(name)
        if writes is None:
            self._order.append(name)
            self._first.append(position)
            self._writes[name] = ([position], [is_tensor])
            return
        writes[0].append(position)  # positions only grow: each statement writes once, after the inputs
        writes[1].append(is_tensor)

    def __len__(self) -> int:
        return self._positions

    @overload
    def __getitem__(self, position: int) -> TypeEnv: ...

    @overload
    def __getitem__(self, position: slice) -> list[TypeEnv]: ...

    def __getitem__(self, position):
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(self._positions))]
        index = int(position)
        if index < 0:
            index += self._positions
        if not 0 <= index < self._positions:
            raise IndexError(f"position {position} outside 0..{self._positions - 1}")
        return _EnvView(self, index)

    def type_at(self, name: str, position: int) -> bool | None:
        """Whether ``name`` is a tensor before statement ``position``; None when it is not assigned there."""
        writes = self._writes.get(name)
        if writes is None:
            return None
        positions, types = writes
        k = bisect_right(positions, position) - 1
        return types[k] if k >= 0 else None

    def names_at(self, position: int) -> list[str]:
        """The names assigned before statement ``position``, in order of first definition."""
        return self._order[: bisect_right(self._first, position)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TypeEnvs({len(self)} positions, {len(self._order)} names)"


class _EnvView(Mapping[str, bool]):
    """The environment of a ``TypeEnvs`` at one position (read-only, computed on access)."""

    __slots__ = ("_envs", "_position")

    def __init__(self, envs: TypeEnvs, position: int) -> None:
        self._envs = envs
        self._position = position

    def __getitem__(self, name: str) -> bool:
        found = self._envs.type_at(name, self._position)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._envs.type_at(name, self._position) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._envs.names_at(self._position))

    def __len__(self) -> int:
        return bisect_right(self._envs._first, self._position)

    def __repr__(self) -> str:
        return repr(dict(self))


def infer_types(program: Program) -> TypeEnvs:
    """The type environment before each statement, and after the last one (``len(program) + 1`` entries).

    Raises ``ProgramError`` for a read of an unassigned variable. Linear time and memory in ``len(program)``.
    """
    return TypeEnvs(program)


def statement_arg_types(program: Program) -> list[list[bool]]:
    """For each statement, whether each of its arguments is a tensor."""
    envs = infer_types(program)
    return [[isinstance(a, str) and envs.type_at(a, i) is True for a in s.args] for i, s in enumerate(program.statements)]


def check(program: Program) -> TypeEnvs:
    """Validate ``program`` by abstract execution; return its type environments."""
    envs = infer_types(program)
    final = envs[-1]
    for role, name in zip(("update", "m", "v"), program.outputs):
        if name not in final:
            raise ProgramError(f"return: {name!r} ({role}) is never assigned")
        if final[name] is not TENSOR:
            raise ProgramError(f"return: {role} {name!r} is a scalar; the {role} must be a tensor (shaped like w)")
    return envs


def is_valid(program: Program) -> bool:
    try:
        check(program)
    except ProgramError:
        return False
    return True
