"""Quantization of probe outputs: the step that makes nearly-equal behaviour hash equal.

Each float64 is rounded to ``mantissa_bits`` bits of mantissa, to nearest (ties away from zero) — not truncated, so
0.99999999 and 1.0 land on the same value — by integer arithmetic on the IEEE-754 bit pattern: adding half of the
dropped range and masking it off carries into the exponent exactly when rounding should. Before rounding, values
are canonicalized: every NaN becomes one NaN, -0.0 becomes +0.0, and tiny magnitudes (absolute, or relative to the
largest finite magnitude along the last axis) become zero; +inf and -inf stay themselves.
"""

from __future__ import annotations

import numpy as np

_MANTISSA_BITS = 52
_ALL_ONES = (1 << 64) - 1
CANONICAL_NAN_BITS = np.uint64(0x7FF8_0000_0000_0000)


def quantize(
    values: np.ndarray, mantissa_bits: int, flush_below: float = 0.0, flush_relative: float = 0.0
) -> np.ndarray:
    """A canonical float64 copy of ``values``: flushed, rounded to ``mantissa_bits`` bits, NaN/±0 unified.

    Equal inputs give bit-identical outputs; ``mantissa_bits=52`` only canonicalizes. A finite value whose rounding
    overflows becomes ±inf, as IEEE rounding would.
    """
    if not 0 <= mantissa_bits <= _MANTISSA_BITS:
        raise ValueError(f"mantissa_bits must be in 0..{_MANTISSA_BITS}, got {mantissa_bits}")
    x = np.array(values, dtype=np.float64)
    finite = np.isfinite(x)  # flushing only zeroes finite values: this mask holds throughout
    magnitude = np.abs(x)
    tiny = magnitude < flush_below
    if flush_relative > 0.0 and x.ndim > 0 and x.size > 0:
        finite_magnitude = np.where(finite, magnitude, 0.0)
        tiny |= magnitude < flush_relative * finite_magnitude.max(axis=-1, keepdims=True)
    x[tiny] = 0.0
    np.add(x, 0.0, out=x, where=finite)  # -0.0 -> +0.0 (IEEE round to nearest); every other value is unchanged
    bits = x.view(np.uint64)
    drop = _MANTISSA_BITS - mantissa_bits
    if drop:
        rounded = bits + np.uint64(1 << (drop - 1))
        rounded &= np.uint64(_ALL_ONES ^ ((1 << drop) - 1))
        np.copyto(bits, rounded, where=finite)
    bits[np.isnan(x)] = CANONICAL_NAN_BITS
    return x
