"""Trainable parameters and multiply-accumulates (MACs) of a network for one image.

The paper's "FLOPs" are MACs counted by torchprofile's rules, which its published figures follow
to the last digit; this module applies the same rules to the aten ops a forward pass dispatches:

- convolution: output elements x (input channels / groups) x kernel area;
- linear / matmul (addmm, mm, bmm, addmv, mv, dot): n x m x p;
- batch / instance / layer / group normalisation with affine parameters: output elements;
- elementwise multiply (e.g. SE rescaling), leaky ReLU, average / adaptive pooling, mean:
  output elements; bilinear upsampling: 4 x output elements;
- everything else (add, sub, div, activations, concatenation, views) is free.

The pass runs on the `meta` device, so even RobustResNet-A4 is counted at once without memory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .._units import format_count
from ..errors import ConfigError
from .cellspec import CellNetSpec
from .network import build_model
from .spec import ArchSpec
from .specs import Spec

aten = torch.ops.aten


@dataclass(frozen=True)
class Profile:
    """Cost of one forward pass: trainable parameters, MACs and the (C, H, W) input it used."""

    params: int
    macs: int
    input_size: tuple[int, int, int]

    def __str__(self) -> str:
        return f"{format_count(self.params)} params, {format_count(self.macs)} MACs"


def _numel(tensor: Any) -> int:
    """Elements of an op's output; tuple outputs (normalisation) count their first tensor."""
    if isinstance(tensor, (tuple, list)):
        tensor = tensor[0]
    return tensor.numel()


def _convolution(args: Sequence[Any], out: torch.Tensor) -> int:
    weight = args[1]
    # torchprofile's test for a transposed weight: (in, out/groups, k..) not (out, in/groups, k..).
    in_per_group = weight.shape[1] if out.shape[1] == weight.shape[0] else weight.shape[0]
    return out.numel() * in_per_group * math.prod(weight.shape[2:])


def _matmul(args: Sequence[Any], first: int) -> int:
    """n·m·p of `args[first] @ args[first + 1]`, batched or not, with vectors as n·m."""
    left, right = args[first].shape, args[first + 1].shape
    if len(left) == 1 and len(right) == 1:
        return left[0]
    if len(right) == 1:
        return math.prod(left)
    batch = math.prod(left[:-2]) if len(left) > 2 else 1
    return batch * math.prod(left[-2:]) * right[-1]


def _affine_norm(weight_index: int) -> Callable[[Sequence[Any], Any], int]:
    """Normalisations cost their output elements when they carry an affine weight."""
    return lambda args, out: _numel(out) if args[weight_index] is not None else 0


def _output_elements(args: Sequence[Any], out: Any) -> int:
    return _numel(out)


_BATCH_NORMS = (
    aten.native_batch_norm,
    aten._native_batch_norm_legit,
    aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit_functional,
    aten._batch_norm_with_update,
    aten._batch_norm_no_update,
    aten.cudnn_batch_norm,
    aten.miopen_batch_norm,
)
_ELEMENTWISE = (
    aten.mul,
    aten.mul_,
    aten.leaky_relu,
    aten.leaky_relu_,
    aten.avg_pool1d,
    aten.avg_pool2d,
    aten.avg_pool3d,
    aten._adaptive_avg_pool2d,
    aten._adaptive_avg_pool3d,
    aten.adaptive_avg_pool1d,
    aten.mean,
)

# Rules keyed by overload packet; an op absent here costs nothing (torchprofile's free ops).
RULES: dict[Any, Callable[[Sequence[Any], Any], int]] = {
    aten.convolution: _convolution,
    aten._convolution: _convolution,
    aten.addmm: lambda args, out: _matmul(args, 1),
    aten.addmv: lambda args, out: _matmul(args, 1),
    aten.baddbmm: lambda args, out: _matmul(args, 1),
    aten.mm: lambda args, out: _matmul(args, 0),
    aten.bmm: lambda args, out: _matmul(args, 0),
    aten.mv: lambda args, out: _matmul(args, 0),
    aten.dot: lambda args, out: _matmul(args, 0),
    aten.native_layer_norm: _affine_norm(2),
    aten.native_group_norm: _affine_norm(1),
    aten.upsample_bilinear2d: lambda args, out: 4 * out.numel(),
    **{op: _affine_norm(1) for op in _BATCH_NORMS},
    **{op: _output_elements for op in _ELEMENTWISE},
}


def _meta_batch_norm(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch norm's meta outputs (result, saved mean, saved inverse std) made directly.

    Meta runs batch norm as a Python decomposition, most of a count's time; only shapes matter.
    """
    return torch.empty_like(x), x.new_empty(x.shape[1]), x.new_empty(x.shape[1])


class MacCounter(TorchDispatchMode):
    """Adds up the MACs of every aten op run inside it, by torchprofile's rules (see RULES)."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is aten.native_batch_norm.default and args[0].is_meta:
            out = _meta_batch_norm(args[0])
        else:
            out = func(*args, **(kwargs or {}))
        rule = RULES.get(func.overloadpacket)
        if rule is not None:
            self.macs += int(rule(args, out))
        return out


def count_params(model: nn.Module) -> int:
    """Trainable parameters (shared tensors once), the paper's "#P"."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _input_shape(model: nn.Module, input_size: int | Sequence[int] | None) -> tuple[int, int, int]:
    """(C, H, W) of one image: `input_size` as H = W, (H, W) or (C, H, W), else the spec's."""
    spec = getattr(model, "spec", None)
    channels = getattr(spec, "in_channels", 3)
    size = input_size if input_size is not None else getattr(spec, "input_size", None)
    if size is None:
        raise ConfigError("input_size", None, "an image size (the model has no .spec)")
    shape = (size, size) if isinstance(size, int) else tuple(size)
    if len(shape) == 2:
        shape = (channels, *shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ConfigError("input_size", input_size, "a positive int, (H, W) or (C, H, W)")
    return shape


def count_macs(
    model: nn.Module, input_shape: tuple[int, int, int], *, parts: Sequence[nn.Module] = ()
) -> tuple[int, list[int]]:
    """MACs of `model` on one image, and of each submodule in `parts` within that pass.

    The pass runs on meta stand-ins of the model's tensors in eval mode; the model is untouched.
    """
    stand_ins = {
        name: torch.empty_like(t, device="meta")
        for name, t in (*model.named_parameters(), *model.named_buffers())
    }
    counter, starts, part_macs = MacCounter(), {}, {part: 0 for part in parts}

    def enter(module: nn.Module, _args: Any) -> None:
        starts[module] = counter.macs

    def leave(module: nn.Module, _args: Any, _out: Any) -> None:
        part_macs[module] += counter.macs - starts[module]

    hooks = [part.register_forward_pre_hook(enter) for part in parts]
    hooks += [part.register_forward_hook(leave) for part in parts]
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), counter:
            torch.func.functional_call(
                model, stand_ins, (torch.empty(1, *input_shape, device="meta"),)
            )
    finally:
        for module, training in modes.items():
            module.training = training
        for hook in hooks:
            hook.remove()
    return counter.macs, [part_macs[part] for part in parts]


@dataclass(frozen=True)
class DepthCosts:
    """Params and MACs of a spec as affine functions of its stage depths.

    Every block of a stage after the first is the same, so cost = fixed + Σ depth_i · per_block_i.
    """

    fixed_params: int
    fixed_macs: int
    block_params: tuple[int, ...]
    block_macs: tuple[int, ...]
    input_size: tuple[int, int, int]

    def at(self, depths: Sequence[int]) -> Profile:
        """The profile of the network with these stage depths."""
        if len(depths) != len(self.block_macs):
            raise ConfigError("depths", tuple(depths), f"{len(self.block_macs)} stage depths")
        params = self.fixed_params + sum(map(operator.mul, depths, self.block_params))
        macs = self.fixed_macs + sum(map(operator.mul, depths, self.block_macs))
        return Profile(params=params, macs=macs, input_size=self.input_size)


def depth_costs(spec: ArchSpec) -> DepthCosts:
    """The affine depth-to-cost model of `spec`'s widths and blocks (cached, any depths)."""
    stages = tuple(dataclasses.replace(stage, depth=2) for stage in spec.stages)
    return _measure_depth_costs(spec.replace(stages=stages))


@functools.lru_cache(maxsize=4096)
def _measure_depth_costs(template: ArchSpec) -> DepthCosts:
    """Count a network of two blocks per stage once, and its second block of each stage."""
    model = build_model(template, device="meta")
    repeated = [stage.layer[1] for stage in model.blocks]
    shape = (template.in_channels, template.input_size, template.input_size)
    macs, block_macs = count_macs(model, shape, parts=repeated)
    block_params = [count_params(block) for block in repeated]
    return DepthCosts(
        fixed_params=count_params(model) - 2 * sum(block_params),
        fixed_macs=macs - 2 * sum(block_macs),
        block_params=tuple(block_params),
        block_macs=tuple(block_macs),
        input_size=shape,
    )


@functools.lru_cache(maxsize=64)
def _cell_costs(spec: CellNetSpec) -> Profile:
    """One counted pass of a cell network (cached: RobNet's 33 cells take seconds on meta)."""
    model = build_model(spec, device="meta")
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    return Profile(params=count_params(model), macs=count_macs(model, shape)[0], input_size=shape)


def profile(
    spec_or_model: Spec | nn.Module, *, input_size: int | Sequence[int] | None = None
) -> Profile:
    """Parameters and MACs for one image of a spec (`ArchSpec`, `CellNetSpec`) or any `nn.Module`.

    `input_size` overrides the spec's image size (H = W, (H, W) or (C, H, W)).
    An `ArchSpec` is counted through `depth_costs` (exact, and fast for deep networks), a cell
    network by one pass of the network built on the meta device.
    """
    if isinstance(spec_or_model, CellNetSpec) and not isinstance(input_size, Sequence):
        spec = spec_or_model
        return _cell_costs(spec if input_size is None else spec.replace(input_size=input_size))
    if isinstance(spec_or_model, CellNetSpec):
        spec_or_model = build_model(spec_or_model, device="meta")
    if isinstance(spec_or_model, ArchSpec):
        if input_size is None or isinstance(input_size, int):
            spec = spec_or_model
            if input_size is not None:
                spec = spec.replace(input_size=input_size)
            return depth_costs(spec).at(spec.depths)
        spec_or_model = build_model(spec_or_model, device="meta")
    if not isinstance(spec_or_model, nn.Module):
        raise ConfigError("spec_or_model", type(spec_or_model).__name__, "a spec or nn.Module")
    shape = _input_shape(spec_or_model, input_size)
    macs, _ = count_macs(spec_or_model, shape)
    return Profile(params=count_params(spec_or_model), macs=macs, input_size=shape)
