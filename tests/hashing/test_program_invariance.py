"""Programs that behave the same hash the same, however they are written (one test per kind of rewrite)."""

from __future__ import annotations

from hashing import functional_hash
from programs import library, parse

LION = """
def train(w, g, m, v, lr):
    c = interp(g, m, 0.9)
    update = sign(c) * lr
    m = interp(g, m, 0.99)
    return update, m, v
"""


def same(a: str, b: str) -> bool:
    return functional_hash(parse(a)) == functional_hash(parse(b))


def test_library_text_hashes_like_the_library_program():
    assert functional_hash(parse(LION)) == functional_hash(library.get("lion"))


def test_reordered_independent_statements():
    reordered = """
def train(w, g, m, v, lr, t):
    v = interp(square(g), v, 0.999)
    v_hat = v / (1.0 - power(0.999, t))
    m = interp(g, m, 0.9)
    m_hat = m / (1.0 - power(0.9, t))
    update = m_hat / sqrt(v_hat) * lr
    return update, m, v
"""
    assert functional_hash(parse(reordered)) == functional_hash(library.get("adam"))


def test_renamed_variables():
    renamed = LION.replace("c", "direction")
    assert same(LION, renamed)


def test_dead_code():
    dead = """
def train(w, g, m, v, lr):
    junk = cosh(g)
    c = interp(g, m, 0.9)
    unused = exp(c) * 3.7
    update = sign(c) * lr
    m = interp(g, m, 0.99)
    return update, m, v
"""
    assert same(LION, dead)


def test_commuted_operands():
    commuted = """
def train(w, g, m, v, lr):
    c = interp(g, m, 0.9)
    update = lr * sign(c)
    m = interp(g, m, 0.99)
    return update, m, v
"""
    assert same(LION, commuted)


def test_m_over_sqrt_m_squared_is_sign():
    # The raw Lion program's form (Chen et al. 2023, Lion): equal to sign(c) up to the protected 1e-8 in the division.
    algebraic = """
def train(w, g, m, v, lr):
    c = interp(g, m, 0.9)
    update = c / sqrt(c * c) * lr
    m = interp(g, m, 0.99)
    return update, m, v
"""
    assert same(LION, algebraic)


def test_interp_written_out():
    written_out = """
def train(w, g, m, v, lr):
    c = m * 0.9 + g * (1.0 - 0.9)
    update = sign(c) * lr
    m = 0.99 * m + 0.01 * g
    return update, m, v
"""
    assert same(LION, written_out)


def test_sqrt_of_square_is_abs():
    a = """
def train(w, g, m, v, lr):
    update = sqrt(square(g)) * g * lr
    return update, m, v
"""
    b = """
def train(w, g, m, v, lr):
    update = abs(g) * g * lr
    return update, m, v
"""
    assert same(a, b)


def test_state_that_never_reaches_the_update():
    with_unused_state = """
def train(w, g, m, v, lr):
    c = interp(g, m, 0.9)
    update = sign(c) * lr
    m = interp(g, m, 0.99)
    v = v + square(g) * 17.0
    return update, m, v
"""
    assert same(LION, with_unused_state)


def test_adam_bias_correction_written_differently():
    rewritten = """
def train(w, g, m, v, lr, t):
    v = v * 0.999 + g * g * 0.001
    m = m * 0.9 + g * 0.1
    v_hat = v / (1.0 - power(0.999, t))
    m_hat = m / (1.0 - power(0.9, t))
    update = lr * (m_hat / sqrt(v_hat))
    return update, m, v
"""
    assert functional_hash(parse(rewritten)) == functional_hash(library.get("adam"))
