"""The program IR: a straight-line list of statements, each calling one primitive.

A ``Program`` is immutable and hashable; its canonical text (``to_text``) round-trips through ``programs.parse``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, TypeVar, Union

from programs.primitives import PRIMITIVES

Arg = Union[str, float]  # a variable name or a numeric constant
T = TypeVar("T")

TENSOR_INPUTS = ("w", "g", "m", "v")
STATE = ("m", "v")
SIGNATURE = ("w", "g", "m", "v", "lr")
SIGNATURE_WITH_STEP = ("w", "g", "m", "v", "lr", "t")
# The most statements a program may have where programs enter (parsing, mutation, random programs): it bounds the
# driver's own work per candidate (abstract execution, hashing, mutation, simplification are linear in it).
MAX_STATEMENTS = 1_000


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # a dataclass's field names (``fields()`` is slow to call per hash)


def _cached_hash(self: Any) -> int:
    """The dataclass hash (of the fields' tuple), computed once per object: these objects are immutable."""
    try:
        return self.__dict__["_hash"]
    except KeyError:
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in fields(self))
        value = hash(tuple([getattr(self, name) for name in names]))
        object.__setattr__(self, "_hash", value)
        return value


def _state_without_hash(self: Any) -> dict[str, Any]:
    """Pickled state: the fields alone, not what is cached on the object (a string hash differs between processes;
    derived values are recomputed where needed)."""
    return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass(frozen=True)
class Statement:
    """``target = fn(*args)``."""

    target: str
    fn: str
    args: tuple[Arg, ...]

    def __post_init__(self) -> None:
        assert self.fn in PRIMITIVES, f"unknown primitive {self.fn!r}"
        assert len(self.args) == PRIMITIVES[self.fn].arity, f"{self.fn} takes {PRIMITIVES[self.fn].arity} arguments"
        object.__setattr__(self, "args", tuple(a if isinstance(a, str) else float(a) for a in self.args))

    __hash__ = _cached_hash  # statements are shared by a parent and its children: hashed once each
    __getstate__ = _state_without_hash

    def variables(self) -> tuple[str, ...]:
        """The variable names this statement reads (computed once: liveness asks for them on every mutation)."""
        try:
            return self.__dict__["_variables"]
        except KeyError:
            found = tuple(a for a in self.args if isinstance(a, str))
            object.__setattr__(self, "_variables", found)
            return found

    def to_text(self) -> str:
        """``target = fn(args)`` (or ``a op b``); rendered once per object: a parent's statements are its
        children's, and every candidate's text is written to the database and sent to a worker."""
        try:
            return self.__dict__["_text"]
        except KeyError:
            symbol = PRIMITIVES[self.fn].operator
            args = [_format_arg(a) for a in self.args]
            if symbol is not None:
                text = f"{self.target} = {args[0]} {symbol} {args[1]}"
            else:
                text = f"{self.target} = {self.fn}({', '.join(args)})"
            object.__setattr__(self, "_text", text)
            return text


@dataclass(frozen=True)
class Program:
    """``def train(w, g, m, v, lr[, t]): <statements>; return update, m, v``.

    ``inputs`` is the signature (with or without the step ``t``); ``outputs`` names the variables returned as
    (update, m, v). The caller applies ``w = w - update``; ``m`` and ``v`` are carried to the next step.
    """

    statements: tuple[Statement, ...]
    outputs: tuple[str, str, str] = ("update", "m", "v")
    inputs: tuple[str, ...] = SIGNATURE

    def __post_init__(self) -> None:
        object.__setattr__(self, "statements", tuple(self.statements))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        assert self.inputs in (SIGNATURE, SIGNATURE_WITH_STEP), f"bad signature {self.inputs}"
        assert len(self.outputs) == 3, "a program returns (update, m, v)"

    __hash__ = _cached_hash  # a program is a dict key of memos and caches; hashed once
    __getstate__ = _state_without_hash

    def __len__(self) -> int:
        return len(self.statements)

    def derived(self, name: str, compute: Callable[[Program], T]) -> T:
        """``compute(self)``, computed once per object under ``name`` and kept on it (never pickled): a program is
        immutable, and the driver asks several times for what follows from it (its live statements: FCM, the
        functional hash and the lr probe each need them for every child)."""
        key = "_" + name
        try:
            return self.__dict__[key]
        except KeyError:
            value = compute(self)
            object.__setattr__(self, key, value)
            return value

    @property
    def uses_step(self) -> bool:
        return "t" in self.inputs

    def constants(self) -> tuple[float, ...]:
        return tuple(a for s in self.statements for a in s.args if not isinstance(a, str))

    def names(self) -> set[str]:
        """Every variable name that appears in the program."""
        found = set(self.inputs) | set(self.outputs)
        for s in self.statements:
            found.add(s.target)
            found.update(s.variables())
        return found

    def to_text(self) -> str:
        """The canonical text (computed once per object, see ``derived``)."""
        return self.derived("text", _render)

    def __str__(self) -> str:
        return self.to_text()

    def replace_statements(self, statements: tuple[Statement, ...] | list[Statement]) -> "Program":
        return Program(tuple(statements), self.outputs, self.inputs)


def _render(program: Program) -> str:
    lines = [f"def train({', '.join(program.inputs)}):"]
    lines += [f"    {s.to_text()}" for s in program.statements]
    lines.append(f"    return {', '.join(program.outputs)}")
    return "\n".join(lines) + "\n"


def _format_arg(arg: Arg) -> str:
    if isinstance(arg, str):
        return arg
    return repr(float(arg))
