"""Lower a program to the straight-line steps of an exported optimizer (printed by ``programs.export``).

Every instruction is one torch call or one scalar expression:

- a *kernel* on tensors (``lerp_``, ``addcmul_``, ``sqrt``, ...), printed as a ``torch._foreach_*`` call in the
  multi-tensor function and as a tensor method in the single-tensor function;
- a *scalar* (``1 - beta1 ** step``): a primitive applied to floats (``lr``, ``step``, hyperparameters, literals),
  computed once per step on the host;
- a *generic* primitive on tensors (``cosh``, ``cosine_sim``, ...), printed from its one definition in
  ``programs.primitives``;
- a *global norm* over every tensor of the parameter group, and the optional decoupled weight decay.

Tensor values are kept *lazy* while that saves work: ``k * B`` (``Scaled``), ``k * A * B`` (``Prod``),
``k * N / D`` (``Quot``) and sums of those (``Lin``), where ``k`` is a float computed once per step. They become
kernels only when needed, which yields AdamW's and Lion's kernels: ``lerp_`` for ``interp``,
``mul_`` + ``addcmul_`` for ``interp(square(g), v, b)``, ``addcdiv_``/``add_(alpha=)`` to apply the update, ``mul_``
for decoupled weight decay. A buffer is updated in place when it is ours (a state buffer or a temporary) and no
live value reads it any more.

The program's constants become hyperparameters (``hyperparameters``): the interpolation coefficients of the m/v
updates are ``betas``, a coefficient of ``m * c`` is ``momentum``, of ``w * c`` ``weight_decay``, the protected
epsilon of a division by a square root ``eps``; other constants get generic names ``c1, c2, ...`` (equal values
share one name); 0, 0.5, 1 and 2 (and their negatives) stay literals. Lowering takes time linear in the length of
the program.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Union

import numpy as np

from programs.compile import CONSTANT, GLOBAL, SEGMENT, STATIC, TENSOR, StatementLevels, _result_level
from programs.errors import ProgramError
from programs.primitives import CONSTANT_LIMIT, EPS, PRIMITIVES
from programs.program import STATE, Program
from programs.torch_ops import NumpyScalarOps

Ref = Union[str, float]  # a variable of the step or a literal
Bounds = tuple[float, float]

LIST, ONE, FLOAT = "list", "one", "float"  # a value per tensor (list), one 0-d tensor per group, a Python float
LR_BOUND = 1e10  # learning rates are assumed below this when deciding whether a scalar fits a kernel argument
STRUCTURAL = frozenset({0.0, 0.5, 1.0, 2.0})  # |constants| that stay literals
TORCH_STATE_NAMES = {"m": "exp_avg", "v": "exp_avg_sq"}  # state keys and step-function names, as torch.optim's
_INPUT_NAMES = {"w": "param", "g": "grad", "lr": "lr", "t": "step", **TORCH_STATE_NAMES}
_READABLE = re.compile(r"[a-z][a-z0-9_]{0,23}\Z")

# Names a variable of the generated module may never take: Python's, the module's own, the step functions'.
RESERVED = frozenset(
    set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))
    | {"torch", "math", "annotations", "params", "grads", "exp_avgs", "exp_avg_sqs", "param", "grad", "exp_avg",
       "exp_avg_sq", "lr", "step", "foreach", "group", "state", "loss", "closure", "self", "betas", "eps",
       "weight_decay", "momentum", "defaults", "bucket", "buckets", "update", "norms"}
)


@dataclass(frozen=True)
class Instr:
    """``target = op(*args)``; ``kind`` is ``kernel``, ``scalar`` (args: primitive, *refs), ``generic`` (args:
    primitive, reduces, *operands), ``global_norm`` or ``decay`` (args: the factor of ``w``)."""

    kind: str
    op: str
    args: tuple
    target: str | None = None


@dataclass(frozen=True)
class Hyperparameter:
    """A constructor keyword and param-group key; ``members`` are the names the step functions take (``beta1``,
    ``beta2`` for ``betas``), ``low <= value <= high`` (``< high`` when ``high_open``)."""

    name: str
    default: tuple[float, ...]
    members: tuple[str, ...]
    low: float
    high: float
    high_open: bool
    doc: str

    @property
    def is_tuple(self) -> bool:
        return self.name == "betas"


@dataclass(frozen=True)
class Lowered:
    """A program as step instructions; ``outputs`` are the variables holding the new (m, v) (``None``: not kept)."""

    instructions: tuple[Instr, ...]
    state_names: tuple[str, ...]
    outputs: tuple[str | None, str | None]
    uses_step: bool
    hyperparameters: tuple[Hyperparameter, ...]
    constants: dict[float, str]  # program constant -> hyperparameter member name
    bounds: dict[str, Bounds]  # every scalar variable's range
    safe: frozenset[str]  # scalar variables computed with Python float math (the others in float64 torch)
    kinds: dict[str, str]  # LIST, ONE or FLOAT for every variable
    has_global: bool
    names: frozenset[str]  # every variable name the step functions use


@dataclass(frozen=True)
class Scal:
    ref: Ref


@dataclass(frozen=True)
class Reduced:
    """A per-tensor (list of 0-d tensors) or global (0-d tensor) scalar held in ``var``."""

    var: str


@dataclass(frozen=True)
class Scaled:
    k: Ref
    buf: str


@dataclass(frozen=True)
class Prod:
    k: Ref
    a: str
    b: str


@dataclass(frozen=True)
class Quot:
    k: Ref
    n: str
    d: str


@dataclass(frozen=True)
class Lin:
    terms: tuple[Scaled | Prod | Quot, ...]


Term = Union[Scaled, Prod, Quot]
Form = Union[Scal, Reduced, Scaled, Prod, Quot, Lin]
TENSOR_FORMS = (Scaled, Prod, Quot, Lin)
MAX_TERMS = 8  # a lazy sum longer than this is materialized (keeps lowering linear in the program's length)
_ALWAYS_NONNEGATIVE = {"abs", "sqrt", "square", "norm", "global_norm", "exp", "exp2", "exp10", "cosh", "arccos",
                       "power", "get_pi", "get_e", "get_eps"}
_NONNEGATIVE_IF_ARGS_ARE = {"add", "mul", "div", "min", "cube", "cbrt", "sign", "reciprocal", "tanh", "sinh",
                            "arcsinh", "arctan", "arcsin", "arctanh", "dot", "cosine_sim"}


# -- abstract execution in linear time ---------------------------------------------------------------------------

_INPUT_LEVELS = {"w": TENSOR, "g": TENSOR, "m": TENSOR, "v": TENSOR, "lr": STATIC, "t": STATIC}


def statement_levels(program: Program) -> list[StatementLevels]:
    """The level of every statement's arguments and result (as ``programs.compile.value_levels``), validating the
    program on the way: ``ProgramError`` for a read before assignment or a scalar update or state."""
    env = {name: _INPUT_LEVELS[name] for name in program.inputs}
    found = []
    for index, statement in enumerate(program.statements):
        args = []
        for arg in statement.args:
            if isinstance(arg, str) and arg not in env:
                raise ProgramError(f"statement {index + 1} ({statement.to_text()}): {arg!r} is used before it is "
                                   "assigned")
            args.append(env[arg] if isinstance(arg, str) else CONSTANT)
            if not isinstance(arg, str) and not (math.isfinite(arg) and abs(arg) <= CONSTANT_LIMIT):
                raise ProgramError(f"statement {index + 1} ({statement.to_text()}): constant {arg!r} is outside "
                                   f"[-{CONSTANT_LIMIT:g}, {CONSTANT_LIMIT:g}]")
        reduces = TENSOR in args
        found.append(StatementLevels(tuple(args), _result_level(statement.fn, tuple(args), reduces), reduces))
        env[statement.target] = found[-1].result
    for role, name in zip(("update", "m", "v"), program.outputs):
        if name not in env:
            raise ProgramError(f"return: {name!r} ({role}) is never assigned")
        if env[name] != TENSOR:
            raise ProgramError(f"return: {role} {name!r} is a scalar; the {role} must be a tensor (shaped like w)")
    return found


# -- hyperparameters ---------------------------------------------------------------------------------------------


def structural(value: float) -> bool:
    return abs(value) in STRUCTURAL


def find_hyperparameters(program: Program, live: set[int]) -> tuple[list[Hyperparameter], dict[float, str]]:
    """The program's constants as hyperparameters (roles recognised as described in the module docstring)."""
    betas: list[float] = []
    momentum: list[float] = []
    decay: list[float] = []
    order: list[float] = []
    for index, statement in enumerate(program.statements):
        if index not in live:
            continue
        args = statement.args
        constants = [a for a in args if not isinstance(a, str) and not structural(a)]
        order += constants
        if statement.fn == "interp" and args[1] in STATE and _unit(args[2]):
            betas.append(args[2])  # type: ignore[arg-type]
        elif statement.fn == "mul" and len(constants) == 1 and _unit(constants[0]) and set(args) & set(STATE):
            momentum.append(constants[0])
        elif statement.fn == "mul" and len(constants) == 1 and constants[0] > 0 and "w" in args:
            decay.append(constants[0])
    names: dict[float, str] = {}
    found: list[Hyperparameter] = []
    values = list(dict.fromkeys(b for b in betas if not structural(b)))
    if values:
        members = tuple(f"beta{i + 1}" for i in range(len(values)))
        names.update(zip(values, members))
        found.append(Hyperparameter("betas", tuple(values), members, 0.0, 1.0, True,
                                    "coefficients of the interpolations into the state (``interp(g, m, beta1)``)"))
    for role, candidates, low, high, doc in (
            ("momentum", momentum, 0.0, 1.0, "the factor of the previous m"),
            ("weight_decay", decay, 0.0, math.inf, "the coefficient of w in the update")):
        value = next((c for c in candidates if c not in names), None)
        if value is not None:
            names[value] = role
            found.append(Hyperparameter(role, (value,), (role,), low, high, role == "momentum", doc))
    for value in dict.fromkeys(order):
        if value not in names:
            name = f"c{sum(1 for h in found if h.name.startswith('c'))+ 1}"
            names[value] = name
            low, high = (0.0, 1.0) if 0.0 <= value <= 1.0 else (0.0, CONSTANT_LIMIT) if value > 0 else (
                -CONSTANT_LIMIT, 0.0)
            found.append(Hyperparameter(name, (value,), (name,), low, high, False, "a constant of the program"))
    return found, names


def _unit(arg: object) -> bool:
    return not isinstance(arg, str) and 0.0 < arg < 1.0  # type: ignore[operator]


EPS_PARAMETER = Hyperparameter("eps", (EPS,), ("eps",), 0.0, math.inf, False,
                               "added to the denominator of the division by a square root")
DECAY_PARAMETER = Hyperparameter("weight_decay", (0.0,), ("weight_decay",), 0.0, math.inf, False,
                                 "decoupled weight decay: ``w = w * (1 - lr * weight_decay)`` before the update")


# -- scalar ranges -----------------------------------------------------------------------------------------------


def _lo(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def _hi(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _span(values: list[float]) -> Bounds:
    if any(math.isnan(v) for v in values):
        return -math.inf, math.inf
    return min(values), max(values)


def _mul(a: Bounds, b: Bounds) -> Bounds:
    with np.errstate(all="ignore"):
        return _span([float(np.float64(x) * y) for x in a for y in b])


ANY: Bounds = (-math.inf, math.inf)


def scalar_bounds(fn: str, args: list[Bounds]) -> tuple[Bounds, bool]:
    """The range of primitive ``fn`` on floats in these ranges, and whether Python's float math computes it without
    raising (``OverflowError``, ``ZeroDivisionError``, ``ValueError``) and with the program's IEEE results."""
    if fn == "add":
        return (_lo(args[0][0] + args[1][0]), _hi(args[0][1] + args[1][1])), True
    if fn == "sub":
        return (_lo(args[0][0] - args[1][1]), _hi(args[0][1] - args[1][0])), True
    if fn == "mul":
        return _mul(args[0], args[1]), True
    if fn == "negative":
        return (-args[0][1], -args[0][0]), True
    if fn == "invert":
        return (_lo(1.0 - args[0][1]), _hi(1.0 - args[0][0])), True
    if fn in ("abs", "sqrt", "power"):
        lo, hi = args[0]
        magnitude = (max(lo, -hi, 0.0), max(-lo, hi))
        if fn == "abs":
            return magnitude, True
        if fn == "sqrt":
            return (math.sqrt(magnitude[0]), math.sqrt(magnitude[1])), True
        exponent = args[1]
        if exponent[0] >= 0.0 and magnitude[1] <= 1.0:
            return (0.0, 1.0), True
        if exponent[1] <= 0.0 and magnitude[0] >= 1.0:
            return (0.0, 1.0), True
        return (0.0, math.inf), False
    if fn == "div":
        lo, hi = args[1][0] + EPS, args[1][1] + EPS
        if lo > 0.0 or hi < 0.0:
            return _mul(args[0], _span([1.0 / lo, 1.0 / hi])), True
        return ANY, False
    return ANY, False


def fits_float32(bounds: Bounds) -> bool:
    """Whether every value in ``bounds`` can be the scalar argument of a fused float32 kernel."""
    limit = float(np.finfo(np.float32).max)
    return -limit <= bounds[0] and bounds[1] <= limit


def fold(fn: str, *values: float) -> float:
    """Primitive ``fn`` on literals, with the program's IEEE float64 semantics (inf and nan, never an exception)."""
    with np.errstate(all="ignore"):
        return float(PRIMITIVES[fn].impl(NumpyScalarOps, *(np.float64(v) for v in values)))


def readable(name: str) -> bool:
    """Whether a program variable's name can name a variable of the generated module."""
    return bool(_READABLE.match(name)) and name not in RESERVED and name not in _INPUT_NAMES and not (
        re.fullmatch(r"(beta|c|s|x)\d+", name))


def buffers(form: Form) -> tuple[str, ...]:
    if isinstance(form, Scaled):
        return (form.buf,)
    if isinstance(form, Prod):
        return (form.a, form.b)
    if isinstance(form, Quot):
        return (form.n, form.d)
    if isinstance(form, Lin):
        return tuple(b for t in form.terms for b in buffers(t))
    return ()


def terms(form: Form) -> tuple[Term, ...]:
    return form.terms if isinstance(form, Lin) else (form,)  # type: ignore[return-value]


def lower(program: Program) -> Lowered:
    """The step instructions of ``program`` (validated by abstract execution)."""
    return _Lowering(program).run()


def live_and_state(program: Program) -> tuple[set[int], tuple[str, ...]]:
    """The statements an exported step needs and the state buffers it keeps.

    A state buffer is kept only when the program reads its previous value; its new value is then needed too.
    """
    kept: set[str] = set()
    while True:
        needed = {program.outputs[0]} | {program.outputs[1 + STATE.index(s)] for s in kept}
        live: set[int] = set()
        for index in range(len(program.statements) - 1, -1, -1):
            statement = program.statements[index]
            if statement.target in needed:
                live.add(index)
                needed.discard(statement.target)
                needed.update(statement.variables())
        reads = {s for s in STATE if s in needed}
        if reads <= kept:
            return live, tuple(s for s in STATE if s in kept)
        kept |= reads


def nonnegative_values(program: Program, live: set[int], kept: tuple[str, ...]) -> set[object]:
    """Values (input names, statement indices) that are >= 0 at every step.

    State is assumed non-negative and the assumption dropped for a buffer whose new value is not provably so,
    until nothing changes (m and v start at zero).
    """
    assumed = set(kept)
    while True:
        found, binding = _nonnegative_pass(program, live, assumed)
        keep = {s for s in assumed if binding[program.outputs[1 + STATE.index(s)]] in found}
        if keep == assumed:
            return found
        assumed = keep


def _nonnegative_pass(program: Program, live: set[int], assumed: set[str]) -> tuple[set[object], dict[str, object]]:
    found: set[object] = {"lr", "t"} | assumed
    binding: dict[str, object] = {name: name for name in program.inputs}
    for index, statement in enumerate(program.statements):
        if index not in live:
            continue
        args = [(binding[a] in found) if isinstance(a, str) else a >= 0.0 for a in statement.args]
        fn = statement.fn
        ok = (fn in _ALWAYS_NONNEGATIVE or (fn in _NONNEGATIVE_IF_ARGS_ARE and all(args))
              or (fn == "max" and any(args)) or (fn == "clip_by_global_norm" and args[0])
              or (fn == "interp" and args[0] and args[1] and _unit_literal(statement.args[2])))
        if ok:
            found.add(index)
        binding[statement.target] = index
    return found, binding


def _unit_literal(arg: object) -> bool:
    return not isinstance(arg, str) and 0.0 <= arg <= 1.0  # type: ignore[operator]


class _Lowering:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.levels = statement_levels(program)
        self.live, self.state_names = live_and_state(program)
        hyperparameters, self.constants = find_hyperparameters(program, self.live)
        self.hyperparameters = list(hyperparameters)
        self.bounds: dict[str, Bounds] = {"lr": (0.0, LR_BOUND), "t": (1.0, math.inf)}
        for h in self.hyperparameters + [EPS_PARAMETER, DECAY_PARAMETER]:
            for member in h.members:
                self.bounds[member] = (h.low, min(h.high, CONSTANT_LIMIT) if h.name.startswith("c") else h.high)
        self.safe: set[str] = {"lr", "t", *self.bounds}
        self.kinds: dict[str, str] = {name: FLOAT for name in self.bounds}
        self.kinds.update({name: LIST for name in ("w", "g", *STATE)})
        self.used_names: set[str] = set(self.bounds) | {"w", "g", *STATE}
        self.statement_name: str | None = None
        self.eps_ref: Ref = EPS
        self.uses_eps = False
        self.has_global = False
        self.scalar_statement = False
        self.nonnegative_values = nonnegative_values(program, self.live, self.state_names)
        self.end = len(program.statements)
        self.last_use = self._last_uses()
        self.instrs: list[Instr] = []
        self.counter = 0
        self.owned = set(self.state_names)
        self.nonnegative = {s for s in self.state_names if s in self.nonnegative_values}
        self.holders: dict[str, list[tuple[int, object]]] = defaultdict(list)  # the two latest-read holders
        self.forms: dict[object, Form] = {}
        for name in ("w", "g", *self.state_names):
            self._assign(name, Scaled(1.0, name))
        self.forms["lr"], self.forms["t"] = Scal("lr"), Scal("t")
        self.binding: dict[str, object] = {name: name for name in program.inputs}

    def _last_uses(self) -> dict[object, int]:
        binding: dict[str, object] = {name: name for name in self.program.inputs}
        last: dict[object, int] = {}
        self.uses: Counter = Counter()
        for index, statement in enumerate(self.program.statements):
            if index in self.live:
                for value in {binding[name] for name in statement.variables()}:
                    last[value] = index
                    self.uses[value] += 1
                binding[statement.target] = index
        self.final = binding
        for name in (self.program.outputs[0], *self._kept_outputs()):
            last[binding[name]] = self.end
            self.uses[binding[name]] += 1
        return last

    def _kept_outputs(self) -> list[str]:
        return [self.program.outputs[1 + STATE.index(s)] for s in self.state_names]

    # -- bookkeeping ----------------------------------------------------------------------------------------------

    def _var(self, prefix: str, kind: str) -> str:
        """A fresh variable: the program's name for the statement being lowered when it reads well, else
        ``prefix`` and a number (names from the program are untrusted: ``readable`` whitelists them)."""
        name = self.statement_name
        self.statement_name = None  # one variable per statement takes the program's name
        if name is None or not readable(name) or name in self.used_names:
            while True:
                self.counter += 1
                name = f"{prefix}{self.counter}"
                if name not in self.used_names:
                    break
        self.used_names.add(name)
        self.kinds[name] = kind
        return name

    def _emit(self, kind: str, op: str, *args: object, target: str | None = None) -> str | None:
        self.instrs.append(Instr(kind, op, tuple(args), target))
        return target

    def _fresh(self, op: str, *args: object, kind: str = LIST) -> str:
        buf = self._emit("kernel", op, *args, target=self._var("x", kind))
        self.owned.add(buf)  # type: ignore[arg-type]
        return buf  # type: ignore[return-value]

    def _inplace(self, op: str, buf: str, *args: object) -> str:
        self.nonnegative.discard(buf)
        self._emit("kernel", op, buf, *args)
        return buf

    def _assign(self, value: object, form: Form) -> None:
        self.forms[value] = form
        use = self.last_use.get(value, -1)
        for buf in set(buffers(form)):
            top = [entry for entry in self.holders[buf] if entry[1] != value] + [(use, value)]
            top.sort(key=lambda entry: entry[0], reverse=True)
            self.holders[buf] = top[:2]

    def _mutable(self, buf: str, index: int, refs: Counter, exclude: tuple[object, ...] = ()) -> bool:
        """Whether ``buf`` may be overwritten while lowering statement ``index``: it is ours, this statement reads
        it through one argument only, and no value that holds it is read after this statement (the two holders
        read last suffice: ``exclude`` names one at most)."""
        if buf not in self.owned or refs[buf] > 1:
            return False
        for use, holder in self.holders[buf]:
            if holder not in exclude:
                return use <= index
        return True

    # -- scalars --------------------------------------------------------------------------------------------------

    def _scalar(self, fn: str, *refs: Ref) -> Ref:
        if all(not isinstance(r, str) for r in refs):
            return fold(fn, *refs)  # type: ignore[arg-type]  # literals only
        bounds, safe = scalar_bounds(fn, [self._bounds(r) for r in refs])
        name = self.statement_name
        if not self.scalar_statement:
            self.statement_name = None  # a tensor statement's name is for its tensor
        target = self._var("s", FLOAT)
        if not self.scalar_statement:
            self.statement_name = name
        self.bounds[target] = bounds
        if safe:  # Python's + - * never raise; / and ** are safe when the ranges say so
            self.safe.add(target)
        return self._emit("scalar", fn, *refs, target=target)  # type: ignore[return-value]

    def _bounds(self, ref: Ref) -> Bounds:
        if isinstance(ref, str):
            return self.bounds.get(ref, ANY)
        return (ref, ref) if not math.isnan(ref) else ANY

    def _times(self, a: Ref, b: Ref) -> Ref:
        if a == 1.0 and not isinstance(a, str):
            return b
        if b == 1.0 and not isinstance(b, str):
            return a
        return self._scalar("mul", a, b)

    def _negated(self, k: Ref) -> Ref:
        return self._scalar("negative", k)

    # -- the statements -------------------------------------------------------------------------------------------

    def run(self) -> Lowered:
        for index, statement in enumerate(self.program.statements):
            if index in self.live:
                self._statement(index, statement.fn, statement.args, self.levels[index])
            self.binding[statement.target] = index
        outputs = self._finish()
        hyperparameters = self.hyperparameters
        if self.uses_eps:
            hyperparameters.append(EPS_PARAMETER)
        if not any(h.name == "weight_decay" for h in hyperparameters):
            hyperparameters.append(DECAY_PARAMETER)
        order = {"betas": 0, "momentum": 1, "eps": 2, "weight_decay": 3}
        hyperparameters.sort(key=lambda h: order.get(h.name, 4))
        return Lowered(tuple(self.instrs), self.state_names, outputs, self.program.uses_step, tuple(hyperparameters),
                       dict(self.constants), self.bounds, frozenset(self.safe), self.kinds, self.has_global,
                       frozenset(self.used_names))

    def _statement(self, index: int, fn: str, args: tuple[Ref, ...], level: StatementLevels) -> None:
        forms = [self.forms[self.binding[a]] if isinstance(a, str) else Scal(self._constant(a)) for a in args]
        refs = Counter(b for f in forms for b in buffers(f))
        self.statement_name = self.program.statements[index].target
        denominator = args[1] if fn == "div" else None
        by_root = isinstance(denominator, str) and isinstance(self.binding[denominator], int) and (
            self.program.statements[self.binding[denominator]].fn == "sqrt")  # type: ignore[index]
        self.eps_ref = "eps" if by_root else EPS
        self.scalar_statement = level.result <= STATIC
        if level.result <= STATIC:
            if fn in PRIMITIVES and PRIMITIVES[fn].arity == 0:
                form: Form = Scal(fold(fn))
            else:
                form = Scal(self._scalar(fn, *(f.ref for f in forms)))  # type: ignore[union-attr]
        elif fn in ("global_norm", "clip_by_global_norm") and level.reduces_tensors and level.args[0] >= SEGMENT:
            form = self._global(index, fn, forms, refs, level)
        elif level.result > SEGMENT and not any(isinstance(f, Reduced) for f in forms):
            form = self._tensor(index, fn, forms, refs, level)
        else:
            form = self._generic(index, fn, forms, refs, level)
        if isinstance(form, Lin) and len(form.terms) > MAX_TERMS or isinstance(form, (Lin, Quot)) and (
                self.uses[index] > 1):
            form = Scaled(1.0, self._materialize(form, index, Counter(buffers(form))))  # compute once, read often
        if isinstance(form, Scaled) and index in self.nonnegative_values and _positive_literal(form.k):
            self.nonnegative.add(form.buf)
        self._assign(index, form)
        self.statement_name = None

    def _constant(self, value: float) -> Ref:
        return self.constants.get(value, value)

    def _generic(self, index: int, fn: str, forms: list[Form], refs: Counter, level: StatementLevels) -> Form:
        operands = [self._operand(f, index, refs) for f in forms]
        reduces = level.reduces_tensors and fn in ("norm", "dot", "cosine_sim")
        if fn == "norm" and reduces and level.args[0] > SEGMENT:
            return Reduced(self._fresh("norm", operands[0]))
        return self._generic_call(fn, reduces, operands, level.result)

    def _generic_call(self, fn: str, reduces: bool, operands: list, result: int) -> Form:
        kind = LIST if result >= SEGMENT else ONE
        out = self._emit("generic", fn, reduces, *operands, target=self._var("x", kind))
        self.owned.add(out)  # type: ignore[arg-type]
        return Scaled(1.0, out) if result > SEGMENT else Reduced(out)  # type: ignore[arg-type]

    def _global(self, index: int, fn: str, forms: list[Form], refs: Counter, level: StatementLevels) -> Form:
        x = self._operand(forms[0], index, refs)
        self.has_global = True
        name, self.statement_name = self.statement_name, None
        norm = self._emit("global_norm", "global_norm", x, target=self._var("norm", ONE))
        if fn == "global_norm":
            return Reduced(norm)  # type: ignore[arg-type]
        self.statement_name = name
        clip_norm = self._operand(forms[1], index, refs)
        return self._generic_call("clip_with_norm", False, [x, norm, clip_norm], level.result)

    def _operand(self, form: Form, index: int, refs: Counter) -> Ref:
        if isinstance(form, Scal):
            return form.ref
        if isinstance(form, Reduced):
            return form.var
        return self._materialize(form, index, refs)

    # -- tensor statements with fast paths ------------------------------------------------------------------------

    def _tensor(self, index: int, fn: str, forms: list[Form], refs: Counter, level: StatementLevels) -> Form:
        rule = getattr(self, f"_rule_{fn}", None)
        form = rule(index, forms, refs) if rule is not None else None
        return form if form is not None else self._generic(index, fn, forms, refs, level)

    def _rule_mul(self, index: int, forms: list[Form], refs: Counter) -> Form | None:
        x, y = forms
        if isinstance(y, Scal):
            return self._scale(x, y.ref)
        if isinstance(x, Scal):
            return self._scale(y, x.ref)
        a, b = self._as_scaled(x, index, refs), self._as_scaled(y, index, refs)
        return Prod(self._times(a.k, b.k), a.buf, b.buf)

    def _rule_div(self, index: int, forms: list[Form], refs: Counter) -> Form | None:
        x, y = forms
        if isinstance(x, Scal):
            return None
        if isinstance(y, Scal):
            return self._scale(x, self._scalar("div", 1.0, y.ref))
        numerator = self._as_scaled(x, index, refs)
        return Quot(numerator.k, numerator.buf, self._plus_eps(y, index, refs))

    def _rule_add(self, index: int, forms: list[Form], refs: Counter, sign: float = 1.0) -> Form | None:
        x, y = forms
        if isinstance(x, Scal) or isinstance(y, Scal):
            tensor, value = (y, x.ref) if isinstance(x, Scal) else (x, y.ref)  # type: ignore[union-attr]
            if isinstance(x, Scal) and sign < 0:
                return None
            shift = value if sign > 0 else self._negated(value)
            buf = self._materialize(tensor, index, refs)
            if self._mutable(buf, index, refs):
                return Scaled(1.0, self._inplace("add_", buf, shift))
            return Scaled(1.0, self._fresh("add", buf, shift))
        if len(terms(x)) + len(terms(y)) > MAX_TERMS:
            x = Scaled(1.0, self._materialize(x, index, refs))
        second = terms(y) if sign > 0 else tuple(self._scale(t, -1.0) for t in terms(y))
        return Lin(terms(x) + second)  # type: ignore[arg-type]

    def _rule_sub(self, index: int, forms: list[Form], refs: Counter) -> Form | None:
        return self._rule_add(index, forms, refs, sign=-1.0)

    def _rule_negative(self, index: int, forms: list[Form], refs: Counter) -> Form | None:
        return self._scale(forms[0], -1.0)

    def _rule_square(self, index: int, forms: list[Form], refs: Counter) -> Form | None:
        x = self._as_scaled(forms[0], index, refs)
        return Prod(self._times(x.k, x.k), x.buf, x.buf)

    def _rule_interp(self, index: int, forms: list[Form], refs: Counter) -> Form | None:
        x, y, a = forms
        if not isinstance(a, Scal) or isinstance(x, Scal) or isinstance(y, Scal):
            return None
        one_minus_a = self._scalar("sub", 1.0, a.ref)
        for prod, other, k_other, k_prod in ((x, y, a.ref, one_minus_a), (y, x, one_minus_a, a.ref)):
            if isinstance(prod, Prod) and isinstance(other, Scaled) and self._mutable(other.buf, index, refs):
                # (1 - a) x + a y with one side a product: scale the buffer, add the product (AdamW's second moment)
                buf = other.buf
                factor = self._times(k_other, other.k)
                if factor != 1.0 or isinstance(factor, str):
                    self._inplace("mul_", buf, factor)
                return Scaled(1.0, self._inplace("addcmul_", buf, prod.a, prod.b, self._times(k_prod, prod.k)))
        xb, yb = self._materialize(x, index, refs), self._materialize(y, index, refs)
        if xb != yb and self._mutable(yb, index, refs):
            return Scaled(1.0, self._inplace("lerp_", yb, xb, one_minus_a))
        if xb != yb and self._mutable(xb, index, refs):
            return Scaled(1.0, self._inplace("lerp_", xb, yb, a.ref))
        return Scaled(1.0, self._fresh("lerp", xb, yb, a.ref))

    def _rule_sqrt(self, index: int, forms: list[Form], refs: Counter) -> Form | None:
        x = forms[0]
        if isinstance(x, Prod) and x.a == x.b:  # sqrt(k a^2) = sqrt|k| |a|
            return Scaled(self._scalar("sqrt", x.k), self._unary("abs", x.a, index, refs))
        x = self._as_scaled(x, index, refs)
        buf = x.buf
        if buf not in self.nonnegative:
            buf = self._unary("abs", buf, index, refs)
        root = self._unary("sqrt", buf, index, refs)
        return Scaled(self._scalar("sqrt", x.k), root)

    def _rule_abs(self, index: int, forms: list[Form], refs: Counter) -> Form | None:
        x = self._as_scaled(forms[0], index, refs)
        return Scaled(self._scalar("abs", x.k), self._unary("abs", x.buf, index, refs))

    def _rule_sign(self, index: int, forms: list[Form], refs: Counter) -> Form | None:
        x = forms[0]
        if not (isinstance(x, Scaled) and _positive_literal(x.k)):
            x = Scaled(1.0, self._materialize(x, index, refs))
        return Scaled(1.0, self._unary("sign", x.buf, index, refs))

    def _unary(self, op: str, buf: str, index: int, refs: Counter) -> str:
        """``op`` of a buffer, in place when allowed; abs and sqrt results are non-negative."""
        if self._mutable(buf, index, refs):
            out = self._inplace(f"{op}_", buf)
        else:
            out = self._fresh(op, buf)
        if op in ("abs", "sqrt"):
            self.nonnegative.add(out)
        return out

    # -- lazy forms -----------------------------------------------------------------------------------------------

    def _scale(self, form: Form, k: Ref) -> Form:
        if isinstance(form, Scaled):
            return Scaled(self._times(form.k, k), form.buf)
        if isinstance(form, Prod):
            return Prod(self._times(form.k, k), form.a, form.b)
        if isinstance(form, Quot):
            return Quot(self._times(form.k, k), form.n, form.d)
        return Lin(tuple(self._scale(t, k) for t in form.terms))  # type: ignore[misc, union-attr]

    def _as_scaled(self, form: Form, index: int, refs: Counter) -> Scaled:
        if isinstance(form, Scaled):
            return form
        return Scaled(1.0, self._materialize(form, index, refs))

    def _plus_eps(self, form: Form, index: int, refs: Counter) -> str:
        """A buffer holding ``form + EPS`` (the protected denominator; ``eps`` when dividing by a square root)."""
        x = self._as_scaled(form, index, refs)
        eps = self.eps_ref
        self.uses_eps |= eps == "eps"
        buf = x.buf
        if self._mutable(buf, index, refs):
            if x.k != 1.0 or isinstance(x.k, str):
                self._inplace("mul_", buf, x.k)
            return self._inplace("add_", buf, eps)
        if x.k != 1.0 or isinstance(x.k, str):
            return self._inplace("add_", self._fresh("mul", buf, x.k), eps)
        return self._fresh("add", buf, eps)

    def _materialize(self, form: Form, index: int, refs: Counter, exclude: tuple[object, ...] = ()) -> str:
        """A buffer holding the value of a tensor form (in place in one of its buffers when allowed)."""
        if isinstance(form, Lin):
            return self._materialize_sum(form, index, refs, exclude)
        if isinstance(form, Scaled):
            if form.k == 1.0 and not isinstance(form.k, str):
                return form.buf
            if self._mutable(form.buf, index, refs, exclude):
                return self._inplace("mul_", form.buf, form.k)
            return self._fresh("mul", form.buf, form.k)
        first, second, k = (form.a, form.b, form.k) if isinstance(form, Prod) else (form.n, form.d, form.k)
        op = "times" if isinstance(form, Prod) else "over"
        if first != second and self._mutable(first, index, refs, exclude):
            buf = self._inplace(f"{op}_", first, second)
        else:
            buf = self._fresh(op, first, second)
        if k != 1.0 or isinstance(k, str):
            self._inplace("mul_", buf, k)
        return buf

    def _materialize_sum(self, form: Lin, index: int, refs: Counter, exclude: tuple[object, ...]) -> str:
        first, rest = form.terms[0], form.terms[1:]
        buf = self._materialize(first, index, refs, exclude)  # refs count every term's buffers
        if not self._mutable(buf, index, refs, exclude) or buf in {b for t in rest for b in buffers(t)}:
            buf = self._fresh("clone", buf)
        for term in rest:
            self._accumulate(buf, term, 1.0)
        return buf

    def _accumulate(self, buf: str, term: Term, sign: float) -> None:
        """``buf += sign * term`` with one kernel."""
        k = term.k if sign > 0 else self._negated(term.k)
        if isinstance(term, Scaled):
            self._inplace("axpy_", buf, term.buf, k)
        elif isinstance(term, Prod):
            self._inplace("addcmul_", buf, term.a, term.b, k)
        else:
            self._inplace("addcdiv_", buf, term.n, term.d, k)

    # -- the end of the step: new state, then w -= update ------------------------------------------------------

    def _finish(self) -> tuple[str | None, str | None]:
        update_id = self.final[self.program.outputs[0]]
        outputs: dict[str, str] = {}
        taken: set[str] = set()
        for name, output in zip(self.state_names, self._kept_outputs()):
            value = self.final[output]
            form = self.forms[value]
            refs = Counter(buffers(form))
            buf = self._materialize(form, self.end - 1, refs, exclude=(value,))
            if buf not in self.owned or buf in taken or self.kinds.get(buf) != LIST:
                buf = self._fresh("clone", buf)
            taken.add(buf)
            outputs[name] = buf
            self._assign(value, Scaled(1.0, buf))
        self._apply_update(self.forms[update_id], update_id)
        return outputs.get("m"), outputs.get("v")

    def _apply_update(self, update: Form, update_id: object) -> None:
        parts = terms(update)
        decay = [t for t in parts if isinstance(t, Scaled) and t.buf == "w"]
        rest = [t for t in parts if not (isinstance(t, Scaled) and t.buf == "w")]
        extra = None  # weight decay added to a program that has none of its own (0 by default: skipped)
        if "weight_decay" not in self.constants.values():
            extra = self._times("lr", "weight_decay")
        if any("w" in buffers(t) for t in rest):
            buf = self._materialize(update, self.end - 1, Counter(buffers(update)), exclude=(update_id,))
            if extra is not None:
                self._emit("decay", "mul_", "w", self._scalar("sub", 1.0, extra))
            self._inplace("axpy_", "w", buf, -1.0)
            return
        if decay:
            k: Ref = decay[0].k
            for t in decay[1:] + ([Scaled(extra, "w")] if extra is not None else []):
                k = self._scalar("add", k, t.k)
            self._inplace("mul_", "w", self._scalar("sub", 1.0, k))
        elif extra is not None:
            self._emit("decay", "mul_", "w", self._scalar("sub", 1.0, extra))
        for term in rest:
            self._accumulate("w", term, -1.0)


def _positive_literal(k: Ref) -> bool:
    return not isinstance(k, str) and k > 0.0
