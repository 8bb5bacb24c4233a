"""Training-mode BatchNorm feeding a strided 1x1 conv: statistics over every pixel, output only on
the pixels the conv reads.

A RobustResBlock's projection shortcut at stride s is conv1x1_s(act(bn1(x))), and act(bn1(x))
feeds nothing else. Batch statistics need all of x, but the normalised values, the activation and
their gradients are needed on 1/s² of the pixels only; autograd's way normalises, activates and
back-propagates the whole map, and the strided conv's backward writes a zero-filled full-size
gradient first.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ._packed_bn import batch_norm_affine, batch_statistics_update, input_grad_coefficients


def subsampled_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, stride: int) -> torch.Tensor:
    """`bn(x)[:, :, ::stride, ::stride]` for an affine BatchNorm2d in training mode, its running
    statistics updated as `bn(x)` updates them."""
    running_mean, running_var, momentum = batch_statistics_update(bn)
    return _SubsampledBatchNorm.apply(
        x, bn.weight, bn.bias, running_mean, running_var, momentum, bn.eps, stride
    )


class _SubsampledBatchNorm(torch.autograd.Function):
    """y = γ·x̂ + β on every `stride`-th pixel, x̂ normalised with the statistics of all of x.

    Backward: with dL/dy zero off the sampled pixels, dL/dx = γ·r·(g - Σg/M - x̂·Σg·x̂/M) is
    b·x + c on every pixel (per-channel b, c from the sums over the sample) plus γ·r·g on the
    sampled ones.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, stride):
        mean, var = torch.batch_norm_update_stats(x, running_mean, running_var, momentum)
        rstd, scale, shift = batch_norm_affine(weight, bias, mean, var, eps)
        sample = x[:, :, ::stride, ::stride]
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.stride = stride
        return torch.addcmul(shift[:, None, None], sample, scale[:, None, None])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, mean, rstd = ctx.saved_tensors
        stride = ctx.stride
        sample = x[:, :, ::stride, ::stride]
        _, sum_g_xhat, sum_g = torch.ops.aten.native_batch_norm_backward(
            grad, sample, None, None, None, mean, rstd, True, 0.0, [False, True, True]
        )
        a, b, c = input_grad_coefficients(
            weight, mean, rstd, sum_g, sum_g_xhat, x.numel() // x.shape[1]
        )
        grad_x = torch.addcmul(c[:, None, None], x, b[:, None, None])
        grad_x[:, :, ::stride, ::stride].addcmul_(grad, a[:, None, None])
        return grad_x, sum_g_xhat, sum_g, None, None, None, None, None
