"""The ceiling on faster chunk convolutions: RobustResBlock passes with every grouped 3x3 chunk
conv replaced by a strided copy of its input (one memory pass, the same autograd graph).

A hand-written kernel for convs of 2-8 channels per group can at best make those convs cost
nothing; timing the network with them costing (almost) nothing bounds what such a kernel buys.
The copy has the conv's output shape, so everything around it runs exactly as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

import robustresnet.arch._fast_block as fast_block
from robustresnet.arch.blocks import RobustResBlock


def _copy_through(conv: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
    """A fresh tensor of `conv`'s output shape from `t` (same channels), one pass over memory."""
    step = conv.stride[0]
    return (t[:, :, ::step, ::step] if step > 1 else t) * 1.0


@contextlib.contextmanager
def chunk_convs_free(model: nn.Module) -> Iterator[None]:
    """While active, `model`'s RobustResBlock chunk convs are copies, in every pass and mode."""
    convs = [c for m in model.modules() if isinstance(m, RobustResBlock) for c in m.conv2]
    chunk_ids = {id(c) for c in convs}
    chunk_conv, conv_like = fast_block._chunk_conv, fast_block.conv_like

    def copying_chunks(real: Callable) -> Callable:
        """`real(conv, t, ...)` (an eval-path conv call), a copy where `conv` is a chunk conv."""
        return lambda conv, t, *weights: (
            _copy_through(conv, t) if id(conv) in chunk_ids else real(conv, t, *weights)
        )

    for conv in convs:  # the training path calls the modules
        conv.forward = lambda t, conv=conv: _copy_through(conv, t)
    fast_block._chunk_conv, fast_block.conv_like = map(copying_chunks, (chunk_conv, conv_like))
    try:
        yield
    finally:
        fast_block._chunk_conv, fast_block.conv_like = chunk_conv, conv_like
        for conv in convs:
            del conv.forward


def with_chunk_convs_free(model: nn.Module, step: Callable[[], None]) -> Callable[[], None]:
    """`step` (a pass of `model`) run with the chunk convs free."""

    def free_step() -> None:
        with chunk_convs_free(model):
            step()

    return free_step
