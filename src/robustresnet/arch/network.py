"""`build_model(spec)`: stem, stages and head assembled from an `ArchSpec` (cell networks:
`cellnet.py`).

Input images are float in [0, 1], NCHW; the model returns logits. Module names are the authors'
(`stem_conv`, `blocks.N.layer.M`, `norm1`, `fc`) and RobustBench's (`mu`, `sigma`), so their
checkpoints load unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import BLOCKS, make_stage
from .cellnet import CellNetwork
from .cellspec import CellNetSpec
from .fuse import fuse
from .layers import ACTIVATIONS, NORMS, register_input_stats
from .spec import ArchSpec
from .specs import Spec


class RobustResNet(nn.Module):
    """A pre-activation residual network described by `spec` (kept as `.spec`)."""

    def __init__(self, spec: ArchSpec, *, device=None, dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.spec = spec
        register_input_stats(self, spec, **fk)
        # `stem_conv`, `blocks`, `norm1`, `fc` kept for checkpoint compatibility (authors' names).
        self.stem_conv = nn.Conv2d(
            spec.in_channels, spec.stem_channels, 3, padding=1, bias=False, **fk
        )
        self.blocks = nn.ModuleList()
        channels = spec.stem_channels
        for i, stage in enumerate(spec.stages):
            module, channels = make_stage(
                BLOCKS[stage.block],
                channels,
                stage.planes(i),
                stage.depth,
                stage.stride,
                kernel=stage.kernel_size,
                act=ACTIVATIONS[stage.activation],
                norm=NORMS[stage.normalization],
                **spec.block_options,
                **fk,
            )
            self.blocks.append(module)
        last = spec.stages[-1]
        self.norm1 = NORMS[last.normalization](channels, **fk)
        self.act1 = ACTIVATIONS[last.activation](**fk)
        self.fc = nn.Linear(channels, spec.num_classes, **fk)
        reference_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = (x - self.mu) / self.sigma
        out = self.stem_conv(x)
        for stage in self.blocks:
            out = stage(out)
        out = self.act1(self.norm1(out))
        return self.fc(out.mean(dim=(2, 3)))

    def fused(self) -> nn.Module:
        """`fuse(self)`: this network's eval-mode function in fewer kernels, for attacks."""
        return fuse(self)


@torch.no_grad()
def reference_init(model: nn.Module) -> None:
    """The authors' init: conv N(0, sqrt(2/(k·k·C_out))), norm weight 1 / bias 0, linear bias 0."""
    for m in model.modules():
        if any(p.is_meta for p in m.parameters(recurse=False)):
            continue  # nothing to fill on the meta device (and normal_ is slow there)
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            m.weight.fill_(1.0)
            m.bias.zero_()
        elif isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.zero_()


def build_model(spec: Spec, *, device=None, dtype=None) -> RobustResNet | CellNetwork:
    """The network of `spec` (an `ArchSpec` or a `CellNetSpec`); `device="meta"` builds even the
    largest one instantly, no memory."""
    if isinstance(spec, CellNetSpec):
        return CellNetwork(spec, device=device, dtype=dtype)
    if not isinstance(spec, ArchSpec):
        got = type(spec).__name__
        raise TypeError(f"build_model expects an ArchSpec or CellNetSpec, got {got}")
    return RobustResNet(spec, device=device, dtype=dtype)
