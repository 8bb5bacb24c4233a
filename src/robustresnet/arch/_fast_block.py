"""A faster eval mode for `RobustResBlock`: the same function with fewer, larger kernels.

The block's definition is `RobustResBlock.reference_forward`. In eval mode (inference and every
attack step) this module computes it with:
- each BatchNorm folded into the conv before it, and the residual SE `o + shortcut +
  se_bn(o)·gate` as one multiply-add per element (se_bn is affine per channel), with a
  hand-written backward when the SE is frozen (attacks);
- with a stride, the `scales - 1` independent chunk convs as one grouped conv (groups =
  cardinality · (scales - 1));
- without autograd, the chunk outputs written into the buffer they came from (no concatenation).
Training runs the definition: measured, the same fusions with batch statistics were 4% slower.
Only BatchNorm2d blocks on real tensors take this path; everything else runs the definition
(meta tensors included, so MAC counting by the paper's rules sees the defining operations).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import act_fresh, bn_affine, conv_like, folded, folds_in_eval


def supported(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether `fast_forward` applies: eval mode, BatchNorm2d with running statistics, a real
    tensor."""
    return all(folds_in_eval(n, x) for n in (block.bn2, block.se_bn, *block.bn3))


def fast_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`block.reference_forward(x)`, computed with fewer kernels where the block allows it."""
    if not supported(block, x):
        return block.reference_forward(x)
    shortcut = x if block.shortcut is None else block.shortcut(act_fresh(block.act, block.bn1(x)))
    h = act_fresh(block.act, conv_like(block.conv1, x, *folded(block.conv1.weight, block.bn2)))
    return _se_residual_eval(block, block.conv3(_mix_eval(block, h)), shortcut)


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
    return _chain(block, h, lambda k, t: conv_like(convs[k], t, *params[k]))


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
        hidden = F.linear(o.mean(dim=(2, 3)) * scale + shift, w1).relu()
        gate = F.linear(hidden, w2).sigmoid()
        factor, offset = _gate_terms(scale, shift, gate, torch.result_type(o, shortcut))
        y = torch.addcmul(shortcut, o, factor).add_(offset)
        ctx.save_for_backward(o, scale, shift, w1, w2, hidden, gate, factor)
        return y

    @staticmethod
    def backward(ctx, grad):
        o, scale, shift, w1, w2, hidden, gate, factor = ctx.saved_tensors
        sum_go = (grad * o).sum(dim=(2, 3), dtype=torch.float32)
        sum_g = grad.sum(dim=(2, 3), dtype=torch.float32)
        gate = gate.float()
        d_logits = (scale * sum_go + shift * sum_g) * gate * (1 - gate)
        d_hidden = (d_logits @ w2.float()) * (hidden > 0)
        d_mean = (d_hidden @ w1.float()) * scale / (o.shape[2] * o.shape[3])
        grad_o = torch.addcmul(d_mean[:, :, None, None].to(grad.dtype), grad, factor.to(grad.dtype))
        return grad_o, grad, None, None, None, None
