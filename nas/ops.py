"""Candidate operations on a cell edge, by name: the DARTS, sharpDARTS and NAS-Bench-201 operations.

``OPS[name](C, stride, affine, dim)`` builds the operation as an ``nn.Module`` mapping ``(N, C, *S)`` to
``(N, C, *S')`` where ``S' = S`` for stride 1 and ``S' = ceil(S / 2)`` for stride 2; ``dim`` is the number of
spatial axes: 1 for sequences (MNIST-1D), 2 for images. Modules never choose a device.

Names that the spaces share mean one thing everywhere (a genotype's text must have a single meaning):
``sep_conv_kxk`` is DARTS's separable convolution applied twice, which is exactly ``SharpSepConv`` with
``C_mid = C``; ``dil_conv_kxk`` is DARTS's single dilated separable convolution (sharpDARTS's code builds its
``dil_conv_3x3`` from ``SharpSepConv``; here the sharpDARTS primitive list uses the DARTS op of that name).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import NasError

OpFactory = Callable[[int, int, bool, int], nn.Module]


def conv(dim: int) -> type[nn.Module]:
    """``nn.Conv1d`` or ``nn.Conv2d``."""
    return _pick(dim, nn.Conv1d, nn.Conv2d)


def batch_norm(dim: int) -> type[nn.Module]:
    """``nn.BatchNorm1d`` or ``nn.BatchNorm2d``."""
    return _pick(dim, nn.BatchNorm1d, nn.BatchNorm2d)


def _pick(dim: int, one: type[nn.Module], two: type[nn.Module]) -> type[nn.Module]:
    if dim not in (1, 2):
        raise NasError(f"dim must be 1 (sequences) or 2 (images), got {dim!r}")
    return one if dim == 1 else two


class ReLUConvBN(nn.Sequential):
    """ReLU → k×k convolution → BatchNorm (the NAS-Bench-201 ``nor_conv`` and DARTS's cell preprocessing)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool, dim: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            conv(dim)(C_in, C_out, kernel, stride=stride, padding=padding, bias=False),
            batch_norm(dim)(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU → depthwise k×k (stride, dilation) → pointwise to ``C_out`` → BatchNorm (DARTS ``dil_conv``)."""

    def __init__(
        self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool, dim: int
    ) -> None:
        Conv = conv(dim)
        super().__init__(
            nn.ReLU(inplace=False),
            Conv(C_in, C_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=C_in, bias=False),
            Conv(C_in, C_out, 1, bias=False),
            batch_norm(dim)(C_out, affine=affine),
        )


class SharpSepConv(nn.Sequential):
    """sharpDARTS's separable convolution with a middle width (Hundt et al. 2019, sharpDARTS).

    ReLU → depthwise k×k (stride, dilation) → 1×1 to ``C_mid`` → BN → ReLU → depthwise k×k → 1×1 to ``C_out`` → BN.
    ``C_mid`` is ``C_mid`` when given, else ``int(mult · C_out)``. With ``C_mid = C_in`` this is DARTS's ``SepConv``.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int = 1,
        affine: bool = True,
        dim: int = 2,
        mult: float = 1.0,
        C_mid: int | None = None,
    ) -> None:
        Conv, BN = conv(dim), batch_norm(dim)
        mid = C_mid if C_mid is not None else int(mult * C_out)
        super().__init__(
            nn.ReLU(inplace=False),
            Conv(C_in, C_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=C_in, bias=False),
            Conv(C_in, mid, 1, bias=False),
            BN(mid, affine=affine),
            nn.ReLU(inplace=False),
            Conv(mid, mid, kernel, padding=(kernel - 1) // 2, groups=mid, bias=False),
            Conv(mid, C_out, 1, bias=False),
            BN(C_out, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` operation: zeros shaped like the strided input."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        spatial = (slice(None), slice(None)) + (slice(None, None, self.stride),) * (x.dim() - 2)
        return x[spatial].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halves the spatial size: ReLU, then two stride-2 1×1 convolutions on the input and on the input shifted by
    one position, concatenated along channels, then BatchNorm. Odd sizes give ``ceil(S / 2)`` like the pools."""

    def __init__(self, C_in: int, C_out: int, affine: bool, dim: int) -> None:
        super().__init__()
        Conv = conv(dim)
        self.dim = dim
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = Conv(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = Conv(C_in, C_out - C_out // 2, 1, stride=2, bias=False)
        self.bn = batch_norm(dim)(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1) * self.dim)[(slice(None), slice(None)) + (slice(1, None),) * self.dim]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _pool(kind: str, stride: int, dim: int) -> nn.Module:
    if kind == "max":
        return _pick(dim, nn.MaxPool1d, nn.MaxPool2d)(3, stride=stride, padding=1)
    return _pick(dim, nn.AvgPool1d, nn.AvgPool2d)(3, stride=stride, padding=1, count_include_pad=False)


def _none(C: int, stride: int, affine: bool, dim: int) -> nn.Module:
    conv(dim)  # validates dim
    return Zero(stride)


def _skip(C: int, stride: int, affine: bool, dim: int) -> nn.Module:
    conv(dim)  # validates dim
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine, dim)


def _sep(kernel: int) -> OpFactory:
    pad = (kernel - 1) // 2
    return lambda C, stride, affine, dim: SharpSepConv(C, C, kernel, stride, pad, 1, affine, dim, C_mid=C)


def _dil(kernel: int) -> OpFactory:
    pad = kernel - 1  # dilation 2
    return lambda C, stride, affine, dim: DilConv(C, C, kernel, stride, pad, 2, affine, dim)


def _sharp(dilation: int, mult: float = 1.0, C_mid: int | None = None) -> OpFactory:
    return lambda C, stride, affine, dim: SharpSepConv(
        C, C, 3, stride, dilation, dilation, affine, dim, mult=mult, C_mid=C_mid
    )


def _nor_conv(kernel: int) -> OpFactory:
    return lambda C, stride, affine, dim: ReLUConvBN(C, C, kernel, stride, (kernel - 1) // 2, affine, dim)


CHOKE_C_MID = 32  # sharpDARTS's "choke" width
FLOOD_MULT = 4  # sharpDARTS's "flood" multiplier

OPS: dict[str, OpFactory] = {
    "none": _none,
    "max_pool_3x3": lambda C, stride, affine, dim: _pool("max", stride, dim),
    "avg_pool_3x3": lambda C, stride, affine, dim: _pool("avg", stride, dim),
    "skip_connect": _skip,
    "sep_conv_3x3": _sep(3),
    "sep_conv_5x5": _sep(5),
    "dil_conv_3x3": _dil(3),
    "dil_conv_5x5": _dil(5),
    "flood_conv_3x3": _sharp(1, mult=FLOOD_MULT),
    "dil_flood_conv_3x3": _sharp(2, mult=FLOOD_MULT),
    "choke_conv_3x3": _sharp(1, C_mid=CHOKE_C_MID),
    "dil_choke_conv_3x3": _sharp(2, C_mid=CHOKE_C_MID),
    "nor_conv_1x1": _nor_conv(1),
    "nor_conv_3x3": _nor_conv(3),
}

POOLS = frozenset({"max_pool_3x3", "avg_pool_3x3"})


def make_op(name: str, C: int, stride: int, affine: bool = True, dim: int = 2) -> nn.Module:
    """``OPS[name](C, stride, affine, dim)`` with the arguments checked; unknown names raise ``NasError``."""
    if name not in OPS:
        raise NasError(f"unknown operation {name!r}; known: {', '.join(OPS)}")
    if stride not in (1, 2):
        raise NasError(f"stride must be 1 or 2, got {stride!r}")
    if C < 1:
        raise NasError(f"channels must be >= 1, got {C!r}")
    return OPS[name](C, stride, affine, dim)
