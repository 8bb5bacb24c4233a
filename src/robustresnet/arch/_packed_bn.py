"""Training-mode BatchNorm of channels_last CPU tensors whose channel count is not a multiple of 16.

PyTorch's channels_last BatchNorm kernels vectorise over channels, 16 floats at a time with
AVX-512; with 8 or 12 channels (RobustResBlock's Res2Net chunks in small networks) they run 2-7x
slower forward and backward than on 16 channels. The same memory viewed as rows of lcm(C, 16)
floats (several pixels per row) is a wide matrix those kernels handle at full speed: per-column
statistics, combined per channel, then one multiply-add; the backward takes per-column sums and
writes dL/dx in two multiply-adds.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

VECTOR_FLOATS = 16  # channels_last BatchNorm is fast when the channel count is a multiple of this
# The row view costs about 0.5 ms of fixed per-op work (forward + backward); native BatchNorm is
# faster below this many elements ((64, 8, 16, 16): 1.1x for the view; (64, 8, 8, 8): 0.4x).
MIN_ELEMENTS = 2**17


def batch_statistics_update(bn: nn.BatchNorm2d) -> tuple:
    """What `nn.BatchNorm2d.forward` hands the kernel in training mode: the running statistics
    (None when not tracked) and the momentum, after counting the batch."""
    if not bn.track_running_stats:
        return None, None, 0.0
    momentum = bn.momentum
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if momentum is None:  # a cumulative moving average
            momentum = 1.0 / float(bn.num_batches_tracked)
    return bn.running_mean, bn.running_var, 0.0 if momentum is None else momentum


def batch_norm_affine(weight, bias, mean, var, eps: float) -> tuple:
    """BatchNorm with these statistics as y = scale·x + shift per channel: (rstd, scale, shift)."""
    rstd = torch.rsqrt(var + eps)
    scale = weight * rstd
    return rstd, scale, bias - mean * scale


def input_grad_coefficients(weight, mean, rstd, sum_g, sum_g_xhat, count: int) -> tuple:
    """Per-channel a, b, c with dL/dx = a·g + b·x + c for batch-statistics BatchNorm:
    γ·r·(g - Σg/M - x̂·Σg·x̂/M), given the sums Σg and Σg·x̂ over M = `count` values."""
    a = weight * rstd
    b = -a * rstd * sum_g_xhat / count
    c = -a * sum_g / count - b * mean
    return a, b, c


def packs(bn: nn.BatchNorm2d, x: torch.Tensor) -> bool:
    """Whether `packed_batch_norm` applies: an affine BatchNorm2d in training mode on a large
    float32 channels_last CPU tensor with a channel count not a multiple of 16 and whole rows of
    pixels."""
    if not (bn.training and bn.affine and x.dim() == 4):
        return False
    channels = x.shape[1]
    return (
        x.device.type == "cpu"
        and x.dtype == bn.weight.dtype == torch.float32
        and channels % VECTOR_FLOATS != 0
        and x.numel() >= MIN_ELEMENTS
        and x.is_contiguous(memory_format=torch.channels_last)
        and (x.numel() // channels) % (math.lcm(channels, VECTOR_FLOATS) // channels) == 0
    )


def packed_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """`bn(x)` in training mode through the row view (see the module docstring); `packs(bn, x)`
    must hold."""
    running_mean, running_var, momentum = batch_statistics_update(bn)
    return _PackedBatchNorm.apply(
        x, bn.weight, bn.bias, running_mean, running_var, momentum, bn.eps
    )


def _rows(t: torch.Tensor) -> torch.Tensor:
    """A channels_last tensor's memory as rows of lcm(C, 16) floats."""
    width = math.lcm(t.shape[1], VECTOR_FLOATS)
    return t.permute(0, 2, 3, 1).reshape(-1, width)


class _PackedBatchNorm(torch.autograd.Function):
    """Batch-statistics BatchNorm computed on `_rows(x)`, whose column j holds channel j mod C."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        channels, rows = x.shape[1], _rows(x)
        copies = rows.shape[1] // channels
        col_mean, col_var = torch.batch_norm_update_stats(rows, None, None, 0.0)
        col_mean, col_var = col_mean.view(copies, channels), col_var.view(copies, channels)
        mean = col_mean.mean(0)
        # law of total variance over columns of equal counts: no cancellation
        var = col_var.mean(0) + (col_mean - mean).square().mean(0)
        if running_mean is not None:
            count = x.numel() // channels
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * (count / (count - 1)), momentum)  # at least 2 pixels
        rstd, scale, shift = batch_norm_affine(weight, bias, mean, var, eps)
        y = torch.empty_like(x, memory_format=torch.channels_last)
        torch.addcmul(shift.repeat(copies), rows, scale.repeat(copies), out=_rows(y))
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, mean, rstd = ctx.saved_tensors
        channels, count = x.shape[1], x.numel() // x.shape[1]
        grad = grad.contiguous(memory_format=torch.channels_last)
        rows, grad_rows = _rows(x), _rows(grad)
        copies = rows.shape[1] // channels
        # per column: Σ g·x̂ and Σ g, x̂ normalised with its channel's statistics
        _, col_g_xhat, col_g = torch.ops.aten.native_batch_norm_backward(
            grad_rows, rows, None, None, None, mean.repeat(copies), rstd.repeat(copies),
            True, 0.0, [False, True, True],
        )  # fmt: skip
        sum_g_xhat = col_g_xhat.view(copies, channels).sum(0)
        sum_g = col_g.view(copies, channels).sum(0)
        a, b, c = input_grad_coefficients(weight, mean, rstd, sum_g, sum_g_xhat, count)
        grad_x = torch.empty_like(x, memory_format=torch.channels_last)
        out = _rows(grad_x)
        torch.addcmul(c.repeat(copies), grad_rows, a.repeat(copies), out=out)
        out.addcmul_(rows, b.repeat(copies))
        return grad_x, sum_g_xhat, sum_g, None, None, None, None
