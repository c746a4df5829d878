"""Quantization: round-to-nearest mantissas and canonical NaN, infinities, signed zeros and tiny values."""

from __future__ import annotations

import numpy as np
import pytest

from hashing import HashConfig, fingerprint, quantize


def bits(x: np.ndarray) -> list[int]:
    return np.asarray(x, dtype=np.float64).view(np.uint64).tolist()


def test_rounds_to_nearest_not_truncates():
    # Truncation would keep 0.99999999 below 1.0 (mantissa all ones); rounding carries into the exponent.
    assert bits(quantize(np.array([0.99999999]), 10)) == bits(np.array([1.0]))
    assert bits(quantize(np.array([1.00000001]), 10)) == bits(np.array([1.0]))


def test_rounding_keeps_the_sign():
    assert quantize(np.array([-0.99999999]), 10)[0] == -1.0


def test_values_a_bucket_apart_differ():
    assert quantize(np.array([1.0]), 10)[0] != quantize(np.array([1.0 + 2.0**-9]), 10)[0]


@pytest.mark.parametrize("mantissa_bits", [0, 1, 4, 10, 23])
def test_result_has_at_most_the_requested_bits(mantissa_bits):
    values = np.random.default_rng(0).normal(size=100) * 1e3
    dropped = (1 << (52 - mantissa_bits)) - 1
    assert all(b & dropped == 0 for b in bits(quantize(values, mantissa_bits)))


@pytest.mark.parametrize("mantissa_bits", [0, 3, 10])
def test_nearest_representable_value(mantissa_bits):
    values = np.random.default_rng(1).uniform(1.0, 2.0, size=200)
    step = 2.0**-mantissa_bits  # spacing in [1, 2)
    expected = np.floor(values / step + 0.5) * step
    np.testing.assert_array_equal(quantize(values, mantissa_bits), expected)


def test_52_bits_is_identity_on_ordinary_values():
    values = np.array([0.1, -3.7, 1e300, 2.5e-300])
    np.testing.assert_array_equal(quantize(values, 52), values)


def test_all_nans_become_one_nan():
    payload_nan = np.array([0x7FF0_0000_0000_0001, 0xFFF8_0000_0000_0000], dtype=np.uint64).view(np.float64)
    out = quantize(np.concatenate([payload_nan, [np.nan]]), 10)
    assert np.isnan(out).all()
    assert len(set(bits(out))) == 1


def test_infinities_stay_distinct_and_canonical():
    out = quantize(np.array([np.inf, -np.inf]), 10)
    assert out[0] == np.inf and out[1] == -np.inf


def test_negative_zero_is_zero():
    assert bits(quantize(np.array([-0.0]), 10)) == bits(np.array([0.0]))


def test_tiny_magnitudes_flush_to_zero():
    out = quantize(np.array([1e-31, -1e-31, 1e-29]), 10, flush_below=1e-30)
    assert bits(out[:2]) == [0, 0]
    assert out[2] != 0.0


def test_relative_flush_acts_along_the_last_axis():
    values = np.array([[1.0, 1e-14], [1e-14, 1e-15]])
    out = quantize(values, 10, flush_relative=1e-12)
    assert out[0, 1] == 0.0  # residue next to 1.0
    assert out[1, 0] != 0.0 and out[1, 1] != 0.0  # a row of small values keeps its own scale


def test_relative_flush_ignores_infinities_for_the_scale():
    out = quantize(np.array([np.inf, 1e-20]), 10, flush_relative=1e-12)
    assert out[1] != 0.0


def test_rounding_past_the_largest_float_gives_infinity():
    assert quantize(np.array([np.finfo(np.float64).max]), 10)[0] == np.inf


def test_does_not_modify_its_input():
    values = np.array([0.99999999, -0.0, np.nan])
    before = bits(values)
    quantize(values, 4, flush_below=1.0)
    assert bits(values) == before


def test_bad_width_is_a_value_error():
    with pytest.raises(ValueError, match="mantissa_bits"):
        quantize(np.array([1.0]), 53)


def test_fingerprint_merges_near_equal_and_canonical_values():
    a = np.array([[1.0, np.nan, -0.0, np.inf]])
    b = np.array([[0.99999999, -np.nan, 0.0, np.inf]])
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(-a)


def test_fingerprint_depends_on_shape_and_config():
    values = np.arange(6.0)
    assert fingerprint(values) != fingerprint(values.reshape(2, 3))
    assert fingerprint(values) != fingerprint(values, HashConfig(mantissa_bits=11))


def _quantize_reference(values, mantissa_bits, flush_below=0.0, flush_relative=0.0):
    """``quantize`` as first written (a mask per step): the faster one must give the same bits."""
    x = np.array(values, dtype=np.float64)
    magnitude = np.abs(x)
    tiny = magnitude < flush_below
    if flush_relative > 0.0 and x.ndim > 0 and x.size > 0:
        finite_magnitude = np.where(np.isfinite(x), magnitude, 0.0)
        tiny |= magnitude < flush_relative * finite_magnitude.max(axis=-1, keepdims=True)
    tiny |= x == 0.0
    x[tiny] = 0.0
    bits = x.view(np.uint64)
    drop = 52 - mantissa_bits
    if drop:
        half = np.uint64(1 << (drop - 1))
        mask = np.uint64(((1 << 64) - 1) ^ ((1 << drop) - 1))
        bits = np.where(np.isfinite(x), (bits + half) & mask, bits)
    bits[np.isnan(x)] = np.uint64(0x7FF8_0000_0000_0000)
    return bits.view(np.float64)


@pytest.mark.parametrize("mantissa_bits", [0, 1, 10, 23, 51, 52])
def test_quantize_gives_the_bits_of_the_reference(mantissa_bits: int) -> None:
    rng = np.random.default_rng(mantissa_bits)
    special = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 5e-324, -5e-324, 2.2e-308, 1.7976931348623157e308,
                        -1.7976931348623157e308, 1e-31, 1.0, -1.0, 0.99999999, 1.5, 2.0**-9 + 1.0])
    signalling = np.array([0x7FF0_0000_0000_0001, 0xFFF4_0000_0000_0000], dtype=np.uint64).view(np.float64)
    for _ in range(40):
        values = rng.normal(size=(3, 4, 16)) * 10.0 ** rng.integers(-40, 40, size=(3, 4, 16))
        picks = rng.integers(0, 16, size=(3, 4, 16)) == 0
        values[picks] = rng.choice(np.concatenate([special, signalling]), size=int(picks.sum()))
        for flush_below, flush_relative in ((0.0, 0.0), (1e-30, 1e-12), (1e-3, 0.1)):
            got = quantize(values, mantissa_bits, flush_below, flush_relative)
            want = _quantize_reference(values, mantissa_bits, flush_below, flush_relative)
            assert np.array_equal(got.view(np.uint64), want.view(np.uint64))
