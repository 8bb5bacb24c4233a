"""A RobustResNet-family network in plain PyTorch, built from the spec dict `SPEC`.

`rrn export --robustbench` copies this file verbatim with `SPEC` filled in (the run's arch.yaml
as a dict), so the exported file needs nothing but torch: `get_model()` returns the network whose
checkpoint, `{"state_dict": ...}`, loads with `load_state_dict(strict=True)`. Module names are the
authors' (`stem_conv`, `blocks.N.layer.M`, `norm1`, `fc`) and RobustBench's (`mu`, `sigma` of shape
(C, 1, 1)). It implements every block, activation and normalisation of the robustresnet package;
images are float in [0, 1], NCHW, and the network returns logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

SPEC: dict = {}  # the network's spec, written here by the exporter


def _softplus() -> nn.Module:
    return nn.Softplus(beta=1.0, threshold=20.0)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "softplus": _softplus,
    "mish": nn.Mish,
    "elu": nn.ELU,
    "leakyrelu": nn.LeakyReLU,
    "prelu": nn.PReLU,
}


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis at every pixel of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return y.permute(0, 3, 1, 2)


def group_count(channels: int) -> int:
    """GroupNorm groups: C/8, else the largest divisor of C below C/8."""
    target = max(1, channels // 8)
    return next(g for g in range(target, 0, -1) if channels % g == 0)


def _groupnorm(channels: int) -> nn.Module:
    return nn.GroupNorm(group_count(channels), channels)


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    "groupnorm": _groupnorm,
    "layernorm": ChannelLayerNorm,
    "instancenorm": nn.InstanceNorm2d,  # no affine parameters
}


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free convolution keeping the spatial size at stride 1."""
    return nn.Conv2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False
    )


def projection(in_ch: int, out_ch: int, stride: int, norm=None) -> nn.Module | None:
    """The 1x1 shortcut (`shortcut.0`, then an optional norm) when the shape changes."""
    if stride == 1 and in_ch == out_ch:
        return None
    layers = [conv(in_ch, out_ch, 1, stride)]
    if norm is not None:
        layers.append(norm(out_ch))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """x * sigmoid(FC2(ReLU(FC1(mean over pixels of x)))), bias-free FCs (`fc.0`, `fc.2`)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = channels // reduction
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


def hierarchical(h: torch.Tensor, convs, norms, act, scales: int, pool) -> torch.Tensor:
    """Res2Net mixing of `scales` chunks; with a stride (`pool` set) the chunks are independent."""
    chunks = torch.chunk(h, scales, dim=1)
    ys = []
    for k in range(scales - 1):
        inp = chunks[k] if k == 0 or pool is not None else chunks[k] + ys[-1]
        ys.append(act(norms[k](convs[k](inp))))
    ys.append(chunks[-1] if pool is None else pool(chunks[-1]))
    return torch.cat(ys, dim=1)


class Block(nn.Module):
    """Blocks take (in_ch, planes, stride, act, norm, options) and output planes * expansion."""

    expansion = 1


class PreActBasicBlock(Block):
    """WRN's block: act(bn1(x)) -> k x k conv (stride) -> bn2, act -> k x k conv, plus shortcut."""

    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__()
        kernel = options["kernel_size"]
        self.act, self.bn1 = act(), norm(in_ch)
        self.conv1 = conv(in_ch, planes, kernel, stride)
        self.bn2, self.conv2 = norm(planes), conv(planes, planes, kernel)
        self.shortcut = projection(in_ch, planes, stride)

    def forward(self, x):
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        return self.conv2(self.act(self.bn2(self.conv1(out)))) + shortcut


class PostActBasicBlock(Block):
    """The original ResNet block: conv-BN-act, conv-BN, add, act."""

    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__()
        kernel = options["kernel_size"]
        self.act = act()
        self.conv1, self.bn1 = conv(in_ch, planes, kernel, stride), norm(planes)
        self.conv2, self.bn2 = conv(planes, planes, kernel), norm(planes)
        self.shortcut = projection(in_ch, planes, stride, norm)

    def forward(self, x):
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        return self.act(out + shortcut)


class PreActBottleneck(Block):
    """1x1 to planes, k x k (grouped in the subclass), 1x1 to 4*planes, each after BN-act."""

    expansion = 4
    grouped = False

    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__()
        out_ch, groups = planes * self.expansion, options["cardinality"] if self.grouped else 1
        self.act, self.bn1 = act(), norm(in_ch)
        self.conv1, self.bn2 = conv(in_ch, planes, 1), norm(planes)
        self.conv2 = conv(planes, planes, options["kernel_size"], stride, groups)
        self.bn3, self.conv3 = norm(planes), conv(planes, out_ch, 1)
        self.shortcut = projection(in_ch, out_ch, stride)

    def forward(self, x):
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.act(self.bn2(self.conv1(out))))
        return self.merge(self.conv3(self.act(self.bn3(out))), shortcut)

    def merge(self, out, shortcut):
        return out + shortcut


class GroupedBottleneck(PreActBottleneck):
    grouped = True


class SEBottleneck(PreActBottleneck):
    """Standard squeeze-and-excitation: the residual branch is rescaled."""

    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__(in_ch, planes, stride, act, norm, options)
        self.se = SqueezeExcitation(planes * self.expansion, options["se_reduction"])

    def merge(self, out, shortcut):
        return self.se(out) + shortcut


class ResidualSEBottleneck(PreActBottleneck):
    """Residual SE: SE(BN(o)) is added to o and the shortcut."""

    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__(in_ch, planes, stride, act, norm, options)
        self.se_bn = norm(planes * self.expansion)
        self.se = SqueezeExcitation(planes * self.expansion, options["se_reduction"])

    def merge(self, out, shortcut):
        return out + shortcut + self.se(self.se_bn(out))


class PostActThreeConv(Block):
    """(conv-BN-act) twice, conv-BN, add, act: the post-activation bottlenecks' forward."""

    def forward(self, x):
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self.act(self.bn2(self.conv2(self.act(self.bn1(self.conv1(x))))))
        return self.act(self.bn3(self.conv3(out)) + shortcut)


class PostActBottleneck(PostActThreeConv):
    expansion = 4

    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__()
        out_ch = planes * self.expansion
        self.act = act()
        self.conv1, self.bn1 = conv(in_ch, planes, 1), norm(planes)
        self.conv2 = conv(planes, planes, options["kernel_size"], stride)
        self.bn2 = norm(planes)
        self.conv3, self.bn3 = conv(planes, out_ch, 1), norm(out_ch)
        self.shortcut = projection(in_ch, out_ch, stride, norm)


class PostActInvertedBottleneck(PostActThreeConv):
    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__()
        hidden = planes * 4
        self.act = act()
        self.conv1, self.bn1 = conv(in_ch, hidden, 1), norm(hidden)
        self.conv2 = conv(hidden, hidden, options["kernel_size"], stride, hidden)
        self.bn2 = norm(hidden)
        self.conv3, self.bn3 = conv(hidden, planes, 1), norm(planes)
        self.shortcut = projection(in_ch, planes, stride, norm)


class InvertedBottleneck(Block):
    """Pre-activation MobileNetV2 block: 1x1 up to 4*planes, depthwise k x k, 1x1 down."""

    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__()
        hidden = planes * 4
        self.act, self.bn1 = act(), norm(in_ch)
        self.conv1, self.bn2 = conv(in_ch, hidden, 1), norm(hidden)
        self.conv2 = conv(hidden, hidden, options["kernel_size"], stride, hidden)
        self.bn3, self.conv3 = norm(hidden), conv(hidden, planes, 1)
        self.shortcut = projection(in_ch, planes, stride)

    def forward(self, x):
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.act(self.bn2(self.conv1(out))))
        return self.conv3(self.act(self.bn3(out))) + shortcut


class MultiScaleBottleneck(Block):
    """Bottleneck whose k x k conv is hierarchical over `scales` chunks of planes/scales."""

    expansion = 4

    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__()
        scales, kernel = options["scales"], options["kernel_size"]
        out_ch, width = planes * self.expansion, planes // scales
        self.scales = scales
        self.act, self.bn1 = act(), norm(in_ch)
        self.conv1, self.bn2 = conv(in_ch, planes, 1), norm(planes)
        self.conv2 = nn.ModuleList(conv(width, width, kernel, stride) for _ in range(scales - 1))
        self.bn3 = nn.ModuleList(norm(width) for _ in range(scales - 1))
        self.pool = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = conv(planes, out_ch, 1)
        self.shortcut = projection(in_ch, out_ch, stride)

    def forward(self, x):
        out = self.act(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.act(self.bn2(self.conv1(out)))
        out = hierarchical(out, self.conv2, self.bn3, self.act, self.scales, self.pool)
        return self.conv3(out) + shortcut


class RobustResBlock(Block):
    """The paper's block: hierarchical grouped k x k convs over `scales` chunks, residual SE."""

    expansion = 4

    def __init__(self, in_ch, planes, stride, act, norm, options):
        super().__init__()
        scales, cardinality = options["scales"], options["cardinality"]
        # floor(planes * base_width / 160) * cardinality, in the authors' float arithmetic
        width = int(math.floor(planes * (options["base_width"] / 160))) * cardinality
        out_ch = planes * self.expansion
        self.scales = scales
        self.act, self.bn1 = act(), norm(in_ch)
        self.conv1, self.bn2 = conv(in_ch, width * scales, 1), norm(width * scales)
        self.conv2 = nn.ModuleList(
            conv(width, width, options["kernel_size"], stride, cardinality)
            for _ in range(scales - 1)
        )
        self.bn3 = nn.ModuleList(norm(width) for _ in range(scales - 1))
        self.pool = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = conv(width * scales, out_ch, 1)
        self.se_bn = norm(out_ch)
        self.se = SqueezeExcitation(out_ch, options["se_reduction"])
        self.shortcut = projection(in_ch, out_ch, stride)

    def forward(self, x):
        # conv1 reads the raw x; act(bn1(x)) feeds only the projection shortcut (authors' design)
        shortcut = x if self.shortcut is None else self.shortcut(self.act(self.bn1(x)))
        out = self.act(self.bn2(self.conv1(x)))
        out = self.conv3(hierarchical(out, self.conv2, self.bn3, self.act, self.scales, self.pool))
        return out + shortcut + self.se(self.se_bn(out))


BLOCKS: dict[str, type[Block]] = {
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


def _lookup(table: dict, name: str, where: str):
    if name not in table:
        raise ValueError(f"{where}: {name!r} is not one of {', '.join(table)}")
    return table[name]


class Stage(nn.Module):
    """`depth` blocks, the first with the stage's stride (`layer`, the authors' name)."""

    def __init__(self, block: type[Block], in_ch: int, planes: int, stage: dict, options: dict):
        super().__init__()
        act = _lookup(ACTIVATIONS, stage["activation"], "activation")
        norm = _lookup(NORMS, stage["normalization"], "normalization")
        out_ch = planes * block.expansion
        self.layer = nn.Sequential(
            *(
                block(
                    in_ch if i == 0 else out_ch,
                    planes,
                    stage["stride"] if i == 0 else 1,
                    act,
                    norm,
                    {**options, "kernel_size": stage["kernel_size"]},
                )  # fmt: skip
                for i in range(stage["depth"])
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class Network(nn.Module):
    """Optional input normalisation, stem conv, stages, then norm-act, pool and linear head."""

    def __init__(self, spec: dict) -> None:
        super().__init__()
        channels, stages = spec["in_channels"], spec["stages"]
        self.normalize = spec.get("mean") is not None
        if self.normalize:
            self.register_buffer("mu", torch.tensor(spec["mean"]).view(channels, 1, 1))
            self.register_buffer("sigma", torch.tensor(spec["std"]).view(channels, 1, 1))
        self.stem_conv = nn.Conv2d(channels, spec["stem_channels"], 3, padding=1, bias=False)
        options = {k: spec[k] for k in ("scales", "base_width", "cardinality", "se_reduction")}
        self.blocks = nn.ModuleList()
        channels = spec["stem_channels"]
        for i, stage in enumerate(stages):
            block = _lookup(BLOCKS, stage["block"], f"stages[{i}].block")
            planes = stage["channels"] if "channels" in stage else 16 * 2**i * stage["widening"]
            self.blocks.append(Stage(block, channels, planes, stage, options))
            channels = planes * block.expansion
        self.norm1 = NORMS[stages[-1]["normalization"]](channels)
        self.act1 = ACTIVATIONS[stages[-1]["activation"]]()
        self.fc = nn.Linear(channels, spec["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = (x - self.mu) / self.sigma
        out = self.stem_conv(x)
        for stage in self.blocks:
            out = stage(out)
        return self.fc(self.act1(self.norm1(out)).mean(dim=(2, 3)))


def get_model(spec: dict | None = None) -> nn.Module:
    """The network of `spec` (default: this file's `SPEC`), in eval mode, before loading weights."""
    spec = SPEC if spec is None else spec
    if not spec:
        raise ValueError("no spec: pass one, or use a file written by `rrn export`")
    return Network(spec).eval()
