"""`CellNetwork`: a NAS cell network (RobNet, AdvRush, RACL) built from a `CellNetSpec`.

Module names are the reference code's (`stem`, `cells.N.preprocess0/1`, `cells.N._ops.K`,
`classifier`), so the authors' checkpoints load. Init is PyTorch's default, as theirs. Their
training-only extras are left out: AdvRush's auxiliary head and drop-path are off in the
baselines (auxiliary=False, drop_path_prob 0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .cell_ops import CELL_OPS, FactorizedReduce, Wrapped, relu_conv_bn
from .cellspec import Cell, CellNetSpec
from .layers import register_input_stats


class NasCell(nn.Module):
    """One cell: preprocess the two previous outputs, sum each node's edges, concatenate."""

    def __init__(
        self,
        spec: CellNetSpec,
        channels: tuple[int, int, int],
        *,
        reduction: bool,
        reduction_prev: bool,
        **fk: Any,
    ) -> None:
        super().__init__()
        c_prev_prev, c_prev, c = channels
        affine = spec.affine
        if reduction_prev:  # the cell before last is twice this resolution
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c, affine=affine, **fk)
        else:
            self.preprocess0 = relu_conv_bn(c_prev_prev, c, affine=affine, **fk)
        self.preprocess1 = relu_conv_bn(c_prev, c, affine=affine, **fk)
        genotype: Cell = spec.reduce if reduction else spec.normal
        self.concat = spec.reduce_concat if reduction else spec.normal_concat
        self.nodes = tuple(tuple(source for _, source in node) for node in genotype)
        # `_ops` kept for checkpoint compatibility (both references' name), edges in order.
        self._ops = nn.ModuleList()
        for node in genotype:
            for op, source in node:
                stride = 2 if reduction and source < 2 else 1
                module = CELL_OPS[op](c, stride, affine=affine, **fk)
                self._ops.append(Wrapped(module) if spec.layout == "robnet" else module)

    @property
    def out_channels_factor(self) -> int:
        """The output has this many times the cell's channels (one block per concat state)."""
        return len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        edge = 0
        for sources in self.nodes:
            total = self._ops[edge](states[sources[0]])
            for k in range(1, len(sources)):
                total = total + self._ops[edge + k](states[sources[k]])
            edge += len(sources)
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class CellNetwork(nn.Module):
    """Stem, cells (two of them reducing), global average pooling and a linear head."""

    def __init__(self, spec: CellNetSpec, *, device=None, dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.spec = spec
        register_input_stats(self, spec, **fk)
        c = spec.init_channels
        stem = spec.stem_multiplier * c
        # `stem`, `cells`, `global_pooling`, `classifier` kept for checkpoint compatibility.
        self.stem = nn.Sequential(
            nn.Conv2d(spec.in_channels, stem, 3, padding=1, bias=False, **fk),
            nn.BatchNorm2d(stem, **fk),
        )
        self.cells = nn.ModuleList()
        c_prev_prev, c_prev, reduction_prev = stem, stem, False
        for i in range(spec.layers):
            reduction = i in spec.reductions
            c = 2 * c if reduction else c
            cell = NasCell(
                spec,
                (c_prev_prev, c_prev, c),
                reduction=reduction,
                reduction_prev=reduction_prev,
                **fk,
            )
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, cell.out_channels_factor * c
            reduction_prev = reduction
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, spec.num_classes, **fk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = (x - self.mu) / self.sigma
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))
