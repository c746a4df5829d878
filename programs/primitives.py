"""The function set of optimizer programs: the 45 functions of the Lion paper's search space.

Every primitive is written once, against a small ``ops`` namespace, so that the same definition runs on numpy
(functional hashing probes), on flat torch buffers (the search) and on lists of torch tensors (exported
optimizers). An ``ops`` object provides:

- ``xp``: the array module, used for elementwise math with numpy's names (``arcsin``, ``maximum``, ...); every
  function must accept Python floats as well as arrays (a torch backend wraps torch accordingly);
- ``clip(x, lo, hi)``: elementwise clamp (``lo``/``hi`` may be ``None``);
- ``sum_tensor(x)``: the per-tensor sum of ``x`` (a scalar per parameter tensor, broadcastable against ``x``);
- ``sum_global(x)``: the sum of ``x`` over every parameter tensor.

Reductions on scalar-typed arguments are elementwise (``norm(s) == abs(s)``): the executor then passes ops whose
sums are the identity, so each definition below covers both cases.

Protected semantics (Chen et al. 2023, Lion): ``log`` and ``sqrt`` take ``|x|``; ``log1p(x) = log|1 + x|``; division and
``reciprocal`` add ``EPS`` to the denominator; ``arcsin``/``arccos``/``arctanh`` clamp to [-1, 1] and ``arccosh``
to [1, inf) so that no input leaves the domain; ``power(x, y) = |x| ** y``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

EPS = 1e-8
CONSTANT_LIMIT = 1e10

# Kinds of primitive, which decide the result type in abstract execution.
NULLARY = "nullary"  # -> scalar
ELEMENTWISE = "elementwise"  # -> tensor if any argument is a tensor, else scalar
REDUCTION = "reduction"  # -> scalar (per-tensor or global reduction)
SHAPED = "shaped"  # -> a tensor if any argument is (clip_by_global_norm: x * scale, the scale elementwise in c)


@dataclass(frozen=True)
class Primitive:
    """One function of the program language."""

    name: str
    arity: int
    kind: str
    impl: Callable[..., Any]
    doc: str
    operator: str | None = None  # infix symbol in the canonical text (``+ - * /``), else printed as a call


def _sqrt_abs(ops, x):
    return ops.xp.sqrt(ops.xp.abs(x))


def _norm(ops, x):
    return ops.xp.sqrt(ops.sum_tensor(x * x))


def _global_norm(ops, x):
    return ops.xp.sqrt(ops.sum_global(x * x))


def _cosine_sim(ops, x, y):
    denominator = _norm(ops, x) * _norm(ops, y) + EPS
    return ops.sum_tensor(x * y) / denominator


def clip_with_norm(ops, x, norm, clip_norm):
    """``x`` scaled so that its global norm ``norm`` is at most ``|clip_norm|`` (the second half of
    ``clip_by_global_norm``, for callers that sum the norm over parameter tensors themselves)."""
    limit = ops.xp.abs(clip_norm)
    scale = limit / (ops.xp.maximum(norm, limit) + EPS)
    return x * scale


def _clip_by_global_norm(ops, x, clip_norm):
    return clip_with_norm(ops, x, _global_norm(ops, x), clip_norm)


def _cbrt(ops, x):
    return ops.xp.sign(x) * ops.xp.abs(x) ** (1.0 / 3.0)


_DEFINITIONS: list[tuple[str, int, str, Callable[..., Any], str]] = [
    # nullary
    ("get_pi", 0, NULLARY, lambda ops: math.pi, "the constant pi"),
    ("get_e", 0, NULLARY, lambda ops: math.e, "the constant e"),
    ("get_eps", 0, NULLARY, lambda ops: EPS, "the constant 1e-8"),
    # unary, elementwise
    ("abs", 1, ELEMENTWISE, lambda ops, x: ops.xp.abs(x), "|x|"),
    ("cos", 1, ELEMENTWISE, lambda ops, x: ops.xp.cos(x), "cos x"),
    ("sin", 1, ELEMENTWISE, lambda ops, x: ops.xp.sin(x), "sin x"),
    ("tan", 1, ELEMENTWISE, lambda ops, x: ops.xp.tan(x), "tan x"),
    ("arcsin", 1, ELEMENTWISE, lambda ops, x: ops.xp.arcsin(ops.clip(x, -1.0, 1.0)), "arcsin of x clamped to [-1, 1]"),
    ("arccos", 1, ELEMENTWISE, lambda ops, x: ops.xp.arccos(ops.clip(x, -1.0, 1.0)), "arccos of x clamped to [-1, 1]"),
    ("arctan", 1, ELEMENTWISE, lambda ops, x: ops.xp.arctan(x), "arctan x"),
    ("sinh", 1, ELEMENTWISE, lambda ops, x: ops.xp.sinh(x), "sinh x"),
    ("cosh", 1, ELEMENTWISE, lambda ops, x: ops.xp.cosh(x), "cosh x"),
    ("tanh", 1, ELEMENTWISE, lambda ops, x: ops.xp.tanh(x), "tanh x"),
    ("arcsinh", 1, ELEMENTWISE, lambda ops, x: ops.xp.arcsinh(x), "arcsinh x"),
    ("arccosh", 1, ELEMENTWISE, lambda ops, x: ops.xp.arccosh(ops.clip(x, 1.0, None)), "arccosh of x clamped to [1, inf)"),
    ("arctanh", 1, ELEMENTWISE, lambda ops, x: ops.xp.arctanh(ops.clip(x, -1.0, 1.0)), "arctanh of x clamped to [-1, 1]"),
    ("exp", 1, ELEMENTWISE, lambda ops, x: ops.xp.exp(x), "e^x"),
    ("exp2", 1, ELEMENTWISE, lambda ops, x: ops.xp.exp2(x), "2^x"),
    ("exp10", 1, ELEMENTWISE, lambda ops, x: ops.xp.exp(x * math.log(10.0)), "10^x"),
    ("expm1", 1, ELEMENTWISE, lambda ops, x: ops.xp.expm1(x), "e^x - 1"),
    ("log", 1, ELEMENTWISE, lambda ops, x: ops.xp.log(ops.xp.abs(x)), "log |x|"),
    ("log10", 1, ELEMENTWISE, lambda ops, x: ops.xp.log10(ops.xp.abs(x)), "log10 |x|"),
    ("log2", 1, ELEMENTWISE, lambda ops, x: ops.xp.log2(ops.xp.abs(x)), "log2 |x|"),
    ("log1p", 1, ELEMENTWISE, lambda ops, x: ops.xp.log(ops.xp.abs(1.0 + x)), "log |1 + x|"),
    ("square", 1, ELEMENTWISE, lambda ops, x: x * x, "x^2"),
    ("sqrt", 1, ELEMENTWISE, _sqrt_abs, "sqrt |x|"),
    ("cube", 1, ELEMENTWISE, lambda ops, x: x * x * x, "x^3"),
    ("cbrt", 1, ELEMENTWISE, _cbrt, "sign(x) |x|^(1/3)"),
    ("sign", 1, ELEMENTWISE, lambda ops, x: ops.xp.sign(x), "-1, 0 or 1"),
    ("reciprocal", 1, ELEMENTWISE, lambda ops, x: 1.0 / (x + EPS), "1 / (x + 1e-8)"),
    ("norm", 1, REDUCTION, _norm, "L2 norm of each parameter tensor (a scalar per tensor)"),
    ("invert", 1, ELEMENTWISE, lambda ops, x: 1.0 - x, "1 - x (the complement of a mixing coefficient)"),
    ("negative", 1, ELEMENTWISE, lambda ops, x: -x, "-x"),
    # others
    ("global_norm", 1, REDUCTION, _global_norm, "L2 norm over all parameter tensors together (one scalar)"),
    ("interp", 3, ELEMENTWISE, lambda ops, x, y, a: (1.0 - a) * x + a * y, "(1 - a) x + a y; also 'interpolate'"),
    ("dot", 2, REDUCTION, lambda ops, x, y: ops.sum_tensor(x * y), "sum(x * y) per parameter tensor"),
    ("cosine_sim", 2, REDUCTION, _cosine_sim, "dot(x, y) / (norm(x) norm(y) + 1e-8) per parameter tensor"),
    ("clip_by_global_norm", 2, SHAPED, _clip_by_global_norm, "x scaled so that global_norm(x) <= |c|"),
    ("power", 2, ELEMENTWISE, lambda ops, x, y: ops.xp.abs(x) ** y, "|x|^y"),
    # operators
    ("add", 2, ELEMENTWISE, lambda ops, x, y: x + y, "x + y"),
    ("sub", 2, ELEMENTWISE, lambda ops, x, y: x - y, "x - y"),
    ("mul", 2, ELEMENTWISE, lambda ops, x, y: x * y, "x * y"),
    ("div", 2, ELEMENTWISE, lambda ops, x, y: x / (y + EPS), "x / (y + 1e-8)"),
    ("max", 2, ELEMENTWISE, lambda ops, x, y: ops.xp.maximum(x, y), "elementwise maximum"),
    ("min", 2, ELEMENTWISE, lambda ops, x, y: ops.xp.minimum(x, y), "elementwise minimum"),
]

OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}

PRIMITIVES: dict[str, Primitive] = {
    name: Primitive(name, arity, kind, impl, doc, OPERATORS.get(name))
    for name, arity, kind, impl, doc in _DEFINITIONS
}

# Other spellings the parser accepts; the canonical text always uses the key of PRIMITIVES.
ALIASES = {"interpolate": "interp", "maximum": "max", "minimum": "min", "pow": "power"}

assert len(PRIMITIVES) == 45, f"the Lion search space has 45 functions, found {len(PRIMITIVES)}"


def result_kind(name: str, arg_is_tensor: list[bool]) -> bool:
    """Whether primitive ``name`` applied to arguments of these types gives a tensor."""
    kind = PRIMITIVES[name].kind
    if kind == NULLARY or kind == REDUCTION:
        return False
    return any(arg_is_tensor)  # ELEMENTWISE and SHAPED
