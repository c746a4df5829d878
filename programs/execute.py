"""Run a program on any array backend: the reference semantics every other path is checked against.

``Plan(program)`` resolves each statement once (primitive, argument slots, whether its reductions act on tensors);
``plan(ops, inputs)`` runs one optimizer step on the backend ``ops`` (see ``programs.primitives``).
``NumpyOps`` is the reference backend: a parameter set is an array ``(..., K, n)`` of K tensors with n entries each.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from programs.analysis import check, input_types
from programs.primitives import PRIMITIVES, result_kind
from programs.program import Arg, Program


class _Step(NamedTuple):  # a tuple: built for every statement of every program hashed, and a frozen dataclass
    # costs several times as much to construct
    impl: Callable[..., Any]
    args: tuple[Arg, ...]
    target: str
    reduces_tensors: bool  # False: the statement's reductions act on scalars (identity sums)


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
        # Constants become read-only entries of the environment under names no program can write (a NUL prefix),
        # so that every argument is one dict lookup; converted once per backend scalar type (``_constants``).
        self._args = tuple(tuple(a if isinstance(a, str) else f"\0{i}.{j}" for j, a in enumerate(step.args))
                           for i, step in enumerate(self.steps))
        self._constants: dict[Any, dict[str, Any]] = {}

    def __call__(self, ops: Any, inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """One step. If ``ops`` has ``scalar`` (a float type), constants and Python-float results are converted to it,
        so that scalar arithmetic follows the backend's rules (numpy: 1/0 is inf, not ZeroDivisionError)."""
        scalar_ops = ScalarSums(ops)
        scalar = getattr(ops, "scalar", None)
        constants = self._constants.get(scalar)
        if constants is None:
            constants = self._constants[scalar] = {
                key: (a if scalar is None else scalar(a))
                for step, keys in zip(self.steps, self._args) for a, key in zip(step.args, keys) if key != a}
        env = {**constants, **inputs}
        for step, keys in zip(self.steps, self._args):
            result = step.impl(ops if step.reduces_tensors else scalar_ops, *[env[key] for key in keys])
            # a Python float (a nullary function, or arithmetic of Python-float inputs such as t) becomes the
            # backend's scalar; numpy's float64 (a float subclass) is one already
            env[step.target] = scalar(result) if scalar is not None and type(result) is float else result
        update, m, v = (env[name] for name in self.program.outputs)
        return update, m, v


def _resolve(program: Program) -> tuple[_Step, ...]:
    """The steps of ``program`` from one pass of type inference (a plan is built for every program hashed); an
    invalid program gets ``check``'s error."""
    env = input_types(program)
    steps = []
    for statement in program.statements:
        try:
            arg_types = [isinstance(a, str) and env[a] for a in statement.args]
        except KeyError:
            arg_types = None
        if arg_types is None:
            check(program)  # raises the ProgramError that names the statement
            raise AssertionError("check accepted a read of an unassigned variable")
        steps.append(_Step(PRIMITIVES[statement.fn].impl, statement.args, statement.target, any(arg_types)))
        env[statement.target] = result_kind(statement.fn, arg_types)
    if not all(env.get(name) is True for name in program.outputs):
        check(program)  # raises: an output never assigned, or a scalar
        raise AssertionError("check accepted an output that is not a tensor")
    return tuple(steps)


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
