"""The parser: canonical text round-trips, and every form outside the language is rejected with its line named."""

from __future__ import annotations

import numpy as np
import pytest

from programs import ProgramError, Program, Statement, library, parse
from programs.mutation import mutate, random_program
from programs.parser import MAX_TEXT

HEAD = "def train(w, g, m, v, lr):\n"
TAIL = "    return update, m, v\n"


def body(*lines: str, head: str = HEAD, tail: str = TAIL) -> str:
    return head + "".join(f"    {line}\n" for line in lines) + tail


def rejects(text: str, line: int, *words: str) -> str:
    """Assert that ``text`` is rejected with a message naming ``line`` (and containing ``words``)."""
    with pytest.raises(ProgramError) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith(f"line {line}: "), message
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", library.names())
def test_library_round_trips(name):
    program = library.get(name)
    assert parse(program.to_text()) == program
    assert parse(library.SOURCES[name]) == program


def test_random_and_mutated_programs_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(100):
        program = random_program(rng, int(rng.integers(1, 12)))
        for _ in range(int(rng.integers(0, 10))):
            program = mutate(program, rng)
        assert parse(program.to_text()) == program


def test_nested_expressions_are_flattened_into_temporaries():
    program = parse(body("update = sign(interp(g, m, 0.9)) * lr"))
    assert program.statements == (
        Statement("_1", "interp", ("g", "m", 0.9)),
        Statement("_2", "sign", ("_1",)),
        Statement("update", "mul", ("_2", "lr")),
    )
    assert parse(program.to_text()) == program


def test_temporaries_never_clash_with_user_names():
    program = parse(body("_1 = g * 2.0", "update = sign(_1 + g) * lr"))
    targets = [s.target for s in program.statements]
    assert targets[0] == "_1" and len(set(targets)) == len(targets)
    assert parse(program.to_text()) == program


def test_negative_constants_and_negation():
    program = parse(body("a = g * -0.5", "b = -a", "c = -(g)", "update = (b - -3.0) + c"))
    assert program.statements[0] == Statement("a", "mul", ("g", -0.5))
    assert program.statements[1] == Statement("b", "negative", ("a",))
    assert program.statements[2] == Statement("c", "negative", ("g",))
    assert program.statements[3].args == ("b", -3.0)
    assert "g * -0.5" in program.to_text()
    assert parse(program.to_text()) == program


def test_integer_and_exponent_constants_become_floats():
    program = parse(body("update = g * 2", "x = g * 1e-10", "y = g * 10000000000"))
    assert program.constants() == (2.0, 1e-10, 1e10)
    assert parse(program.to_text()) == program


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("interpolate(g, m, 0.9)", "interp(g, m, 0.9)"),
        ("maximum(g, m)", "max(g, m)"),
        ("minimum(g, m)", "min(g, m)"),
        ("pow(g, 2.0)", "power(g, 2.0)"),
        ("g ** 2.0", "power(g, 2.0)"),
    ],
)
def test_aliases_print_in_canonical_form(alias, canonical):
    program = parse(body(f"update = {alias}"))
    assert program.to_text() == body(f"update = {canonical}")
    assert parse(program.to_text()) == program


def test_optional_step_signature():
    program = parse(body("x = g * t", "update = x * lr", head="def train(w, g, m, v, lr, t):\n"))
    assert program.uses_step and program.inputs == ("w", "g", "m", "v", "lr", "t")
    assert program.to_text().startswith("def train(w, g, m, v, lr, t):")
    assert parse(program.to_text()) == program
    assert not parse(body("update = g * lr")).uses_step


def test_return_of_expressions_and_inputs():
    program = parse(HEAD + "    return g * lr, m, v\n")
    assert program.outputs == ("_1", "m", "v") and parse(program.to_text()) == program
    assert parse(HEAD + "    return g, v, m\n").outputs == ("g", "v", "m")


def test_comments_blank_lines_and_reassignment():
    program = parse("# an optimizer\n\n" + body("m = m * 0.9  # momentum", "", "m = m + g", "update = m * lr"))
    assert [s.target for s in program.statements] == ["m", "m", "update"]


def test_canonical_text_form():
    text = library.get("lion").to_text()
    assert text == (
        "def train(w, g, m, v, lr):\n"
        "    c = interp(g, m, 0.9)\n"
        "    _1 = sign(c)\n"
        "    update = _1 * lr\n"
        "    m = interp(g, m, 0.99)\n"
        "    return update, m, v\n"
    )


# ---------------------------------------------------------------- rejected forms (one test each)


def test_rejects_syntax_error():
    rejects(body("x = (g +"), 2, "syntax error")


def test_rejects_unknown_function():
    rejects(body("update = frobnicate(g)"), 2, "unknown function 'frobnicate'")


def test_rejects_wrong_arity():
    rejects(body("update = sign(g, m)"), 2, "sign() takes 1 argument(s), got 2")


def test_rejects_keyword_arguments():
    rejects(body("update = interp(g, m, a=0.9)"), 2, "keyword arguments")


def test_rejects_use_before_assignment():
    rejects(body("x = g * lr", "update = y * lr"), 3, "'y' is used before it is assigned")


def test_rejects_missing_return():
    rejects(body("update = g * lr", tail=""), 1, "must end with 'return update, m, v'")


def test_rejects_return_of_two_values():
    rejects(body("update = g * lr", tail="    return update, m\n"), 3, "return exactly three values")


def test_rejects_return_of_a_constant():
    rejects(body("update = g * lr", tail="    return update, 0.0, v\n"), 3, "not constants")


def test_rejects_bare_return():
    rejects(body("update = g * lr", tail="    return\n"), 3, "return exactly three values")


def test_rejects_return_of_a_scalar_update():
    rejects(body("update = norm(g)"), 3, "update 'update' is a scalar")


def test_rejects_return_of_a_scalar_state():
    rejects(body("update = g * lr", "v = global_norm(g)"), 4, "v 'v' is a scalar")


def test_rejects_return_of_an_unassigned_name():
    rejects(body("update = g * lr", tail="    return update, m, nope\n"), 3, "'nope' is used before it is assigned")


def test_rejects_import_in_the_body():
    rejects(body("import os", "update = g * lr"), 2, "an import")


def test_rejects_import_before_the_function():
    rejects("import os\n" + body("update = g * lr"), 1, "exactly one 'def train")


def test_rejects_from_import():
    rejects(body("from os import path", "update = g * lr"), 2, "an import")


def test_rejects_code_after_the_function():
    rejects(body("update = g * lr") + "x = 1\n", 4, "exactly one 'def train")


def test_rejects_empty_text():
    rejects("", 1, "exactly one 'def train")


def test_rejects_attribute_call():
    rejects(body("update = torch.sign(g)"), 2, "attribute access")


def test_rejects_dunder_attribute():
    rejects(body("x = g.__class__", "update = g * lr"), 2, "attribute access")


def test_rejects_attribute_as_argument():
    rejects(body("update = sign(g.real)"), 2, "attribute access")


def test_rejects_subscript():
    rejects(body("update = sign(g[0])"), 2, "subscripting")


def test_rejects_subscript_assignment():
    rejects(body("g[0] = sign(g)", "update = g * lr"), 2, "one plain variable name")


def test_rejects_lambda():
    rejects(body("f = lambda x: x", "update = g * lr"), 2, "a lambda")


def test_rejects_list_comprehension():
    rejects(body("x = [a for a in g]", "update = g * lr"), 2, "a comprehension")


def test_rejects_generator_expression():
    rejects(body("update = sign(a for a in g)"), 2, "a generator")


def test_rejects_for_loop():
    rejects(body("for i in g:", "    pass", "update = g * lr"), 2, "a loop")


def test_rejects_while_loop():
    rejects(body("while g:", "    pass", "update = g * lr"), 2, "a loop")


def test_rejects_if_statement():
    rejects(body("if g:", "    g = sign(g)", "update = g * lr"), 2, "an if statement")


def test_rejects_conditional_expression():
    rejects(body("update = sign(g if m else v)"), 2, "a conditional expression")


def test_rejects_string_constant():
    rejects(body("update = sign('g')"), 2, "only numeric constants", "str")


def test_rejects_docstring():
    rejects(body("'''a docstring'''", "update = g * lr"), 2, "an expression statement")


def test_rejects_bytes_constant():
    rejects(body("update = sign(b'g')"), 2, "only numeric constants", "bytes")


def test_rejects_boolean_constant():
    rejects(body("update = g * True"), 2, "only numeric constants", "bool")


def test_rejects_none_constant():
    rejects(body("update = g * None"), 2, "only numeric constants")


def test_rejects_complex_constant():
    rejects(body("update = g * 1j"), 2, "only numeric constants", "complex")


def test_rejects_global():
    rejects(body("global g", "update = g * lr"), 2, "a global statement")


def test_rejects_nonlocal():
    rejects(body("nonlocal g", "update = g * lr"), 2, "nonlocal")


def test_rejects_nested_def():
    rejects(body("def f(x):", "    return x", "update = g * lr"), 2, "a nested function")


def test_rejects_class():
    rejects(body("class C:", "    pass", "update = g * lr"), 2, "a class")


def test_rejects_augmented_assignment():
    rejects(body("m += g", "update = m * lr"), 2, "augmented assignment")


def test_rejects_annotated_assignment():
    rejects(body("x: float = g * lr", "update = x"), 2, "annotated assignment")


def test_rejects_tuple_assignment():
    rejects(body("a, b = g, m", "update = a * lr"), 2, "one plain variable name")


def test_rejects_chained_assignment():
    rejects(body("update = x = g * lr"), 2, "one plain variable name")


def test_rejects_wrong_function_name():
    rejects(body("update = g * lr", head="def step(w, g, m, v, lr):\n"), 1, "named 'train'")


def test_rejects_wrong_signature():
    rejects(body("update = g * lr", head="def train(w, g, m, lr):\n"), 1, "signature (w, g, m, lr)")


def test_rejects_reordered_signature():
    rejects(body("update = g * lr", head="def train(g, w, m, v, lr):\n"), 1, "must be (w, g, m, v, lr)")


def test_rejects_varargs_signature():
    rejects(body("update = g * lr", head="def train(w, g, m, v, lr, *rest):\n"), 1, "must be plain")


def test_rejects_decorator():
    rejects("@staticmethod\n" + body("update = g * lr"), 2, "decorators")


def test_rejects_default_arguments():
    rejects(body("update = g * lr", head="def train(w, g, m, v, lr=0.1):\n"), 1, "must be plain")


def test_rejects_argument_annotations():
    rejects(body("update = g * lr", head="def train(w, g, m, v, lr: float):\n"), 1, "annotations")


def test_rejects_return_annotation():
    rejects(body("update = g * lr", head="def train(w, g, m, v, lr) -> tuple:\n"), 1, "annotations")


def test_rejects_async_def():
    rejects("async " + body("update = g * lr"), 1, "exactly one 'def train")


@pytest.mark.parametrize("operator", ["%", "//", "@", "&", "|", "^", "<<", ">>"])
def test_rejects_unsupported_binary_operators(operator):
    rejects(body(f"update = g {operator} m"), 2, "is not allowed")


def test_rejects_bitwise_invert():
    rejects(body("update = ~g"), 2, "Invert is not allowed")


def test_rejects_unary_plus():
    rejects(body("update = +g"), 2, "unary '+'")


def test_rejects_boolean_not():
    rejects(body("update = not g"), 2, "Not is not allowed")


def test_rejects_boolean_operator():
    rejects(body("update = sign(g and m)"), 2, "a boolean operator")


def test_rejects_comparison():
    rejects(body("update = sign(g < m)"), 2, "a comparison")


def test_rejects_comparison_on_the_right_hand_side():
    rejects(body("update = g < m"), 2, "a comparison")


def test_rejects_bare_expression_statement():
    rejects(body("sign(g)", "update = g * lr"), 2, "an expression statement")


def test_rejects_bare_constant_assignment():
    rejects(body("x = 1.0", "update = g * lr"), 2, "not a bare constant")


def test_rejects_bare_negative_constant_assignment():
    rejects(body("x = -1.0", "update = g * lr"), 2, "not a bare constant")


def test_rejects_bare_variable_assignment():
    rejects(body("x = g", "update = x * lr"), 2, "not a plain variable")


def test_rejects_function_name_as_variable():
    rejects(body("sign = g * lr", "update = g * lr"), 2, "'sign' is a function name")


def test_rejects_alias_name_as_variable():
    rejects(body("interpolate = g * lr", "update = g * lr"), 2, "'interpolate' is a function name")


def test_rejects_dunder_variable():
    rejects(body("__x = g * lr", "update = g * lr"), 2, "may not start with '__'")


def test_rejects_calling_a_call():
    rejects(body("update = sign(g)(g)"), 2, "only plain function names")


def test_rejects_starred_arguments():
    rejects(body("update = sign(*g)"), 2, "starred")


def test_rejects_walrus():
    rejects(body("update = sign((x := g))"), 2, "is not allowed")


@pytest.mark.parametrize("constant", ["1e11", "-1e11", "1e999", "-1e999"])
def test_rejects_constants_outside_the_limit(constant):
    rejects(body(f"update = g * {constant}"), 2, "outside [-1e+10, 1e+10]")


def test_rejects_expression_too_deep_to_recurse():
    rejects(body("update = g" + " + g" * 2000), 2, "nested too deeply")


def test_rejects_list_and_dict_literals():
    rejects(body("update = sign([g])"), 2, "a list")
    rejects(body("update = sign({1: g})"), 2, "a dict")


@pytest.mark.parametrize("value", [b"def train(w, g, m, v, lr):\n", None, 3, ["text"]])
def test_rejects_non_string_input(value):
    with pytest.raises(ProgramError, match="program text must be a string"):
        parse(value)  # type: ignore[arg-type]


def test_rejects_huge_text():
    text = body("update = g * lr") + "# " + "x" * MAX_TEXT + "\n"
    rejects(text, 4, f"over the limit of {MAX_TEXT:,}")


def test_program_error_is_a_value_error():
    assert issubclass(ProgramError, ValueError)


def test_parse_never_evaluates_code(tmp_path):
    # A payload that would write a file if evaluated: rejected, and nothing happens.
    marker = tmp_path / "pwned"
    payload = body(f"x = open('{marker}', 'w')", "update = g * lr")
    rejects(payload, 2, "unknown function 'open'")
    assert not marker.exists()


def test_programs_built_directly_print_and_parse():
    program = Program((Statement("update", "clip_by_global_norm", ("g", 1.0)),), inputs=("w", "g", "m", "v", "lr", "t"))
    assert parse(program.to_text()) == program


def test_text_is_rendered_once_per_object_and_never_pickled():
    """``to_text`` is kept on the program and on each statement (a child shares its parent's statements, and every
    candidate's text goes to the database and to a worker); a pickle carries only the fields, so a program from
    another process renders and hashes as itself."""
    import pickle

    rng = np.random.default_rng(3)
    parent = library.get("lion")
    child = mutate(parent, rng)
    text = child.to_text()
    assert child.to_text() is text  # kept, not rendered again
    shared = [s for s in child.statements if any(s is p for p in parent.statements)]
    assert shared and all(s.to_text() is s.__dict__["_text"] for s in shared)
    copy = pickle.loads(pickle.dumps(child))
    assert not any(k.startswith("_") for k in copy.__dict__)
    assert not any(k.startswith("_") for s in copy.statements for k in s.__dict__)
    assert copy == child and hash(copy) == hash(child)
    assert copy.to_text() == text and parse(text) == child
