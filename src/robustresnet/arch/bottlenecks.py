"""The block study's bottleneck family: pre/post-activation, inverted, grouped, multi-scale, SE.

Same constructor as every block (see `blocks.py`); the paper compares them with the basic block and
RobustResBlock under adversarial training.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    ACTIVATIONS,
    NORMS,
    Block,
    SqueezeExcitation,
    conv,
    hierarchical,
    projection,
    se_error,
)


class PreActBottleneck(Block):
    """Pre-activation bottleneck: 1×1 to `planes`, k×k (grouped when `grouped`), 1×1 to 4·planes."""

    expansion = 4
    grouped = False

    def __init__(
        self,
        in_ch,
        planes,
        stride=1,
        *,
        kernel=3,
        act=ACTIVATIONS["relu"],
        norm=NORMS["batchnorm"],
        cardinality=4,
        device=None,
        dtype=None,
        **_options,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        out_ch = planes * self.expansion
        self.act = act(**fk)
        self.bn1 = norm(in_ch, **fk)
        self.conv1 = conv(in_ch, planes, 1, **fk)
        self.bn2 = norm(planes, **fk)
        groups = cardinality if self.grouped else 1
        self.conv2 = conv(planes, planes, kernel, stride, groups=groups, **fk)
        self.bn3 = norm(planes, **fk)
        self.conv3 = conv(planes, out_ch, 1, **fk)
        self.shortcut = projection(in_ch, out_ch, stride, **fk)

    @classmethod
    def width_error(cls, planes: int, *, cardinality: int = 1, **options: int) -> str | None:
        if cls.grouped and planes % cardinality:
            return f"a multiple of cardinality {cardinality} (grouped convs split the width)"
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.act(self.bn2(out)))
        out = self.conv3(self.act(self.bn3(out)))
        return self.merge(out, shortcut)

    def merge(self, out: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """Join the residual branch and the shortcut (the SE variants override this)."""
        return out + shortcut


class GroupedBottleneck(PreActBottleneck):
    """Bottleneck whose k×k conv is split into `cardinality` groups (aggregated convs)."""

    grouped = True


class SEBottleneck(PreActBottleneck):
    """Bottleneck with standard squeeze-and-excitation: the residual branch is rescaled."""

    def __init__(
        self, in_ch, planes, stride=1, *, se_reduction=64, device=None, dtype=None, **options
    ):
        super().__init__(in_ch, planes, stride, device=device, dtype=dtype, **options)
        out_ch = planes * self.expansion
        self.se = SqueezeExcitation(out_ch, se_reduction, device=device, dtype=dtype)

    @classmethod
    def width_error(cls, planes: int, *, se_reduction: int = 64, **options: int) -> str | None:
        return se_error(planes, cls.expansion, se_reduction)

    def merge(self, out: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return self.se(out) + shortcut


class ResidualSEBottleneck(PreActBottleneck):
    """Bottleneck with residual SE: SE(BN(o)) is added to o and the shortcut, not multiplied."""

    def __init__(
        self,
        in_ch,
        planes,
        stride=1,
        *,
        norm=NORMS["batchnorm"],
        se_reduction=64,
        device=None,
        dtype=None,
        **options,
    ):
        super().__init__(in_ch, planes, stride, norm=norm, device=device, dtype=dtype, **options)
        out_ch = planes * self.expansion
        self.se_bn = norm(out_ch, device=device, dtype=dtype)
        self.se = SqueezeExcitation(out_ch, se_reduction, device=device, dtype=dtype)

    @classmethod
    def width_error(cls, planes: int, *, se_reduction: int = 64, **options: int) -> str | None:
        return se_error(planes, cls.expansion, se_reduction)

    def merge(self, out: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return out + shortcut + self.se(self.se_bn(out))


class _PostActThreeConv(Block):
    """Three conv-BN layers post-activation: act after the first two and after the add."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act(out + shortcut)


class PostActBottleneck(_PostActThreeConv):
    """The original ResNet bottleneck: (1×1, k×k, 1×1) each conv-BN(-act), add, act."""

    expansion = 4

    def __init__(
        self,
        in_ch,
        planes,
        stride=1,
        *,
        kernel=3,
        act=ACTIVATIONS["relu"],
        norm=NORMS["batchnorm"],
        device=None,
        dtype=None,
        **_options,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        out_ch = planes * self.expansion
        self.act = act(**fk)
        self.conv1 = conv(in_ch, planes, 1, **fk)
        self.bn1 = norm(planes, **fk)
        self.conv2 = conv(planes, planes, kernel, stride, **fk)
        self.bn2 = norm(planes, **fk)
        self.conv3 = conv(planes, out_ch, 1, **fk)
        self.bn3 = norm(out_ch, **fk)
        self.shortcut = projection(in_ch, out_ch, stride, norm=norm, **fk)


class InvertedBottleneck(Block):
    """Pre-activation inverted bottleneck (MobileNetV2): 1×1 up to 4·planes, depthwise k×k, 1×1."""

    hidden_ratio = 4

    def __init__(
        self,
        in_ch,
        planes,
        stride=1,
        *,
        kernel=3,
        act=ACTIVATIONS["relu"],
        norm=NORMS["batchnorm"],
        device=None,
        dtype=None,
        **_options,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        hidden = planes * self.hidden_ratio
        self.act = act(**fk)
        self.bn1 = norm(in_ch, **fk)
        self.conv1 = conv(in_ch, hidden, 1, **fk)
        self.bn2 = norm(hidden, **fk)
        self.conv2 = conv(hidden, hidden, kernel, stride, groups=hidden, **fk)
        self.bn3 = norm(hidden, **fk)
        self.conv3 = conv(hidden, planes, 1, **fk)
        self.shortcut = projection(in_ch, planes, stride, **fk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.act(self.bn2(out)))
        out = self.conv3(self.act(self.bn3(out)))
        return out + shortcut


class PostActInvertedBottleneck(_PostActThreeConv):
    """Post-activation inverted bottleneck: conv-BN-act twice, conv-BN, add, act."""

    hidden_ratio = 4

    def __init__(
        self,
        in_ch,
        planes,
        stride=1,
        *,
        kernel=3,
        act=ACTIVATIONS["relu"],
        norm=NORMS["batchnorm"],
        device=None,
        dtype=None,
        **_options,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        hidden = planes * self.hidden_ratio
        self.act = act(**fk)
        self.conv1 = conv(in_ch, hidden, 1, **fk)
        self.bn1 = norm(hidden, **fk)
        self.conv2 = conv(hidden, hidden, kernel, stride, groups=hidden, **fk)
        self.bn2 = norm(hidden, **fk)
        self.conv3 = conv(hidden, planes, 1, **fk)
        self.bn3 = norm(planes, **fk)
        self.shortcut = projection(in_ch, planes, stride, norm=norm, **fk)


class MultiScaleBottleneck(Block):
    """Pre-activation bottleneck whose k×k conv is hierarchical over `scales` chunks (Res2Net)."""

    expansion = 4

    def __init__(
        self,
        in_ch,
        planes,
        stride=1,
        *,
        kernel=3,
        act=ACTIVATIONS["relu"],
        norm=NORMS["batchnorm"],
        scales=8,
        device=None,
        dtype=None,
        **_options,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        out_ch, width = planes * self.expansion, planes // scales
        self.scales = scales
        self.act = act(**fk)
        self.bn1 = norm(in_ch, **fk)
        self.conv1 = conv(in_ch, planes, 1, **fk)
        self.bn2 = norm(planes, **fk)
        self.conv2 = nn.ModuleList(
            conv(width, width, kernel, stride, **fk) for _ in range(scales - 1)
        )
        self.bn3 = nn.ModuleList(norm(width, **fk) for _ in range(scales - 1))
        self.pool = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = conv(planes, out_ch, 1, **fk)
        self.shortcut = projection(in_ch, out_ch, stride, **fk)

    @classmethod
    def width_error(cls, planes: int, *, scales: int = 8, **options: int) -> str | None:
        if scales < 2 or planes % scales:
            return f"a multiple of scales {scales} (scales at least 2) to split into chunks"
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.act(self.bn2(self.conv1(out)))
        out = hierarchical(out, self.conv2, self.bn3, self.act, self.scales, self.pool)
        return self.conv3(out) + shortcut
