"""Faster `RobustResBlock` passes: the same function with fewer, larger kernels.

The block's definition is `RobustResBlock.reference_forward`. In eval mode (inference and every
attack step) this module computes it with:
- each BatchNorm folded into the conv before it, and the residual SE `o + shortcut +
  se_bn(o)·gate` as one multiply-add per element (se_bn is affine per channel), with a
  hand-written backward when the SE is frozen (attacks);
- with a stride, the `scales - 1` independent chunk convs as one grouped conv (groups =
  cardinality · (scales - 1)), and the projection shortcut's BatchNorm and activation on the
  pixels its strided 1x1 conv reads;
- without autograd, the chunk outputs written into the buffer they came from (no concatenation);
- a narrow chunk's grouped conv (2 channels per group) as a dense conv, block-diagonal weight.
In training mode (batch statistics) the residual SE with its BatchNorm is one autograd Function
with a hand-written backward, ReLUs after a BatchNorm run in place, and a strided projection's
BatchNorm and activation again run on the pixels its 1x1 conv reads (statistics over all).
Only BatchNorm2d blocks on real tensors take these paths; everything else runs the definition
(meta tensors included, so MAC counting by the paper's rules sees the defining operations).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ._packed_bn import batch_norm_affine, batch_statistics_update
from ._subsampled_bn import subsampled_batch_norm
from .layers import act_fresh, bn_affine, conv_like, folded, folds_in_eval, hierarchical


def supported(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether `fast_forward` applies: eval mode, BatchNorm2d with running statistics, a real
    tensor."""
    return all(folds_in_eval(n, x) for n in (block.bn2, block.se_bn, *block.bn3))


def trains_fast(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether `fast_forward` takes the training path: every norm an affine BatchNorm2d in
    training mode, a real tensor."""
    norms = (block.bn1, block.bn2, block.se_bn, *block.bn3)
    return not x.is_meta and all(
        isinstance(n, nn.BatchNorm2d) and n.affine and n.training for n in norms
    )


def fast_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`block.reference_forward(x)`, computed with fewer kernels where the block allows it."""
    if supported(block, x):
        return _eval_forward(block, x)
    if trains_fast(block, x):
        return _train_forward(block, x)
    return block.reference_forward(x)


def _train_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The definition with batch statistics: in-place ReLUs (BatchNorm's backward needs only its
    input) and the residual SE as `_TrainSEResidual`."""
    act = functools.partial(act_fresh, block.act)
    shortcut = x if block.shortcut is None else _projection(block, x)
    h = act(block.bn2(block.conv1(x)))
    if block.pool is None:
        convs, norms = block.conv2, block.bn3
        mixed = _chain(block, h, lambda k, t: norms[k](convs[k](t)))
    else:
        mixed = hierarchical(h, block.conv2, block.bn3, act, block.scales, block.pool)
    o = block.conv3(mixed)
    bn, fc = block.se_bn, block.se.fc
    if not o.dtype == shortcut.dtype == bn.weight.dtype:  # mixed precision: autograd's way
        return o + shortcut + block.se(bn(o))
    running_mean, running_var, momentum = batch_statistics_update(bn)
    return _TrainSEResidual.apply(
        o, shortcut, bn.weight, bn.bias, fc[0].weight, fc[2].weight,
        running_mean, running_var, momentum, bn.eps,
    )  # fmt: skip


def _eval_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eval mode: folded BatchNorms, merged strided chunk convs, the SE as a multiply-add."""
    shortcut = x if block.shortcut is None else _projection(block, x)
    h = act_fresh(block.act, conv_like(block.conv1, x, *folded(block.conv1.weight, block.bn2)))
    return _se_residual_eval(block, block.conv3(_mix_eval(block, h)), shortcut)


def _projection(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """shortcut(act(bn1(x))). At stride s its 1x1 conv reads every s-th pixel only, and
    act(bn1(x)) feeds nothing else, so normalisation and activation run on those pixels alone,
    forward and backward: in eval mode (pointwise) on the subsampled input (tiny networks' attack
    step 6-8% faster, mid's 3%); in training with statistics still over every pixel
    (`_subsampled_bn`: tiny training step 3% faster, 6% less peak memory)."""
    conv, bn = block.shortcut[0], block.bn1
    stride = conv.stride[0]
    if stride == 1 or (bn.training and x.dtype != bn.weight.dtype):  # mixed precision: native
        return block.shortcut(act_fresh(block.act, bn(x)))
    # in eval, avg_pool2d with a 1x1 window: one kernel each way (two slices' backward zero-fill)
    t = subsampled_batch_norm(bn, x, stride) if bn.training else bn(F.avg_pool2d(x, 1, stride))
    return F.conv2d(act_fresh(block.act, t), conv.weight, conv.bias)


def _mix_eval(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The hierarchical chunk convs with folded BNs (eval mode)."""
    convs, width = block.conv2, block.conv2[0].in_channels
    params = [folded(c.weight, bn) for c, bn in zip(convs, block.bn3, strict=True)]
    if block.pool is not None:
        weight = torch.cat([w for w, _ in params])
        bias = torch.cat([b for _, b in params])
        # split, not two slices: its backward is one concatenation, not two zero-filled
        # activation-sized tensors added together
        mixed, last = h.split([width * len(convs), width], dim=1)
        y = conv_like(convs[0], mixed, weight, bias, len(convs))
        return torch.cat([act_fresh(block.act, y), block.pool(last)], dim=1)
    return _chain(block, h, lambda k, t: _chunk_conv(convs[k], t, *params[k]))


# oneDNN's grouped conv with 2 channels per group is slower than a dense conv doing `groups`
# times the work: an 8-channel chunk's takes 0.6-1.0x the time (32x32 to 8x8 maps), the tiny
# network's attack step 2.5% less. Measured slower or no faster: 12 channels (3 per group) in
# whole passes, and 1 channel per group (depthwise), 2-3x slower dense.
DENSE_CHUNK_MAX = 8


def _chunk_conv(conv: nn.Conv2d, t: torch.Tensor, weight: torch.Tensor, bias=None):
    """A chunk's grouped conv with this weight and bias; a narrow chunk's as a dense conv whose
    weight is block-diagonal (zeros between groups: the same function)."""
    if weight.shape[1] != 2 or conv.in_channels > DENSE_CHUNK_MAX:
        return conv_like(conv, t, weight, bias)
    per_group_out = conv.out_channels // conv.groups
    out_group = torch.arange(conv.out_channels, device=weight.device) // per_group_out
    in_group = torch.arange(conv.in_channels, device=weight.device) // weight.shape[1]
    mask = (out_group[:, None] == in_group[None, :])[:, :, None, None]
    dense = weight.repeat(1, conv.groups, 1, 1) * mask
    return F.conv2d(t, dense, bias, conv.stride, conv.padding, conv.dilation)


def _chain(block: nn.Module, h: torch.Tensor, step: Callable) -> torch.Tensor:
    """Res2Net hierarchy at stride 1: y_k = act(step(k, chunk_k + y_{k-1})), last chunk kept."""
    chunks = h.split(block.conv2[0].in_channels, dim=1)
    in_place = not torch.is_grad_enabled()  # then h may be overwritten: it becomes the output
    ys, prev = [], None
    for k, chunk in enumerate(chunks[:-1]):
        prev = act_fresh(block.act, step(k, chunk if prev is None else chunk + prev))
        if in_place:
            chunk.copy_(prev)
        else:
            ys.append(prev)
    return h if in_place else torch.cat([*ys, chunks[-1]], dim=1)


def _se_residual_eval(block: nn.Module, o: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """o + shortcut + z·gate(z), z = se_bn(o) = s·o + t: o·(1 + s·gate) + t·gate + shortcut."""
    scale, shift = bn_affine(block.se_bn)
    frozen = not any(p.requires_grad for p in (*block.se.parameters(), *block.se_bn.parameters()))
    if torch.is_grad_enabled() and frozen:  # an attack step: the hand-written backward
        fc = block.se.fc
        return _FrozenSEResidual.apply(o, shortcut, scale, shift, fc[0].weight, fc[2].weight)
    gate = block.se.fc(o.mean(dim=(2, 3)) * scale + shift)
    dtype = torch.result_type(o, shortcut)
    factor, offset = _gate_terms(scale, shift, gate, dtype)
    if torch.is_grad_enabled() or dtype != o.dtype:
        return torch.addcmul(shortcut + offset, o, factor)
    return torch.addcmul(shortcut, o, factor, out=o).add_(offset)


def _gate_terms(scale, shift, gate, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """factor = 1 + s·gate and offset = t·gate as (N, C, 1, 1) tensors of `dtype` (the result's:
    mixed dtypes under bf16 autocast take a slow unvectorised path)."""
    factor = (1 + scale * gate)[:, :, None, None]
    return factor.to(dtype), (shift * gate)[:, :, None, None].to(dtype)


class _FrozenSEResidual(torch.autograd.Function):
    """`_se_residual_eval` with the SE and se_bn frozen, differentiable in o and shortcut.

    Autograd's backward writes five activation-sized tensors (the products, the mean's expanded
    gradient, their sum); this one writes two: g·o for the gate's gradient, and
    dL/do = g·factor + dL/dmean / HW in one multiply-add. The SE's small MLP (linear, ReLU,
    linear, sigmoid; weights w1, w2) is differentiated by hand, with no nested autograd call.
    Attacks run it at every step.
    """

    @staticmethod
    def forward(ctx, o, shortcut, scale, shift, w1, w2):
        y, _, hidden, gate, factor = _gated_residual(o, shortcut, scale, shift, w1, w2)
        ctx.save_for_backward(o, scale, shift, w1, w2, hidden, gate, factor)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        o, scale, shift, w1, w2, hidden, gate, factor = ctx.saved_tensors
        acc = torch.promote_types(grad.dtype, torch.float32)  # float32 sums for bf16, not lower
        sum_go = (grad * o).sum(dim=(2, 3), dtype=acc)
        sum_g = grad.sum(dim=(2, 3), dtype=acc)
        d_logits, d_hidden = _se_backward(scale * sum_go + shift * sum_g, gate, hidden, w2)
        d_mean = (d_hidden @ w1.to(d_hidden.dtype)) * scale / (o.shape[2] * o.shape[3])
        grad_o = torch.addcmul(d_mean[:, :, None, None].to(grad.dtype), grad, factor.to(grad.dtype))
        return grad_o, grad, None, None, None, None


def _gated_residual(o, shortcut, scale, shift, w1, w2) -> tuple:
    """o + shortcut + z·gate(z) for z = scale·o + shift per channel, the SE's MLP (weights w1, w2)
    computed by hand: (output, o's per-map means, hidden units after ReLU, gate, factor)."""
    pooled = o.mean(dim=(2, 3))
    hidden = F.linear(pooled * scale + shift, w1).relu()
    gate = F.linear(hidden, w2).sigmoid()
    factor, offset = _gate_terms(scale, shift, gate, torch.result_type(o, shortcut))
    return torch.addcmul(shortcut, o, factor).add_(offset), pooled, hidden, gate, factor


def _se_backward(d_gate: torch.Tensor, gate, hidden, w2) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients at the SE MLP's logits and hidden units (before their ReLU), given the gradient
    at its gate; in the gradient's dtype (fp32 for a bf16 forward)."""
    gate = gate.to(d_gate.dtype)
    d_logits = d_gate * gate * (1 - gate)
    return d_logits, (d_logits @ w2.to(d_gate.dtype)) * (hidden > 0)


class _TrainSEResidual(torch.autograd.Function):
    """`o + shortcut + z·gate(z)` with z = se_bn(o) on batch statistics, in 4 passes over the
    activation forward (statistics, pooling, one multiply-add, the offset) and 5 backward.

    With per-channel statistics (mean μ, rstd r) the whole tail is, per sample and channel, an
    affine map of o, so its backward needs only the sums Σg and Σg·o over each feature map:
    dL/do = g·(1 + γ·r·gate) + o·B + K, with per-channel B and per-(sample, channel) K (below).
    Autograd's way writes z, the gated product, the mean's expanded gradient and BatchNorm's
    intermediate gradients. Running statistics are updated as `nn.BatchNorm2d` updates them.
    """

    @staticmethod
    def forward(ctx, o, shortcut, weight, bias, w1, w2, running_mean, running_var, momentum, eps):
        mean, var = torch.batch_norm_update_stats(o, running_mean, running_var, momentum)
        rstd, scale, shift = batch_norm_affine(weight, bias, mean, var, eps)
        y, pooled_o, hidden, gate, factor = _gated_residual(o, shortcut, scale, shift, w1, w2)
        ctx.save_for_backward(o, weight, bias, mean, rstd, pooled_o, w1, w2, hidden, gate, factor)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        o, weight, bias, mean, rstd, pooled_o, w1, w2, hidden, gate, factor = ctx.saved_tensors
        n, _, h, w = o.shape
        count = n * h * w
        sum_g = grad.sum(dim=(2, 3))
        # Σ g·ô over each map, ô = (o - μ)·r the normalised input
        sum_g_xhat = rstd * ((grad * o).sum(dim=(2, 3)) - mean * sum_g)
        d_logits, d_hidden = _se_backward(weight * sum_g_xhat + bias * sum_g, gate, hidden, w2)
        d_pooled = d_hidden @ w1  # at the mean of z
        # se_bn's parameter gradients Σ dL/dz and Σ dL/dz·ô, with dL/dz = g·gate + d_pooled/HW
        d_bias = (gate * sum_g + d_pooled).sum(0)
        d_weight = (gate * sum_g_xhat + d_pooled * rstd * (pooled_o - mean)).sum(0)
        # BatchNorm's input gradient γ·r·(dL/dz - Σ dL/dz / M - ô·Σ dL/dz·ô / M), plus g itself
        gr = weight * rstd
        pooled_z = pooled_o * gr + (bias - mean * gr)  # the MLP's input
        coef_o = -gr * rstd * d_weight / count
        k = gr * (d_pooled / (h * w) - d_bias / count + mean * rstd * d_weight / count)
        grad_o = torch.addcmul(k[:, :, None, None], grad, factor)
        grad_o.addcmul_(o, coef_o[:, None, None])
        return (
            grad_o,
            grad,
            d_weight,
            d_bias,
            d_hidden.t() @ pooled_z,
            d_logits.t() @ hidden,
            *[None] * 4,
        )
