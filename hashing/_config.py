"""The configuration of functional hashing: which probes to run and how coarsely to quantize their outputs."""

from __future__ import annotations

from dataclasses import dataclass

# Chosen from bench/collision_study.py (README, "Functional hashing"): over 12,000 mutants of the library programs,
# 10 bits made the fewest errors (false collisions + false splits) while every hand-written equivalent pair merged.
DEFAULT_MANTISSA_BITS = 10


@dataclass(frozen=True)
class HashConfig:
    """How ``functional_hash`` probes and quantizes a candidate.

    Two hashes are comparable only when computed under equal configs (the config is mixed into the digest).

    - ``mantissa_bits``: bits of each output's mantissa kept after rounding to nearest (0..52; float64 keeps 52).
    - ``flush_below``: magnitudes below this are zero (absolute).
    - ``flush_relative``: values below this fraction of the largest finite magnitude along the output's last axis
      are zero (floating-point residue next to real values, e.g. ``x - x*0.1*10``).
    - ``seeds``: one probe per seed, batched (programs: the leading axis S of the probe arrays).
    - ``steps``: optimizer steps a program probe runs (t = 1..steps); other runners may use it as they see fit.
    - ``tensor_scales``: one parameter tensor per entry (K = len), gradients and weights scaled by it; unequal scales
      make per-tensor and global reductions distinguishable.
    - ``tensor_size``: entries n of each probe tensor.
    - ``magnitudes``: probe values are log-uniform in this range (times the tensor's scale) with random signs.
    - ``lr``: the learning rate given to program probes. A power of two: sign-like updates (``sign(c) * lr``) are then
      exactly representable at any ``mantissa_bits`` and sit mid-bucket, so forms equal to ~1e-6 relative collide.
    - ``examples``: inputs per seed for runners that feed a batch (architectures: ~10 examples, Gillard et al. 2023).
    """

    mantissa_bits: int = DEFAULT_MANTISSA_BITS
    flush_below: float = 1e-30
    flush_relative: float = 1e-12
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 4
    tensor_scales: tuple[float, ...] = (1.0, 5.0, 0.5)
    tensor_size: int = 16
    magnitudes: tuple[float, float] = (2.0**-7, 32.0)
    lr: float = 2.0**-6
    examples: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "tensor_scales", tuple(float(s) for s in self.tensor_scales))
        object.__setattr__(self, "magnitudes", tuple(float(s) for s in self.magnitudes))
        if not 0 <= self.mantissa_bits <= 52:
            raise ValueError(f"HashConfig.mantissa_bits must be in 0..52, got {self.mantissa_bits}")
        if self.flush_below < 0 or not 0 <= self.flush_relative < 1:
            raise ValueError("HashConfig: flush_below must be >= 0 and flush_relative in [0, 1)")
        if not self.seeds or self.steps < 1 or self.tensor_size < 1 or self.examples < 1:
            raise ValueError("HashConfig: seeds must be non-empty; steps, tensor_size and examples must be >= 1")
        if not self.tensor_scales or any(s <= 0 for s in self.tensor_scales):
            raise ValueError(f"HashConfig.tensor_scales must be positive numbers, got {self.tensor_scales}")
        if len(self.magnitudes) != 2 or not 0 < self.magnitudes[0] <= self.magnitudes[1]:
            raise ValueError(f"HashConfig.magnitudes must be (low, high) with 0 < low <= high, got {self.magnitudes}")

    def key(self) -> bytes:
        """A canonical byte string of this config, mixed into every digest computed under it."""
        return repr(tuple(getattr(self, name) for name in self.__dataclass_fields__)).encode()
