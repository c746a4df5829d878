"""Export a program as a ``torch.optim`` optimizer: a standalone module that reads like ``torch/optim/adamw.py``.

``optimizer_source(program, name)`` writes the module: a docstring with the algorithm as pseudocode, a single-tensor
function and a multi-tensor (``torch._foreach_*``) function as straight-line torch code, and the ``Optimizer``
subclass, whose keyword-only hyperparameters are the program's constants (``programs.export_lowering``).
``optimizer_class(program, name)`` returns the class of that very module.

Nothing from a program's text reaches the module unchecked: identifiers are whitelisted (``check_name``,
``export_lowering.readable``), numbers are finite floats printed by ``repr``, everything else is our own template.
Each primitive is printed from its one definition (``programs.primitives``), traced with symbolic operands.
"""

from __future__ import annotations

import builtins
import keyword
import linecache
import math
import re
import textwrap
import types
import zlib
from typing import Any, Callable

import torch

from programs.export_lowering import FLOAT, LIST, RESERVED, Hyperparameter, Instr, Lowered, fits_float32, lower
from programs.primitives import PRIMITIVES, clip_with_norm
from programs.program import Program
from programs.torch_ops import TORCH_NAMES

DEFAULT_LR = 1e-3
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_INLINE_LIMIT = 48  # characters: a scalar used once is written into its reader when it is this short
# Names the generated module defines or uses at module level: a class may not take them.
MODULE_NAMES = frozenset({"torch", "math", "annotations", "Any", "Callable", "Tensor", "_check", "_check_group",
                          "_f64", "_fit", "EPS", "check_lr", "ProgramOptimizer"})


def check_name(name: str) -> None:
    """``ValueError`` unless ``name`` can name the exported class without breaking its module."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name) or not name.isascii():
        raise ValueError(f"optimizer name {name!r} must be a Python identifier (letters, digits, _; at most 64)")
    snake = snake_case(name)
    if (keyword.iskeyword(name) or name in dir(builtins) or name in MODULE_NAMES or name in RESERVED
            or name.startswith("_") or snake in RESERVED):
        raise ValueError(f"optimizer name {name!r} collides with a name the exported module uses (Python's, "
                         "torch's or its own); choose another, e.g. MyOptimizer")


def snake_case(name: str) -> str:
    """``MyOpt`` -> ``my_opt``, ``Discovered42`` -> ``discovered42``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def optimizer_source(program: Program, name: str = "DiscoveredOptimizer", default_lr: float = DEFAULT_LR) -> str:
    """The text of a standalone module (only torch needed) defining the optimizer class ``name``."""
    check_name(name)
    _check_lr(default_lr)
    return _Module(program, lower(program), name, default_lr).source()


def optimizer_class(program: Program, name: str = "DiscoveredOptimizer",
                    default_lr: float = DEFAULT_LR) -> type[torch.optim.Optimizer]:
    """The optimizer class of ``optimizer_source(program, name, default_lr)``, loaded as a module.

    The module text comes from our own templates and the program's validated IR only (see the module docstring).
    """
    source = optimizer_source(program, name, default_lr)
    filename = f"<autodisco export {name}>"
    module = types.ModuleType(f"autodisco_export_{snake_case(name)}")
    module.__file__ = filename
    code = builtins.compile(source, filename, "exec")
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(code, module.__dict__)  # noqa: S102 - our generated module, as `import` would run it
    cls = getattr(module, name)
    cls.source_program = program
    return cls


def describe(program: Program) -> str:
    """The multi-tensor step function of ``program``'s export (for inspection and tests)."""
    module = _Module(program, lower(program), "Described", DEFAULT_LR)
    return "\n".join(module.function(multi=True))


def _check_lr(lr: Any) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr!r} (expected a finite number >= 0)")


# -- expressions -------------------------------------------------------------------------------------------------

ATOM, POWER, UNARY, PRODUCT, SUM = 5, 4, 3, 2, 1
TENSOR_KIND, FLOAT_KIND = "tensor", "float"


def literal(value: float) -> str:
    """A float as it reads best and parses back to the same value: ``1``, ``0.9``, ``1e-8``, ``math.inf``."""
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "-math.inf"
    if value == int(value) and abs(value) < 1e15 and not (value == 0.0 and math.copysign(1.0, value) < 0):
        return str(int(value))
    return re.sub(r"e([+-])0(\d)", r"e\1\2", repr(float(value))).replace("e+", "e")


class Sym:
    """A traced value: its source text, precedence, kind (tensor or float) and range (floats)."""

    def __init__(self, text: str, prec: int = ATOM, kind: str = FLOAT_KIND,
                 bounds: tuple[float, float] = (-math.inf, math.inf)) -> None:
        self.text, self.prec, self.kind, self.bounds = text, prec, kind, bounds

    @staticmethod
    def of(value: Any) -> Sym:
        if isinstance(value, Sym):
            return value
        text = literal(float(value))
        return Sym(text, UNARY if text.startswith("-") else ATOM, FLOAT_KIND, (float(value), float(value)))

    def wrapped(self, prec: int) -> str:
        return f"({self.text})" if self.prec < prec else self.text

    def _binary(self, symbol: str, prec: int, left: Any, right: Any) -> Sym:
        a, b = Sym.of(left), Sym.of(right)
        kind = TENSOR_KIND if TENSOR_KIND in (a.kind, b.kind) else FLOAT_KIND
        if symbol == "**":  # right-associative; a unary minus binds looser on its left
            return Sym(f"{a.wrapped(ATOM)} ** {b.wrapped(POWER)}", POWER, kind)
        # the right operand keeps its own grouping: floating-point + and * are not associative
        return Sym(f"{a.wrapped(prec)} {symbol} {b.wrapped(prec + 1)}", prec, kind)

    def __add__(self, other: Any) -> Sym: return self._binary("+", SUM, self, other)
    def __radd__(self, other: Any) -> Sym: return self._binary("+", SUM, other, self)
    def __sub__(self, other: Any) -> Sym: return self._binary("-", SUM, self, other)
    def __rsub__(self, other: Any) -> Sym: return self._binary("-", SUM, other, self)
    def __mul__(self, other: Any) -> Sym: return self._binary("*", PRODUCT, self, other)
    def __rmul__(self, other: Any) -> Sym: return self._binary("*", PRODUCT, other, self)
    def __truediv__(self, other: Any) -> Sym: return self._binary("/", PRODUCT, self, other)
    def __rtruediv__(self, other: Any) -> Sym: return self._binary("/", PRODUCT, other, self)
    def __pow__(self, other: Any) -> Sym: return self._binary("**", POWER, self, other)
    def __rpow__(self, other: Any) -> Sym: return self._binary("**", POWER, other, self)

    def __neg__(self) -> Sym:
        return Sym(f"-{self.wrapped(UNARY)}", UNARY, self.kind)


def call(function: str, *args: Any, kind: str = TENSOR_KIND) -> Sym:
    return Sym(f"{function}({', '.join(Sym.of(a).text for a in args)})", ATOM, kind)


class _Unsafe(Exception):
    """Python's float math could raise here (or differ from IEEE): compute in float64 torch instead."""


class _XP:
    """numpy-named functions that print torch (tensors) or Python (floats) code."""

    def __init__(self, trace: _Trace) -> None:
        self.trace = trace

    def __getattr__(self, name: str) -> Callable[..., Sym]:
        def function(*args: Any) -> Sym:
            return self.trace.function(name, [Sym.of(a) for a in args])

        return function


class _Trace:
    """The ``ops`` namespace of ``programs.primitives`` over symbols: running a primitive's one definition on it
    prints that primitive as code. ``scalar``: the statement is float math (``_Unsafe`` where Python's could raise);
    ``reduces``: per-tensor sums act (on each tensor of the statement)."""

    def __init__(self, module: _Module, scalar: bool, reduces: bool) -> None:
        self.module, self.scalar, self.reduces = module, scalar, reduces
        self.xp = _XP(self)

    def function(self, name: str, args: list[Sym]) -> Sym:
        if name in ("maximum", "minimum"):
            return self.extremum(name, *args)
        (x,) = args
        if x.kind == FLOAT_KIND:
            if name == "abs":
                return x if x.bounds[0] >= 0.0 else call("abs", x, kind=FLOAT_KIND)
            if name == "sqrt":
                return call("math.sqrt", x, kind=FLOAT_KIND)
            if self.scalar:
                raise _Unsafe(name)
            x = self.module.f64(x)
        return call(f"torch.{TORCH_NAMES.get(name, name)}", x)

    def extremum(self, name: str, x: Sym, y: Sym) -> Sym:
        if x.kind == FLOAT_KIND and y.kind == FLOAT_KIND:
            if self.scalar:
                raise _Unsafe(name)
            x = self.module.f64(x)
        if x.kind == FLOAT_KIND:
            x, y = y, x  # maximum and minimum are symmetric
        if y.kind == TENSOR_KIND:
            return call(f"torch.{name}", x, y)
        bound = "min" if name == "maximum" else "max"
        return Sym(f"torch.clamp({x.text}, {bound}={self.module.fitted(y, x)})", ATOM, TENSOR_KIND)

    def clip(self, x: Sym, lo: float | None, hi: float | None) -> Sym:
        if x.kind == FLOAT_KIND:
            if self.scalar:
                raise _Unsafe("clip")
            x = self.module.f64(x)
        bounds = [f"min={literal(lo)}" if lo is not None else "", f"max={literal(hi)}" if hi is not None else ""]
        return Sym(f"torch.clamp({x.text}, {', '.join(b for b in bounds if b)})", ATOM, TENSOR_KIND)

    def sum_tensor(self, x: Sym) -> Sym:
        if not self.reduces or x.kind == FLOAT_KIND:
            return x
        return Sym(f"{x.wrapped(ATOM)}.sum()", ATOM, TENSOR_KIND)

    def sum_global(self, x: Sym) -> Sym:
        return x  # global sums are lowered to a global_norm instruction; what is left is elementwise


# -- the module --------------------------------------------------------------------------------------------------

_MULTI = {
    "mul": "{t} = torch._foreach_mul({0}, {1})", "mul_": "torch._foreach_mul_({0}, {1})",
    "add": "{t} = torch._foreach_add({0}, {1})", "add_": "torch._foreach_add_({0}, {1})",
    "axpy_": "torch._foreach_add_({0}, {1}, alpha={2})", "sub_": "torch._foreach_sub_({0}, {1})",
    "plus_": "torch._foreach_add_({0}, {1})",
    "lerp": "{t} = torch._foreach_lerp({0}, {1}, {2})", "lerp_": "torch._foreach_lerp_({0}, {1}, {2})",
    "addcmul_": "torch._foreach_addcmul_({0}, {1}, {2}, value={3})",
    "addcdiv_": "torch._foreach_addcdiv_({0}, {1}, {2}, value={3})",
    "times": "{t} = torch._foreach_mul({0}, {1})", "times_": "torch._foreach_mul_({0}, {1})",
    "over": "{t} = torch._foreach_div({0}, {1})", "over_": "torch._foreach_div_({0}, {1})",
    "sqrt": "{t} = torch._foreach_sqrt({0})", "sqrt_": "torch._foreach_sqrt_({0})",
    "abs": "{t} = torch._foreach_abs({0})", "abs_": "torch._foreach_abs_({0})",
    "sign": "{t} = torch._foreach_sign({0})", "sign_": "torch._foreach_sign_({0})",
    "clone": "{t} = [tensor.clone() for tensor in {0}]", "norm": "{t} = torch._foreach_norm({0})",
}
_SINGLE = {
    "mul": "{t} = torch.mul({0}, {1})", "mul_": "{0}.mul_({1})", "add": "{t} = torch.add({0}, {1})",
    "add_": "{0}.add_({1})", "axpy_": "{0}.add_({1}, alpha={2})", "sub_": "{0}.sub_({1})", "plus_": "{0}.add_({1})",
    "lerp": "{t} = torch.lerp({0}, {1}, {2})", "lerp_": "{0}.lerp_({1}, {2})",
    "addcmul_": "{0}.addcmul_({1}, {2}, value={3})", "addcdiv_": "{0}.addcdiv_({1}, {2}, value={3})",
    "times": "{t} = torch.mul({0}, {1})", "times_": "{0}.mul_({1})",
    "over": "{t} = torch.div({0}, {1})", "over_": "{0}.div_({1})",
    "sqrt": "{t} = torch.sqrt({0})", "sqrt_": "{0}.sqrt_()", "abs": "{t} = torch.abs({0})", "abs_": "{0}.abs_()",
    "sign": "{t} = torch.sign({0})", "sign_": "{0}.sign_()",
    "clone": "{t} = {0}.clone()", "norm": "{t} = torch.linalg.vector_norm({0})",
}
_CHECKED = {"axpy_": 2, "lerp": 2, "lerp_": 2, "addcmul_": 3, "addcdiv_": 3}  # scalar arguments torch range-checks
_MULTI_NAMES = {"w": "params", "g": "grads", "m": "exp_avgs", "v": "exp_avg_sqs", "lr": "lr", "t": "step"}
_SINGLE_NAMES = {"w": "param", "g": "grad", "m": "exp_avg", "v": "exp_avg_sq", "lr": "lr", "t": "step"}
_STATE_KEYS = {"m": "exp_avg", "v": "exp_avg_sq"}


class _Module:
    """Prints the module of one lowered program."""

    def __init__(self, program: Program, lowered: Lowered, name: str, default_lr: float) -> None:
        self.program, self.lowered, self.name, self.default_lr = program, lowered, name, default_lr
        self.snake = snake_case(name)
        self.helpers: set[str] = set()
        self.uses = {}
        for ins in lowered.instructions:
            for arg in ins.args:
                if isinstance(arg, str):
                    self.uses[arg] = self.uses.get(arg, 0) + 1
        self.scalars: dict[str, Sym] = {}  # a scalar variable: its name, or its expression when written inline
        self.scalar_lines: list[str] = []
        self.names = _MULTI_NAMES

    # -- values

    def sym(self, ref: Any) -> Sym:
        if not isinstance(ref, str):
            return Sym.of(ref)
        if ref in self.scalars:
            return self.scalars[ref]
        kind = self.lowered.kinds.get(ref, LIST)
        bounds = self.lowered.bounds.get(ref, (-math.inf, math.inf))
        return Sym(self.names.get(ref, ref), ATOM, FLOAT_KIND if kind == FLOAT else TENSOR_KIND, bounds)

    def f64(self, x: Sym) -> Sym:
        self.helpers.add("_f64")
        return call("_f64", x)

    def fitted(self, k: Sym, tensor: Sym) -> str:
        """``k`` as a scalar argument that torch range-checks: through ``_fit`` unless it surely fits float32."""
        if fits_float32(k.bounds) and (k.kind == FLOAT_KIND):
            return k.text
        self.helpers.add("_fit")
        return f"_fit({k.text}, {tensor.text})"

    def _scalar(self, ins: Instr) -> None:
        fn, args = ins.op, [self.sym(r) for r in ins.args]
        bounds = self.lowered.bounds[ins.target]
        try:
            if ins.target not in self.lowered.safe:
                raise _Unsafe(fn)
            result = PRIMITIVES[fn].impl(_Trace(self, scalar=True, reduces=False), *args)
        except _Unsafe:
            tensors = [self.f64(a) if a.kind == FLOAT_KIND and not _is_literal(a) else a for a in args]
            traced = PRIMITIVES[fn].impl(_Trace(self, scalar=False, reduces=False), *tensors)
            result = call("float", traced, kind=FLOAT_KIND)
        result = Sym(result.text, result.prec, FLOAT_KIND, bounds)
        generated = re.fullmatch(r"s\d+", ins.target) is not None
        limit = _INLINE_LIMIT if self.names is _MULTI_NAMES else _INLINE_LIMIT // 2  # the loop reads it per tensor
        if generated and self.uses[ins.target] == 1 and len(result.text) <= limit and (
                ins.target in self.lowered.safe):
            self.scalars[ins.target] = result
        else:
            self.scalar_lines.append(f"{ins.target} = {result.text}")
            self.scalars[ins.target] = Sym(ins.target, ATOM, FLOAT_KIND, bounds)

    # -- the step functions

    def function(self, multi: bool) -> list[str]:
        self.names = _MULTI_NAMES if multi else _SINGLE_NAMES
        lists = ["params", "grads"] + [f"{_STATE_KEYS[s]}s" for s in self.lowered.state_names]
        keywords = (["step: float"] if self.lowered.uses_step else []) + ["lr: float"] + [
            f"{m}: float" for h in self.lowered.hyperparameters for m in h.members]
        kind = "multi_tensor" if multi else "single_tensor"
        header = [f"def _{kind}_{self.snake}({', '.join(f'{a}: list[Tensor]' for a in lists)}, *, "
                  f"{', '.join(keywords)}) -> None:"]
        self.scalars = {}
        self.scalar_lines = []
        for ins in self.lowered.instructions:  # scalars first: they depend on floats only
            if ins.kind == "scalar" and self.uses.get(ins.target, 0):
                self._scalar(ins)
        body = [f"    {line}" for line in self.scalar_lines]
        tensor_lines = [line for ins in self.lowered.instructions for line in self._tensor_lines(ins, multi)]
        for state, buf in zip("mv", self.lowered.outputs):  # new state computed elsewhere than in its buffer
            if buf is not None and buf != state:
                template = "torch._foreach_copy_({0}, {1})" if multi else "{0}.copy_({1})"
                tensor_lines.append(template.format(self.sym(state).text, self.sym(buf).text))
        if multi:
            body += [f"    {line}" for line in tensor_lines]
        else:
            elements = ", ".join(name[:-1] for name in lists)
            body.append(f"    for {elements} in zip({', '.join(lists)}):")
            body += [f"        {line}" for line in tensor_lines]
        return _wrap_long(header) + body

    def _tensor_lines(self, ins: Instr, multi: bool) -> list[str]:
        if ins.kind == "scalar":
            return []
        if ins.kind == "decay":
            buf, factor = ins.args
            template = _MULTI["mul_"] if multi else _SINGLE["mul_"]
            return ["if weight_decay != 0:", "    " + template.format(self.sym(buf).text, self.sym(factor).text)]
        if ins.kind == "global_norm":
            x = self.sym(ins.args[0]).text
            return [f"{ins.target} = torch.linalg.vector_norm(torch.stack(torch._foreach_norm({x})))"]
        if ins.kind == "generic":
            return [self._generic(ins, multi)]
        op, args = ins.op, list(ins.args)
        if op == "axpy_" and args[2] in (1.0, -1.0) and not isinstance(args[2], str):
            op, args = ("plus_" if args[2] == 1.0 else "sub_"), args[:2]
        syms = [self.sym(a) for a in args]
        texts = [s.text for s in syms]
        if op in _CHECKED:
            position = _CHECKED[op]
            texts[position] = self.fitted(syms[position], syms[0])
        template = (_MULTI if multi else _SINGLE)[op]
        line = template.format(*texts, t=ins.target)
        return [line.replace(", value=1)", ")")]

    def _generic(self, ins: Instr, multi: bool) -> str:
        fn, (reduces, *operands) = ins.op, ins.args
        syms = [self.sym(o) for o in operands]
        definition = clip_with_norm if fn == "clip_with_norm" else PRIMITIVES[fn].impl
        elements = [Sym(_SINGLE_NAMES.get(o, o), ATOM, s.kind, s.bounds) if self._is_list(o) else s
                    for o, s in zip(operands, syms)]
        expression = definition(_Trace(self, scalar=False, reduces=reduces), *elements).text
        listed = [(e.text, s.text) for o, e, s in zip(operands, elements, syms) if self._is_list(o)]
        listed = list(dict.fromkeys(listed))
        if not multi or not listed:
            return f"{ins.target} = {expression}"
        if len(listed) == 1:
            return f"{ins.target} = [{expression} for {listed[0][0]} in {listed[0][1]}]"
        names = ", ".join(e for e, _ in listed)
        return f"{ins.target} = [{expression} for {names} in zip({', '.join(s for _, s in listed)})]"

    def _is_list(self, ref: Any) -> bool:
        return isinstance(ref, str) and self.lowered.kinds.get(ref) == LIST

    # -- the module

    def source(self) -> str:
        functions = [self.function(multi=True)]
        if not self.lowered.has_global:
            functions.insert(0, self.function(multi=False))
        lines = [f'"""{self.name}: {self._module_doc()}"""', "", "from __future__ import annotations", "",
                 "import math", "", "import torch", "from torch import Tensor", "", f'__all__ = ["{self.name}"]']
        for function in functions:
            lines += ["", "", *function]
        lines += ["", "", *self._checks(), *self._helpers(), "", "", *self._class()]
        return "\n".join(lines) + "\n"

    def _module_doc(self) -> str:
        return ("an optimizer found by program search, exported by autodisco.\n\n"
                + _indent(self._algorithm(), 0) + "\n")

    def _algorithm(self) -> str:
        """The program as pseudocode, hyperparameters by name, temporaries written back into expressions."""
        lines = ["For each parameter tensor ``w`` with gradient ``g``" + self._state_words() + "::", ""]
        lines += [f"    {line}" for line in pseudocode(self.program, self.lowered.constants)]
        update = safe_name(self.program.outputs[0])
        lines.append(f"    w = w - {update}" if not self._added_decay() else
                     f"    w = w * (1 - lr * weight_decay) - {update}")
        used = sorted({s.fn for s in self.program.statements} - {"add", "sub", "mul", "negative"})
        if used:
            lines += [""] + _fill("where " + "; ".join(f"{fn}: {PRIMITIVES[fn].doc.split('; also')[0]}"
                                                    for fn in used) + ".")
        return "\n".join(lines)

    def _state_words(self) -> str:
        words = [f"``{s}`` (``{_STATE_KEYS[s]}``)" for s in self.lowered.state_names]
        state = f", state {' and '.join(words)} from zero" if words else ""
        return state + (", ``t`` the step from 1" if self.lowered.uses_step else "")

    def _added_decay(self) -> bool:
        return "weight_decay" not in self.lowered.constants.values()

    def _checks(self) -> list[str]:
        lines = ["def _check_group(group: dict) -> None:",
                 '    """``ValueError`` unless the hyperparameters of a parameter group are in range."""',
                 '    _check("learning rate", group["lr"], 0.0, math.inf)']
        for h in self.lowered.hyperparameters:
            high = literal(h.high) if math.isfinite(h.high) else "math.inf"
            args = f"{literal(h.low)}, {high}" + (", open_high=True" if h.high_open else "")
            if h.is_tuple:
                lines += [f'    if not isinstance(group["{h.name}"], (tuple, list)) or len(group["{h.name}"]) != '
                          f'{len(h.members)}:',
                          f'        raise ValueError(f"Invalid {h.name}: {{group[\'{h.name}\']!r}} (expected '
                          f'{len(h.members)} numbers)")',
                          f'    for index, value in enumerate(group["{h.name}"]):',
                          f'        _check(f"beta parameter at index {{index}}", value, {args})']
            else:
                what = {"eps": "epsilon value", "weight_decay": "weight_decay value"}.get(h.name, h.name)
                lines.append(f'    _check("{what}", group["{h.name}"], {args})')
        lines += ['    if group["foreach"] not in (None, True, False):',
                  '        raise ValueError(f"Invalid foreach value: {group[\'foreach\']!r} (expected None, True or '
                  'False)")',
                  "", "",
                  "def _check(what: str, value: object, low: float, high: float, open_high: bool = False) -> None:",
                  "    number = isinstance(value, (int, float)) and not isinstance(value, bool)",
                  "    if not (number and low <= value and (value < high if open_high else value <= high)",
                  "            and math.isfinite(value)):",
                  '        bounds = f"[{low}, {high}" + (")" if open_high else "]")',
                  '        raise ValueError(f"Invalid {what}: {value!r} (expected a number in {bounds})")']
        return lines

    def _helpers(self) -> list[str]:
        lines = []
        if "_f64" in self.helpers:
            lines += ["", "", "def _f64(x: float) -> Tensor:",
                      '    """A float64 scalar: math on it gives inf and nan where Python\'s float math raises."""',
                      "    return torch.tensor(x, dtype=torch.float64)"]
        if "_fit" in self.helpers:
            lines += ["", "", "def _fit(k: float, tensors: Tensor | list[Tensor]) -> float:",
                      '    """``k`` within the tensors\' dtype (+-inf beyond it, as ``mul_`` rounds a scalar): fused '
                      'kernels refuse\n    scalars their dtype cannot hold."""',
                      "    tensor = tensors[0] if isinstance(tensors, (list, tuple)) else tensors",
                      "    limit = torch.finfo(tensor.dtype).max",
                      "    return k if -limit <= k <= limit or k != k else math.copysign(math.inf, k)"]
        return lines

    def _class(self) -> list[str]:
        lowered, name = self.lowered, self.name
        hypers = lowered.hyperparameters
        signature = [f"lr: float = {literal(self.default_lr)}"] + [
            f"{h.name}: {_annotation(h)} = {_default(h)}" for h in hypers] + ["foreach: bool | None = None"]
        keys = ["lr"] + [h.name for h in hypers] + ["foreach"]
        doc = self._class_doc()
        lines = [f"class {name}(torch.optim.Optimizer):", f'    """{doc}', '    """', ""]  # type: list[str | None]
        lines += _wrap_long([f"    def __init__(self, params, {signature[0]}, *, {', '.join(signature[1:])}) -> None:"])
        lines += [f"        defaults = dict({', '.join(f'{k}={k}' for k in keys)})",
                  "        _check_group(defaults)",
                  "        super().__init__(params, defaults)", "",
                  "    def add_param_group(self, param_group: dict) -> None:",
                  "        _check_group({**self.defaults, **param_group})",
                  "        super().add_param_group(param_group)", "",
                  "    @torch.no_grad()",
                  "    def step(self, closure=None):",
                  '        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""',
                  "        loss = None",
                  "        if closure is not None:",
                  "            with torch.enable_grad():",
                  "                loss = closure()",
                  "        for group in self.param_groups:",
                  *self._hyper_lines(),
                  "            buckets: dict = {}",
                  '            for p in group["params"]:',
                  "                if p.grad is None:",
                  "                    continue",
                  "                if p.grad.is_sparse or torch.is_complex(p):",
                  f'                    raise RuntimeError("{name} supports neither sparse gradients nor complex '
                  'parameters")',
                  "                state = self.state[p]",
                  "                if not state:",
                  '                    state["step"] = 0']
        for s in lowered.state_names:
            lines.append(f'                    state["{_STATE_KEYS[s]}"] = torch.zeros_like(p, '
                         "memory_format=torch.preserve_format)")
        lines.append('                state["step"] += 1')
        stepped = lowered.uses_step
        if lowered.has_global:  # a global norm covers the whole group: one call, at the group's latest step
            key = "()"
        else:
            key = '(p.device, p.dtype, float(state["step"]))' if stepped else "(p.device, p.dtype)"
        tensors = ["p", "p.grad"] + [f'state["{_STATE_KEYS[s]}"]' for s in lowered.state_names]
        lines += [f"                bucket = buckets.setdefault({key}, {tuple([] for _ in tensors)!r})",
                  f"                for tensors, tensor in zip(bucket, ({', '.join(tensors)})):",
                  "                    tensors.append(tensor)",
                  "            foreach = group[\"foreach\"]",
                  "            if foreach is None:  # as torch.optim: the foreach kernels when every tensor is on CUDA",
                  '                foreach = all(p.device.type in ("cuda", "xpu") for p in group["params"])']
        if lowered.has_global:
            lines += [f"            for tensors in buckets.values():  # global norms: every tensor in one call",
                      '                step = max(float(self.state[p]["step"]) for p in tensors[0])' if stepped else None,
                      f"                _multi_tensor_{self.snake}(*tensors, {self._call_args()})"]
        else:
            lines += [f"            update = _multi_tensor_{self.snake} if foreach else _single_tensor_{self.snake}",
                      "            for (_, _, step), tensors in buckets.items():" if stepped else
                      "            for tensors in buckets.values():",
                      f"                update(*tensors, {self._call_args()})"]
        lines.append("        return loss")
        return [line for line in lines if line is not None]

    def _hyper_lines(self) -> list[str]:
        lines = []
        for h in self.lowered.hyperparameters:
            if h.is_tuple:
                lines.append(f"            {', '.join(h.members)}{',' if len(h.members) == 1 else ''} = "
                             f'group["{h.name}"]')
        return lines

    def _call_args(self) -> str:
        args = (["step=step"] if self.lowered.uses_step else []) + ['lr=group["lr"]']
        for h in self.lowered.hyperparameters:
            args += [f"{m}={m}" for m in h.members] if h.is_tuple else [f'{h.name}=group["{h.name}"]']
        return ", ".join(args)

    def _class_doc(self) -> str:
        lines = [f"An optimizer found by program search (``{self.name}``, exported by autodisco).", "",
                 self._algorithm(), "", "Args:",
                 "    params: iterable of parameters or dicts defining parameter groups.",
                 f"    lr: learning rate (default {literal(self.default_lr)})."]
        for h in self.lowered.hyperparameters:
            lines += _fill(f"    {h.name}: {h.doc} (default {_default(h)}).", indent="        ")
        lines.append("    foreach: use the ``torch._foreach_*`` kernels (default: when every tensor is on CUDA)."
                     if not self.lowered.has_global else
                     "    foreach: accepted for compatibility; global norms always use the foreach kernels.")
        return _indent("\n".join(lines), 4).lstrip()


def pseudocode(program: Program, constants: dict[float, str]) -> list[str]:
    """The program's statements with hyperparameter names for constants and the parser's temporaries (``_1``)
    written back into the expressions that read them once."""
    uses: dict[str, int] = {}
    for s in program.statements:
        for a in s.variables():
            uses[a] = uses.get(a, 0) + 1
    inline: dict[str, Sym] = {}
    lines = []
    for s in program.statements:
        args = [inline.pop(a) if isinstance(a, str) and a in inline else
                Sym(safe_name(a)) if isinstance(a, str) else Sym(constants[a]) if a in constants else Sym.of(a)
                for a in s.args]
        symbol = PRIMITIVES[s.fn].operator
        if symbol is not None:
            expression = args[0]._binary(symbol, SUM if symbol in "+-" else PRODUCT, args[0], args[1])
        elif s.fn == "negative":
            expression = -args[0]
        else:
            expression = call(s.fn, *args)
        if re.fullmatch(r"_\d+", s.target) and uses.get(s.target) == 1 and len(expression.text) < 60:
            inline[s.target] = expression
        else:
            lines.append(f"{safe_name(s.target)} = {expression.text}")
    return lines


def safe_name(name: str) -> str:
    """A program variable's name as the docstring prints it: an ASCII identifier, else a neutral stand-in (the
    name comes from untrusted text, and a docstring must not be closed by it)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        return name
    return f"var_{zlib.crc32(name.encode('utf-8', 'replace')):08x}"


def _is_literal(sym: Sym) -> bool:
    return sym.bounds[0] == sym.bounds[1]


def _annotation(h: Hyperparameter) -> str:
    return f"tuple[{', '.join('float' for _ in h.members)}]" if h.is_tuple else "float"


def _default(h: Hyperparameter) -> str:
    if h.is_tuple:
        return f"({', '.join(literal(v) for v in h.default)}{',' if len(h.default) == 1 else ''})"
    return literal(float(h.default[0])) if not (h.default[0] == int(h.default[0])) else repr(float(h.default[0]))


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line if line.strip() else line for line in text.splitlines(keepends=True))


def _fill(text: str, width: int = 110, indent: str = "") -> list[str]:
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


def _wrap_long(lines: list[str], width: int = 116) -> list[str]:
    """A ``def`` line longer than ``width``: its parameters on indented lines, as many as fit on each."""
    out = []
    for line in lines:
        if len(line) <= width or not line.endswith(") -> None:"):
            out.append(line)
            continue
        head, rest = line.split("(", 1)
        margin = " " * (len(head) - len(head.lstrip()))
        out.append(f"{head}(")
        out += textwrap.wrap(rest[:-len(") -> None:")], width, initial_indent=margin + "    ",
                             subsequent_indent=margin + "    ", break_long_words=False, break_on_hyphens=False)
        out.append(f"{margin}) -> None:")
    return out


__all__ = ["DEFAULT_LR", "check_name", "describe", "optimizer_class", "optimizer_source", "snake_case"]

