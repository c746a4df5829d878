"""Run a program on any array backend: the reference semantics every other path is checked against.

``Plan(program)`` resolves each statement once (primitive, argument slots, whether its reductions act on tensors);
``plan(ops, inputs)`` runs one optimizer step on the backend ``ops`` (see ``programs.primitives``).
``NumpyOps`` is the reference backend: a parameter set is an array ``(..., K, n)`` of K tensors with n entries each.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Callable, NamedTuple

import numpy as np

from programs.analysis import check, input_types
from programs.primitives import PRIMITIVES, result_kind
from programs.program import Arg, Program, Statement


class _Step(NamedTuple):  # a tuple: unpacked for every statement of every probe step
    impl: Callable[..., Any]
    args: tuple[Arg, ...]
    target: str
    reduces_tensors: bool  # False: the statement's reductions act on scalars (identity sums)
    arity: int
    get: Callable[[dict[Any, Any]], Any] | None  # the arguments from the environment (see ``_getter``)
    is_tensor: bool  # the result's type


# A statement resolved once for the types of its arguments, shared by every program that has it: a child shares all
# but one or two statements with its parent, and a plan is built for every program hashed.
_STEPS: dict[tuple[Any, tuple[bool, ...]], _Step] = {}
_STEPS_KEPT = 65536


class ScalarSums:
    """Wraps an ops namespace so that reductions of scalar-typed values are elementwise."""

    def __init__(self, ops: Any) -> None:
        self.xp = ops.xp
        self.clip = ops.clip

    @staticmethod
    def sum_tensor(x: Any) -> Any:
        return x

    @staticmethod
    def sum_global(x: Any) -> Any:
        return x


class Plan:
    """A program resolved for execution; immutable and cheap to call repeatedly."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.steps = _resolve(program)
        self._constants: dict[Any, dict[str, Any]] = {}

    def __call__(self, ops: Any, inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """One step. If ``ops`` has ``scalar`` (a float type), constants and Python-float results are converted to it,
        so that scalar arithmetic follows the backend's rules (numpy: 1/0 is inf, not ZeroDivisionError)."""
        scalar_ops = _scalar_sums(ops)
        scalar = getattr(ops, "scalar", None)
        constants = self._constants.get(scalar)
        if constants is None:
            constants = self._constants[scalar] = {
                _constant_key(a): (a if scalar is None else scalar(a))
                for step in self.steps for a in step.args if not isinstance(a, str)}
        env = {**constants, **inputs}
        for impl, _, target, reduces_tensors, arity, get, _ in self.steps:
            on = ops if reduces_tensors else scalar_ops
            if arity == 1:
                result = impl(on, get(env))
            elif arity:
                result = impl(on, *get(env))
            else:
                result = impl(on)
            # a Python float (a nullary function, or arithmetic of Python-float inputs such as t) becomes the
            # backend's scalar; numpy's float64 (a float subclass) is one already
            env[target] = scalar(result) if scalar is not None and type(result) is float else result
        update, m, v = (env[name] for name in self.program.outputs)
        return update, m, v


def _constant_key(value: float) -> str:
    """A constant's entry in the environment: a name no program can write (a NUL prefix), one per value (``repr``
    tells -0.0 from 0.0), so that every argument is one dict lookup."""
    return f"\0{value!r}"


def _getter(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], Any] | None:
    """The arguments ``keys`` from an environment in one C call: a tuple of them for two or more, the value itself
    for one (``itemgetter``), None for none."""
    return itemgetter(*keys) if keys else None


_SCALAR_SUMS: dict[type, ScalarSums] = {}  # ops namespaces (classes such as NumpyOps) -> their wrapper


def _scalar_sums(ops: Any) -> ScalarSums:
    """``ScalarSums(ops)``, made once per ops class (an ops instance gets a new one each time: it may be short-lived)."""
    if not isinstance(ops, type):
        return ScalarSums(ops)
    found = _SCALAR_SUMS.get(ops)
    if found is None:
        found = _SCALAR_SUMS[ops] = ScalarSums(ops)
    return found


def _resolve(program: Program) -> tuple[_Step, ...]:
    """The steps of ``program`` from one pass of type inference (a plan is built for every program hashed); an
    invalid program gets ``check``'s error."""
    env = input_types(program)
    steps = []
    for statement in program.statements:
        try:
            arg_types = tuple([isinstance(a, str) and env[a] for a in statement.args])
        except KeyError:
            check(program)  # raises the ProgramError that names the statement
            raise AssertionError("check accepted a read of an unassigned variable") from None
        step = _STEPS.get((statement, arg_types))
        if step is None:
            step = _step(statement, arg_types)
        steps.append(step)
        env[statement.target] = step.is_tensor
    if not all(env.get(name) is True for name in program.outputs):
        check(program)  # raises: an output never assigned, or a scalar
        raise AssertionError("check accepted an output that is not a tensor")
    return tuple(steps)


def _step(statement: Statement, arg_types: tuple[bool, ...]) -> _Step:
    """``statement`` resolved for arguments of ``arg_types`` (tensor or not), and kept in ``_STEPS``."""
    keys = tuple(a if isinstance(a, str) else _constant_key(a) for a in statement.args)
    step = _Step(PRIMITIVES[statement.fn].impl, statement.args, statement.target, any(arg_types), len(keys),
                 _getter(keys), result_kind(statement.fn, list(arg_types)))
    if len(_STEPS) >= _STEPS_KEPT:
        _STEPS.clear()  # a bound on memory; the statements in use come back at once
    _STEPS[(statement, arg_types)] = step
    return step


class NumpyOps:
    """Reference backend on numpy arrays shaped ``(..., K, n)``: K parameter tensors of n entries each."""

    xp = np
    scalar = np.float64

    @staticmethod
    def clip(x: Any, lo: float | None, hi: float | None) -> Any:
        return np.clip(x, lo, hi)

    # A 0-d value (lr, t, a constant) inside a statement that reduces tensors sums as itself, as a scalar does.
    @staticmethod
    def sum_tensor(x: Any) -> Any:
        return np.sum(x, axis=-1, keepdims=True) if np.ndim(x) else x

    @staticmethod
    def sum_global(x: Any) -> Any:
        return np.sum(x, axis=(-2, -1), keepdims=True) if np.ndim(x) else x


def reference_step(program: Program | Plan, w, g, m, v, lr: float, t: int = 1):
    """One step of ``program`` on numpy arrays ``(..., K, n)`` in float64; returns ``(update, m, v)``.

    Values that come out scalar-shaped are broadcast to the shape of ``w``.
    """
    plan = program if isinstance(program, Plan) else Plan(program)
    with np.errstate(all="ignore"):
        inputs = {"w": w, "g": g, "m": m, "v": v, "lr": np.float64(lr), "t": np.float64(t)}
        outputs = plan(NumpyOps, inputs)
    return tuple(np.broadcast_to(np.asarray(x, dtype=np.float64), np.shape(w)) for x in outputs)
