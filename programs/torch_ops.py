"""Torch backends of the ``ops`` namespace of ``programs.primitives``.

``TORCH_XP`` is the elementwise array module with numpy's names (``arcsin``, ``maximum``, ``exp2``, ...) over
torch: every function accepts tensors and Python floats in any mix (torch functions reject bare floats, so a
scalar-only call is answered by numpy in float64, the reference precision). ``TorchScalarOps`` is the ops
namespace for values whose reductions are elementwise (scalar-typed values, ``programs.execute.ScalarSums``);
``NumpyScalarOps`` is the same for scalar-only statements evaluated on Python floats.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch

Value = Any  # a torch.Tensor or a float


def _unary(torch_fn: Callable[[torch.Tensor], torch.Tensor], numpy_fn: Callable[[Any], Any]) -> Callable[[Value], Value]:
    def fn(x: Value) -> Value:
        if isinstance(x, torch.Tensor):
            return torch_fn(x)
        return numpy_fn(x)

    fn.__name__ = numpy_fn.__name__
    return fn


def _extremum(torch_fn: Callable[..., torch.Tensor], numpy_fn: Callable[..., Any], bound: str) -> Callable[..., Value]:
    """``maximum``/``minimum`` for tensors and floats; ``bound`` is the clamp keyword for a float operand."""

    def fn(x: Value, y: Value) -> Value:
        x_tensor, y_tensor = isinstance(x, torch.Tensor), isinstance(y, torch.Tensor)
        if x_tensor and y_tensor:
            return torch_fn(x, y)
        if x_tensor:
            return torch.clamp(x, **{bound: float(y)})
        if y_tensor:
            return torch.clamp(y, **{bound: float(x)})
        return numpy_fn(x, y)

    fn.__name__ = numpy_fn.__name__
    return fn


def clip(x: Value, lo: float | None, hi: float | None) -> Value:
    """Elementwise clamp of a tensor or a float to ``[lo, hi]`` (either bound may be ``None``)."""
    if isinstance(x, torch.Tensor):
        return torch.clamp(x, lo, hi)
    return np.clip(x, lo, hi)


_UNARY_NAMES = (
    "abs cos sin tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh exp exp2 expm1 log log10 log2 "
    "sqrt sign"
).split()

# torch's name where it differs from numpy's (exported optimizers print torch calls with these names).
TORCH_NAMES = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arcsinh": "asinh", "arccosh": "acosh",
                "arctanh": "atanh"}

TORCH_XP = SimpleNamespace(
    **{name: _unary(getattr(torch, TORCH_NAMES.get(name, name)), getattr(np, name)) for name in _UNARY_NAMES},
    maximum=_extremum(torch.maximum, np.maximum, "min"),
    minimum=_extremum(torch.minimum, np.minimum, "max"),
)


def _identity(x: Value) -> Value:
    return x


# Reductions of scalar-typed values are elementwise, so the sums are the identity.
TorchScalarOps = SimpleNamespace(xp=TORCH_XP, clip=clip, sum_tensor=_identity, sum_global=_identity)
NumpyScalarOps = SimpleNamespace(xp=np, clip=np.clip, sum_tensor=_identity, sum_global=_identity)
