"""Parse untrusted program text into a ``Program``.

The text is read with ``ast.parse`` and walked against a whitelist: one ``def train(...)`` whose body is assignments
of calls/operators on names and numeric constants, then ``return update, m, v``. Nothing is ever evaluated; nested
expressions are flattened into fresh temporaries (``_1``, ``_2``, ...) so that each statement calls one function.

Every rejection is a ``ProgramError`` whose message is one line, ``line N: <what is wrong>``. Limits bound the time
and memory one text can cost (all checks are linear in the text): ``MAX_TEXT`` characters, ``MAX_STATEMENTS``
statements after flattening, expressions nested at most ``MAX_DEPTH`` deep, variable names of at most ``MAX_NAME``
characters. Together they guarantee that the canonical text of every accepted program is within ``MAX_TEXT`` again.
"""

from __future__ import annotations

import ast
import difflib
import io
import math
import tokenize
from typing import Any, Callable, TypeVar

from programs.analysis import check
from programs.errors import ProgramError
from programs.primitives import ALIASES, CONSTANT_LIMIT, PRIMITIVES
from programs.program import MAX_STATEMENTS, SIGNATURE, SIGNATURE_WITH_STEP, Arg, Program, Statement

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "power"}
MAX_TEXT = 300_000  # characters of program text (a 1,000-statement program needs well under half of it)
MAX_NAME = 64  # characters of a variable name
MAX_DEPTH = 100  # nesting of one expression (operators and calls inside each other)
_SHOWN = 40  # characters of user text quoted in a message
_T = TypeVar("_T")


def parse(text: str) -> Program:
    """Parse and validate program text; raise ``ProgramError`` naming the line and the problem."""
    if not isinstance(text, str):
        raise ProgramError(f"program text must be a string, got {type(text).__name__}")
    _check_characters(text)
    try:
        module = ast.parse(text)
    except SyntaxError as err:
        raise ProgramError(f"line {err.lineno or 1}: syntax error: {_syntax_reason(err)}") from None
    except (RecursionError, MemoryError):  # CPython's own parser gives up on very deep nesting, with no line
        line = _busiest_line(text)
        raise ProgramError(f"line {line}: expression nested too deeply; split it into several statements") from None
    except ValueError as err:  # the checks above leave none known; keep the one-line promise for any other
        raise ProgramError(f"line 1: cannot parse program text: {_show(str(err)) or type(err).__name__}") from None
    if len(module.body) != 1 or not isinstance(module.body[0], ast.FunctionDef):
        line = _first_extra(module).lineno if module.body else 1
        raise ProgramError(f"line {line}: a program is exactly one 'def train(w, g, m, v, lr[, t]):' and nothing else")
    fn = module.body[0]
    program = _Builder(fn).build()
    try:
        check(program)
    except ProgramError as err:  # a scalar update/state: the return line is at fault
        raise _fail(fn.body[-1], str(err)) from None
    return program


def _check_characters(text: str) -> None:
    """Reject text over ``MAX_TEXT`` characters, NUL characters and characters UTF-8 cannot encode (surrogates),
    naming the line, before Python's parser sees them (it reports those without a line)."""
    if len(text) > MAX_TEXT:
        line = _line_of(text, MAX_TEXT)
        raise ProgramError(
            f"line {line}: program text is {len(text):,} characters, over the limit of {MAX_TEXT:,} (reached on this line)"
        )
    nul = text.find("\0")
    if nul >= 0:
        raise ProgramError(f"line {_line_of(text, nul)}: NUL character (\\x00) in program text; remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(text[err.start])
        raise ProgramError(
            f"line {_line_of(text, err.start)}: character U+{code:04X} cannot be encoded as UTF-8 "
            "(a lone surrogate); remove it"
        ) from None


def _line_of(text: str, position: int) -> int:
    """The 1-based line of character ``position`` (lines end at '\\n', '\\r\\n' or '\\r', as Python reads them)."""
    head = text[:position]
    return head.count("\n") + head.count("\r") - head.count("\r\n") + 1


def _syntax_reason(err: SyntaxError) -> str:
    message = err.msg or "invalid syntax"
    if "integer string conversion" in message:  # CPython's advice (sys.set_int_max_str_digits) does not apply here
        return f"integer literal too long; constants must be in [-{CONSTANT_LIMIT:g}, {CONSTANT_LIMIT:g}]"
    return _show(message, 200)


def _busiest_line(text: str) -> int:
    """The first line of the logical line with the most operator tokens: where an expression too deep for CPython's
    parser is. Only called after the parser has failed; 1 if the text does not tokenize."""
    best, best_line, count, start = -1, 1, 0, 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                if count > best:
                    best, best_line = count, start or token.start[0]
                count, start = 0, 0
            elif token.type == tokenize.OP:
                count += 1
                start = start or token.start[0]
    except (tokenize.TokenError, SyntaxError, RecursionError, MemoryError):
        pass
    return best_line


def _first_extra(module: ast.Module) -> ast.stmt:
    """The first top-level statement that is not the one ``def train``."""
    if not isinstance(module.body[0], ast.FunctionDef):
        return module.body[0]
    return module.body[1]


def _fail(node: ast.AST, message: str) -> ProgramError:
    return ProgramError(f"line {getattr(node, 'lineno', None) or 1}: {message}")


_RANGE = f"[-{CONSTANT_LIMIT:g}, {CONSTANT_LIMIT:g}]"


def _show(text: str, limit: int = _SHOWN) -> str:
    """``text`` on one line, cut to about ``limit`` characters, for quoting user input in a message."""
    text = " ".join(text.split()) if ("\n" in text or "\r" in text) else text
    return text if len(text) <= limit else text[:limit] + "..."


def _quote(name: str) -> str:
    """A user-written name quoted for a message (cut when long)."""
    return repr(_show(name))


def _suggestion(name: str) -> str:
    """'; did you mean 'x'?' for the nearest function name, else where the functions are listed."""
    known = sorted(PRIMITIVES) + sorted(ALIASES)
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6) if len(name) <= MAX_NAME else []
    if close:
        return f"; did you mean {close[0]!r}? (the function table is in the README)"
    return "; see the function table in the README"


def _depth(root: ast.AST) -> int:
    """How deeply expressions nest inside ``root`` (1 for a name or constant), without recursion."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))
    return deepest


class _Builder:
    def __init__(self, fn: ast.FunctionDef) -> None:
        self.fn = fn
        self.statements: list[Statement] = []
        self.defined: set[str] = set()
        self.reserved = _all_names(fn)
        self.counter = 0

    def build(self) -> Program:
        inputs = self._signature()
        self.defined = set(inputs)
        body = self.fn.body
        if not body or not isinstance(body[-1], ast.Return):
            raise _fail(self.fn, "the program must end with 'return update, m, v'")
        for node in body[:-1]:
            self._guarded(self._statement, node)
            if len(self.statements) > MAX_STATEMENTS:
                raise _fail(node, f"the program has more than {MAX_STATEMENTS:,} statements (nested expressions count "
                                  "one per operator or call); split it or simplify it")
        outputs = self._guarded(self._return, body[-1])
        return Program(tuple(self.statements), outputs, inputs)

    @staticmethod
    def _guarded(method: Callable[[Any], _T], node: ast.stmt) -> _T:
        """``method(node)`` after checking the nesting depth of ``node``'s value (so that the recursive walk below
        stays far from Python's recursion limit; a RecursionError is still reported as a ProgramError)."""
        value = getattr(node, "value", None)
        if isinstance(value, ast.AST) and _depth(value) > MAX_DEPTH:
            raise _fail(node, f"expression nested too deeply (over {MAX_DEPTH} levels); split it into several statements")
        try:
            return method(node)
        except RecursionError:
            raise _fail(node, "expression nested too deeply; split it into several statements") from None

    def _signature(self) -> tuple[str, ...]:
        fn = self.fn
        if fn.name != "train":
            raise _fail(fn, f"the function must be named 'train', not {_quote(fn.name)}")
        if fn.decorator_list:
            raise _fail(fn, "decorators are not allowed")
        if getattr(fn, "type_params", None):  # def train[T](...), Python 3.12+
            raise _fail(fn, "type parameters are not allowed")
        if fn.returns is not None:
            raise _fail(fn, "return annotations are not allowed")
        a = fn.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults or a.kw_defaults:
            raise _fail(fn, "the signature must be plain: train(w, g, m, v, lr) or train(w, g, m, v, lr, t)")
        if any(arg.annotation is not None for arg in a.args):
            raise _fail(fn, "argument annotations are not allowed")
        names = tuple(arg.arg for arg in a.args)
        if names not in (SIGNATURE, SIGNATURE_WITH_STEP):
            shown = _show(", ".join(names), 80)
            raise _fail(fn, f"signature ({shown}) must be (w, g, m, v, lr) or (w, g, m, v, lr, t)")
        return names

    def _statement(self, node: ast.stmt) -> None:
        if not isinstance(node, ast.Assign):
            raise _fail(node, f"only assignments 'x = f(...)' are allowed here, not {_describe(node)}")
        if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            raise _fail(node, "assign to exactly one plain variable name ('x = ...')")
        target = node.targets[0].id
        self._check_name(node, target)
        value = node.value
        if _constant(value) is not None:
            raise _fail(node, "the right-hand side must call a function or operator, not a bare constant")
        if not isinstance(value, (ast.Call, ast.BinOp, ast.UnaryOp)):
            raise _fail(node, f"the right-hand side must call a function or operator, not {_describe(value)}")
        fn, args = self._call(value)
        self.statements.append(Statement(target, fn, args))
        self.defined.add(target)

    def _return(self, node: ast.Return) -> tuple[str, str, str]:
        value = node.value
        if not isinstance(value, ast.Tuple) or len(value.elts) != 3:
            raise _fail(node, "return exactly three values: 'return update, m, v'")
        outputs = []
        for element in value.elts:
            arg = self._arg(element)
            if not isinstance(arg, str):
                raise _fail(node, "return variables or expressions, not constants")
            outputs.append(arg)
        return tuple(outputs)  # type: ignore[return-value]

    def _call(self, node: ast.expr) -> tuple[str, tuple[Arg, ...]]:
        """The function and flattened arguments of a call/operator expression."""
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise _fail(node, f"operator {type(node.op).__name__} is not allowed (use + - * / **)")
            return op, (self._arg(node.left), self._arg(node.right))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return "negative", (self._arg(node.operand),)
            if isinstance(node.op, ast.UAdd):
                raise _fail(node, "unary '+' is not allowed")
            raise _fail(node, f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise _fail(node, f"only plain function names can be called, not {_describe(node.func)}")
            if node.keywords:
                raise _fail(node, "keyword arguments are not allowed")
            name = ALIASES.get(node.func.id, node.func.id)
            if name not in PRIMITIVES:
                raise _fail(node, f"unknown function {_quote(node.func.id)}{_suggestion(node.func.id)}")
            arity = PRIMITIVES[name].arity
            if len(node.args) != arity:
                raise _fail(node, f"{node.func.id}() takes {arity} argument(s), got {len(node.args)}")
            return name, tuple(self._arg(a) for a in node.args)
        raise _fail(node, f"{_describe(node)} is not allowed")

    def _arg(self, node: ast.expr) -> Arg:
        value = _constant(node)
        if value is not None:
            if not math.isfinite(value) or abs(value) > CONSTANT_LIMIT:
                raise _fail(node, f"constant {value!r} is outside {_RANGE}")
            return value
        if isinstance(node, ast.Name):
            if node.id not in self.defined:
                raise _fail(node, f"variable {_quote(node.id)} is used before it is assigned")
            return node.id
        if isinstance(node, (ast.Call, ast.BinOp, ast.UnaryOp)):
            fn, args = self._call(node)
            temp = self._temp()
            self.statements.append(Statement(temp, fn, args))
            self.defined.add(temp)
            return temp
        raise _fail(node, f"{_describe(node)} is not allowed")

    def _temp(self) -> str:
        while True:
            self.counter += 1
            name = f"_{self.counter}"
            if name not in self.reserved:
                return name

    def _check_name(self, node: ast.AST, name: str) -> None:
        if len(name) > MAX_NAME:
            raise _fail(node, f"variable name {_quote(name)} is {len(name):,} characters; the limit is {MAX_NAME}")
        if name in PRIMITIVES or name in ALIASES:
            raise _fail(node, f"{name!r} is a function name and cannot be a variable")
        if name.startswith("__"):
            raise _fail(node, f"variable names may not start with '__' ({name!r})")


def _constant(node: ast.expr) -> float | None:
    """The value of a numeric literal (optionally negated), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _constant(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(node, f"only numeric constants are allowed, not {type(value).__name__} {_show(repr(value))}")
        if isinstance(value, int) and abs(value) > CONSTANT_LIMIT:  # float() of a huge int raises OverflowError
            shown = repr(value) if value.bit_length() <= 128 else f"of {value.bit_length():,} bits"
            raise _fail(node, f"integer constant {shown} is outside {_RANGE}")
        return float(value)
    return None


def _all_names(fn: ast.FunctionDef) -> set[str]:
    return {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} | {a.arg for a in fn.args.args}


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Import: "an import", ast.ImportFrom: "an import", ast.Attribute: "attribute access",
        ast.Subscript: "subscripting", ast.Lambda: "a lambda", ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension", ast.DictComp: "a comprehension", ast.GeneratorExp: "a generator",
        ast.For: "a loop", ast.While: "a loop", ast.If: "an if statement", ast.IfExp: "a conditional expression",
        ast.Global: "a global statement", ast.Nonlocal: "a nonlocal statement", ast.FunctionDef: "a nested function",
        ast.Expr: "an expression statement", ast.AugAssign: "augmented assignment", ast.AnnAssign: "annotated assignment",
        ast.With: "a with statement", ast.Try: "a try statement", ast.Name: "a plain variable", ast.Delete: "del",
        ast.List: "a list", ast.Tuple: "a tuple", ast.Dict: "a dict", ast.Set: "a set", ast.Compare: "a comparison",
        ast.BoolOp: "a boolean operator", ast.Starred: "starred arguments", ast.JoinedStr: "a string",
        ast.ClassDef: "a class", ast.Raise: "raise", ast.Assert: "assert", ast.Pass: "pass",
    }
    if isinstance(node, ast.Constant):
        return f"constant {_show(repr(node.value))}"
    return kinds.get(type(node), type(node).__name__)
