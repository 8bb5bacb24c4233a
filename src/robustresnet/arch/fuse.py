"""`fuse(model)`: a network's eval-mode function in fewer kernels, for attacks and inference.

In eval mode a BatchNorm with running statistics is a per-channel affine map, so:
- a BatchNorm right after a conv is folded into that conv's weight and bias;
- every other such BatchNorm (block inputs, the head) is one multiply-add;
- in a RobustResBlock the residual SE `o + shortcut + se(se_bn(o))` is one multiply-add per element
  (se_bn is affine, so the gate reads o's per-map means) with a hand-written first-order backward,
  a strided block's independent chunk convs are one grouped conv, and the strided projection
  shortcut normalises and activates only the pixels its 1x1 conv reads.
Other norms (GroupNorm, LayerNorm, InstanceNorm, BatchNorm without running statistics) stay as
they are. Input gradients are the definition's (the SE's backward is tested against autograd's).

The fused network is a snapshot: it shares the unfolded weights, holds folded copies of the rest,
none of them trainable. Re-fuse after the weights change (the attacks and objectives do, at every
call). It refuses second derivatives (`create_graph=True`): a gradient penalty through it would
silently miss the model's parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import PostActBasicBlock, PreActBasicBlock, RobustResBlock
from .bottlenecks import (
    InvertedBottleneck,
    MultiScaleBottleneck,
    PreActBottleneck,
    _PostActThreeConv,
)
from .layers import hierarchical

# Per block class: (conv, norm) pairs where the norm reads that conv's output and nothing else.
_SHORTCUT = ("shortcut.0", "shortcut.1")
FOLDS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    PreActBasicBlock: (("conv1", "bn2"),),
    PostActBasicBlock: (("conv1", "bn1"), ("conv2", "bn2"), _SHORTCUT),
    PreActBottleneck: (("conv1", "bn2"), ("conv2", "bn3")),
    InvertedBottleneck: (("conv1", "bn2"), ("conv2", "bn3")),
    MultiScaleBottleneck: (("conv1", "bn2"), ("conv2", "bn3")),
    _PostActThreeConv: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), _SHORTCUT),
}


class SecondOrderError(RuntimeError):
    """Raised when a graph of the gradient (`create_graph=True`) is asked through a fused model."""


def _refuse_second_order() -> None:
    """Called by a backward: during one, grad mode is on exactly when `create_graph=True`
    (`.backward`, `torch.autograd.grad` and `torch.func` alike)."""
    if torch.is_grad_enabled():
        raise SecondOrderError(
            "fuse(model) gives first derivatives only: its weights are frozen copies, so a "
            "gradient penalty through it would miss the model's parameters; differentiate "
            "the model itself for create_graph=True, torch.func or gradient penalties"
        )


class _FirstOrderOnly(torch.autograd.Function):
    """Identity at the fused network's input whose backward refuses to record a graph."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        _refuse_second_order()
        return grad


class FusedNetwork(nn.Module):
    """The fused network (`fuse`); always in eval mode, first-order only."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        super().train(False)

    def train(self, mode: bool = True) -> FusedNetwork:
        """Stays in eval mode: the fused function is the eval-mode one."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(_FirstOrderOnly.apply(x))


def fuse(model: nn.Module) -> FusedNetwork:
    """An eval-mode copy of `model` computing the same function with folded BatchNorms and
    merged kernels (see the module docstring); within float rounding of `model.eval()`."""
    if isinstance(model, FusedNetwork):
        raise TypeError("fuse(model) takes the model itself, not a fused copy of it")
    return FusedNetwork(_fused(_snapshot(model).eval()))


def _snapshot(module: nn.Module) -> nn.Module:
    """A copy of the module tree sharing every tensor, the parameters detached and frozen (the
    modules alone: A4's 2,000 in 0.07 s on this project's CPU, `copy.deepcopy` took 0.35 s)."""
    twin = copy.copy(module)
    twin._parameters = {k: p if p is None else _frozen(p) for k, p in module._parameters.items()}
    twin._buffers = dict(module._buffers)
    twin._modules = {k: m if m is None else _snapshot(m) for k, m in module._modules.items()}
    return twin


def _fused(module: nn.Module) -> nn.Module:
    """`module` with its foldable parts replaced, recursively (changed in place)."""
    if isinstance(module, RobustResBlock) and all(map(_foldable, _norms(module))):
        return _FusedRobustResBlock(module)
    if _foldable(module):
        return Affine(*_affine(module))
    for conv_name, norm_name in _folds(module):
        _fold(module, conv_name, norm_name)
    for name, child in module.named_children():
        if (fused := _fused(child)) is not child:
            setattr(module, name, fused)
    return module


def _folds(module: nn.Module) -> tuple[tuple[str, str], ...]:
    return next((FOLDS[cls] for cls in type(module).__mro__ if cls in FOLDS), ())


def _fold(module: nn.Module, conv_name: str, norm_name: str) -> None:
    """Replace `conv_name` by the conv with `norm_name` folded in, and the norm by Identity."""
    convs, norms = _submodule(module, conv_name), _submodule(module, norm_name)
    if isinstance(convs, nn.ModuleList):
        for i in range(len(convs)):
            _fold(module, f"{conv_name}.{i}", f"{norm_name}.{i}")
    elif convs is not None and _foldable(norms):
        _replace(module, conv_name, _folded_conv(convs, norms))
        _replace(module, norm_name, nn.Identity())


def _submodule(module: nn.Module, name: str) -> nn.Module | None:
    try:
        return module.get_submodule(name)
    except AttributeError:  # an absent part (a shortcut that is None)
        return None


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, leaf, new)


def _foldable(norm: nn.Module | None) -> bool:
    """A BatchNorm2d whose eval mode uses running statistics: a per-channel affine map."""
    return isinstance(norm, nn.BatchNorm2d) and norm.running_mean is not None


def _norms(block: RobustResBlock) -> Iterator[nn.Module]:
    yield from (block.bn2, block.se_bn, *block.bn3)
    if block.shortcut is not None:
        yield block.bn1


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach(), requires_grad=False)


@torch.no_grad()
def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode `bn` as y = scale·x + shift: (scale, shift), each of shape (C,)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    return scale, shift if bn.bias is None else shift + bn.bias


class Affine(nn.Module):
    """Eval-mode BatchNorm as one multiply-add per element, in the input's dtype."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.view(-1, 1, 1))
        self.register_buffer("shift", shift.view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the input's dtype: under bf16 autocast, fp32 factors would promote every activation
        return torch.addcmul(self.shift.to(x.dtype), x, self.scale.to(x.dtype))


@torch.no_grad()
def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """bn(conv(x)) in eval mode as one conv with a bias."""
    scale, shift = _affine(bn)
    weight = torch.empty_like(conv.weight)  # keeps the weight's memory format
    torch.mul(conv.weight, scale.view(-1, 1, 1, 1), out=weight)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return _conv(conv, weight, bias)


def _conv(like: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, groups: int = 0) -> nn.Conv2d:
    """A conv of `like`'s geometry (`groups` of them side by side) with this weight and bias."""
    conv = copy.copy(like)  # no nn.Conv2d constructor: it initialises weights only to drop them
    conv._parameters = {"weight": _frozen(weight), "bias": _frozen(bias)}
    if groups:
        conv.groups, conv.out_channels = groups, weight.shape[0]
        conv.in_channels = weight.shape[1] * groups
    return conv


class _FusedRobustResBlock(nn.Module):
    """A RobustResBlock in eval mode with every BatchNorm folded (see the module docstring)."""

    def __init__(self, block: RobustResBlock) -> None:
        super().__init__()
        self.act, self.pool, self.conv3 = block.act, block.pool, block.conv3
        self.width = block.conv2[0].in_channels
        self.conv1 = _folded_conv(block.conv1, block.bn2)
        chunks = [_folded_conv(c, bn) for c, bn in zip(block.conv2, block.bn3, strict=True)]
        if block.pool is None:
            self.chunks = nn.ModuleList(chunks)
            self.folded_norms = (nn.Identity(),) * len(chunks)  # each norm is in its conv
        else:  # independent chunks: one grouped conv
            weight = torch.cat([c.weight for c in chunks])
            bias = torch.cat([c.bias for c in chunks])
            self.chunks = _conv(chunks[0], weight, bias, groups=chunks[0].groups * len(chunks))
        self.shortcut_bn = None if block.shortcut is None else Affine(*_affine(block.bn1))
        self.shortcut = block.shortcut
        scale, shift = _affine(block.se_bn)
        self.register_buffer("se_scale", scale)
        self.register_buffer("se_shift", shift)
        self.se_fc = block.se.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self._projection(x)
        o = self.conv3(self._mix(self.act(self.conv1(x))))
        return self._se_residual(o, shortcut)

    def _projection(self, x: torch.Tensor) -> torch.Tensor:
        """shortcut(act(bn1(x))), normalising only the pixels the strided 1x1 conv reads."""
        conv = self.shortcut[0]
        stride = conv.stride[0]
        if stride > 1:  # a 1x1 window: the subsampled pixels, one kernel each way
            x = F.avg_pool2d(x, 1, stride)
        return F.conv2d(self.act(self.shortcut_bn(x)), conv.weight, conv.bias)

    def _mix(self, h: torch.Tensor) -> torch.Tensor:
        """The hierarchical chunk convs (Res2Net chain at stride 1, one grouped conv strided)."""
        if self.pool is not None:
            mixed, last = h.split([h.shape[1] - self.width, self.width], dim=1)
            return torch.cat([self.act(self.chunks(mixed)), self.pool(last)], dim=1)
        scales = len(self.chunks) + 1
        return hierarchical(h, self.chunks, self.folded_norms, self.act, scales, None)

    def _se_residual(self, o: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        fc = self.se_fc
        return _SEResidual.apply(
            o, shortcut, self.se_scale, self.se_shift, fc[0].weight, fc[2].weight
        )[0]


class _SEResidual(torch.autograd.Function):
    """o + shortcut + z·gate(z) for z = s·o + t per channel (eval-mode se_bn), as
    o·(1 + s·gate) + t·gate + shortcut, gate = sigmoid(w2·relu(w1·mean(z))), differentiable in o
    and shortcut. Autograd's backward makes five activation-sized passes (the two products, the
    mean's broadcast gradient and its sum); this one makes two: Σ g·o for the gate and
    dL/do = g·(1 + s·gate) + dL/dmean / HW in one multiply-add. Attack steps 10-16% faster on CPU
    (tiny and A1). First-order: its backward refuses `create_graph=True`."""

    @staticmethod
    def forward(o, shortcut, scale, shift, w1, w2):
        acc = torch.promote_types(o.dtype, torch.float32)  # the small MLP in fp32 at least
        with torch.autocast(o.device.type, enabled=False):
            hidden = F.linear(o.mean(dim=(2, 3), dtype=acc) * scale + shift, w1.to(acc)).relu()
            gate = F.linear(hidden, w2.to(acc)).sigmoid()
        factor = (1 + scale * gate)[:, :, None, None]
        # in the activations' dtypes: under bf16 autocast, fp32 factors would promote the sum
        offset = (shift * gate)[:, :, None, None].to(shortcut.dtype)
        return torch.addcmul(shortcut + offset, o, factor.to(o.dtype)), hidden, gate, factor

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        o, _, scale, shift, w1, w2 = inputs
        _, hidden, gate, factor = output
        ctx.mark_non_differentiable(hidden, gate, factor)
        ctx.save_for_backward(o, scale, shift, w1, w2, hidden, gate, factor)

    @staticmethod
    def backward(ctx, grad, *_):
        _refuse_second_order()  # also when a fused block is called on its own
        o, scale, shift, w1, w2, hidden, gate, factor = ctx.saved_tensors
        acc = gate.dtype
        sum_go = (grad * o).sum(dim=(2, 3), dtype=acc)
        sum_g = grad.sum(dim=(2, 3), dtype=acc)
        d_logits = (scale * sum_go + shift * sum_g) * gate * (1 - gate)
        d_hidden = (d_logits @ w2.to(acc)) * (hidden > 0)
        d_mean = (d_hidden @ w1.to(acc)) * scale / (o.shape[2] * o.shape[3])
        grad_o = torch.addcmul(d_mean[:, :, None, None].to(grad.dtype), grad, factor.to(grad.dtype))
        return grad_o, grad, None, None, None, None
