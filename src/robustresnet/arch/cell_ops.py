"""The candidate operations of NAS cells (DARTS family: AdvRush, RACL; RobNet), by genotype name.

Each builder takes (channels, stride, affine, factory kwargs) and returns a module whose
submodule names are the reference code's (`op.N`, `conv_1`, `conv_2`, `bn`, `conv`, `res`), so
the authors' checkpoints load. RobNet's op codes map to names here: "00" none, "01" sep_conv_3x3,
"10" skip_connect, "11" res_sep_conv_3x3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class Wrapped(nn.Module):
    """A module whose layers sit under `op`: the reference's layout for its conv ops, and
    RobNet's `ChosenOperation` around every edge (`_ops.K.op.…`)."""

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        # `op` kept for checkpoint compatibility (the reference's attribute name).
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def relu_conv_bn(c_in: int, c_out: int, *, affine: bool, **fk: Any) -> Wrapped:
    """ReLU, 1×1 conv (no bias), BatchNorm: the cells' input preprocessing."""
    return Wrapped(
        nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, 1, bias=False, **fk),
            nn.BatchNorm2d(c_out, affine=affine, **fk),
        )
    )


def sep_conv(channels: int, kernel: int, stride: int, *, affine: bool, **fk: Any) -> Wrapped:
    """Two rounds of ReLU, depthwise k×k conv, pointwise conv, BatchNorm; the first strided."""
    pad, c = kernel // 2, channels
    return Wrapped(
        nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, kernel, stride, pad, groups=c, bias=False, **fk),
            nn.Conv2d(c, c, 1, bias=False, **fk),
            nn.BatchNorm2d(c, affine=affine, **fk),
            nn.ReLU(),
            nn.Conv2d(c, c, kernel, 1, pad, groups=c, bias=False, **fk),
            nn.Conv2d(c, c, 1, bias=False, **fk),
            nn.BatchNorm2d(c, affine=affine, **fk),
        )
    )


def dil_conv(channels: int, kernel: int, stride: int, *, affine: bool, **fk: Any) -> Wrapped:
    """ReLU, depthwise k×k conv with dilation 2, pointwise conv, BatchNorm."""
    c = channels
    return Wrapped(
        nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, kernel, stride, kernel - 1, dilation=2, groups=c, bias=False, **fk),
            nn.Conv2d(c, c, 1, bias=False, **fk),
            nn.BatchNorm2d(c, affine=affine, **fk),
        )
    )


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two strided 1×1 convs, the second shifted by
    one pixel, concatenated, then BatchNorm."""

    def __init__(self, c_in: int, c_out: int, *, affine: bool, **fk: Any) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False, **fk)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False, **fk)
        self.bn = nn.BatchNorm2d(c_out, affine=affine, **fk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class ResSepConv(nn.Module):
    """RobNet's residual separable conv: SepConv 3×3 plus an identity (or reducing) shortcut."""

    def __init__(self, channels: int, stride: int, *, affine: bool, **fk: Any) -> None:
        super().__init__()
        self.conv = sep_conv(channels, 3, stride, affine=affine, **fk)
        self.res = skip(channels, stride, affine=affine, **fk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.res(x)


class Zero(nn.Module):
    """The "none" edge: zeros of the (strided) input's shape, as the reference computes them."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def skip(channels: int, stride: int, *, affine: bool, **fk: Any) -> nn.Module:
    """Identity, or FactorizedReduce where the edge halves the resolution."""
    if stride == 1:
        return nn.Identity()
    return FactorizedReduce(channels, channels, affine=affine, **fk)


def _conv_7x1_1x7(channels: int, stride: int, *, affine: bool, **fk: Any) -> nn.Module:
    c = channels
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False, **fk),
        nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False, **fk),
        nn.BatchNorm2d(c, affine=affine, **fk),
    )


def _sep(kernel: int) -> Callable[..., nn.Module]:
    return lambda c, stride, *, affine, **fk: sep_conv(c, kernel, stride, affine=affine, **fk)


def _dil(kernel: int) -> Callable[..., nn.Module]:
    return lambda c, stride, *, affine, **fk: dil_conv(c, kernel, stride, affine=affine, **fk)


# name -> builder(channels, stride, *, affine, **factory_kwargs); the genotypes' vocabulary.
CELL_OPS: dict[str, Callable[..., nn.Module]] = {
    "none": lambda c, stride, *, affine, **fk: Zero(stride),
    "avg_pool_3x3": lambda c, stride, *, affine, **fk: nn.AvgPool2d(
        3, stride, 1, count_include_pad=False
    ),
    "max_pool_3x3": lambda c, stride, *, affine, **fk: nn.MaxPool2d(3, stride, 1),
    "skip_connect": skip,
    "sep_conv_3x3": _sep(3),
    "sep_conv_5x5": _sep(5),
    "sep_conv_7x7": _sep(7),
    "dil_conv_3x3": _dil(3),
    "dil_conv_5x5": _dil(5),
    "conv_7x1_1x7": _conv_7x1_1x7,
    "res_sep_conv_3x3": lambda c, stride, *, affine, **fk: ResSepConv(
        c, stride, affine=affine, **fk
    ),
}
