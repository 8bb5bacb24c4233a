"""Residual blocks of the paper's design space, and the function that stacks them into a stage.

Every block has the constructor `(in_ch, planes, stride, *, kernel, act, norm, scales, base_width,
cardinality, se_reduction, device, dtype)` (options a block does not use are ignored), outputs
`planes * expansion` channels, and a straight-line `forward`. Attribute names are the authors'
state_dict names so their checkpoints load unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .bottlenecks import (
    GroupedBottleneck,
    InvertedBottleneck,
    MultiScaleBottleneck,
    PostActBottleneck,
    PostActInvertedBottleneck,
    PreActBottleneck,
    ResidualSEBottleneck,
    SEBottleneck,
)
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


class PreActBasicBlock(Block):
    """The pre-activation basic block of WRN: two k×k convs, BN-act before each."""

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
        self.act = act(**fk)
        self.bn1 = norm(in_ch, **fk)
        self.conv1 = conv(in_ch, planes, kernel, stride, **fk)
        self.bn2 = norm(planes, **fk)
        self.conv2 = conv(planes, planes, kernel, **fk)
        self.shortcut = projection(in_ch, planes, stride, **fk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.act(self.bn2(self.conv1(out))))
        return out + shortcut


class PostActBasicBlock(Block):
    """The original ResNet basic block: conv-BN-act, conv-BN, add, act."""

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
        self.act = act(**fk)
        self.conv1 = conv(in_ch, planes, kernel, stride, **fk)
        self.bn1 = norm(planes, **fk)
        self.conv2 = conv(planes, planes, kernel, **fk)
        self.bn2 = norm(planes, **fk)
        self.shortcut = projection(in_ch, planes, stride, norm=norm, **fk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + shortcut)


def robust_width(planes: int, base_width: int, cardinality: int) -> int:
    """Channels of one RobustResBlock chunk: floor(planes · base_width / 160) · cardinality."""
    # The authors' float expression, so every width they build is reproduced exactly.
    return int(math.floor(planes * (base_width / 160))) * cardinality


class RobustResBlock(Block):
    """The paper's block: hierarchical grouped k×k convs over `scales` chunks, residual SE."""

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
        base_width=10,
        cardinality=4,
        se_reduction=64,
        device=None,
        dtype=None,
        **_options,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        width, out_ch = robust_width(planes, base_width, cardinality), planes * self.expansion
        self.stride, self.scales = stride, scales
        self.act = act(**fk)
        self.bn1 = norm(in_ch, **fk)
        self.conv1 = conv(in_ch, width * scales, 1, **fk)
        self.bn2 = norm(width * scales, **fk)
        self.conv2 = nn.ModuleList(
            conv(width, width, kernel, stride, groups=cardinality, **fk) for _ in range(scales - 1)
        )
        self.bn3 = nn.ModuleList(norm(width, **fk) for _ in range(scales - 1))
        self.pool = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = conv(width * scales, out_ch, 1, **fk)
        self.se_bn = norm(out_ch, **fk)
        self.se = SqueezeExcitation(out_ch, se_reduction, **fk)
        self.shortcut = projection(in_ch, out_ch, stride, **fk)

    @classmethod
    def width_error(
        cls,
        planes: int,
        *,
        scales: int = 8,
        base_width: int = 10,
        cardinality: int = 4,
        se_reduction: int = 64,
        **options: int,
    ) -> str | None:
        if scales < 2:
            return "a block with scales at least 2 (hierarchical convs need two chunks)"
        if robust_width(planes, base_width, cardinality) < 1:
            return f"at least {math.ceil(160 / base_width)} so floor(planes·base_width/160) ≥ 1"
        return se_error(planes, cls.expansion, se_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # act(bn1(x)) feeds only the projection shortcut; conv1 reads the raw x (authors' design),
        # so without a projection bn1 is unused, as in their block (kept for their checkpoints).
        shortcut = x if self.shortcut is None else self.shortcut(self.act(self.bn1(x)))
        out = self.act(self.bn2(self.conv1(x)))
        out = hierarchical(out, self.conv2, self.bn3, self.act, self.scales, self.pool)
        out = self.conv3(out)
        return out + shortcut + self.se(self.se_bn(out))


# Names: the authors' config vocabulary (`basic_block`, `robust_res_block`) plus the block study's.
BLOCKS: Mapping[str, type[Block]] = {
    "basic_block": PreActBasicBlock,
    "basic_block_post": PostActBasicBlock,
    "bottleneck": PreActBottleneck,
    "bottleneck_post": PostActBottleneck,
    "inverted_bottleneck": InvertedBottleneck,
    "inverted_bottleneck_post": PostActInvertedBottleneck,
    "grouped_bottleneck": GroupedBottleneck,
    "multiscale_bottleneck": MultiScaleBottleneck,
    "se_bottleneck": SEBottleneck,
    "residual_se_bottleneck": ResidualSEBottleneck,
    "robust_res_block": RobustResBlock,
}


class Stage(nn.Module):
    """A stack of blocks; the attribute `layer` is kept for checkpoint compatibility."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.layer = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def make_stage(
    block: type[Block], in_ch: int, planes: int, depth: int, stride: int, **options
) -> tuple[Stage, int]:
    """`depth` blocks, the first with `stride`; returns the stage and its output channels."""
    out_ch = planes * block.expansion
    blocks = [
        block(in_ch if i == 0 else out_ch, planes, stride if i == 0 else 1, **options)
        for i in range(depth)
    ]
    return Stage(blocks), out_ch
