"""The fast RobustResBlock forward computes the block's definition (`reference_forward`)."""

from __future__ import annotations

import copy

import pytest
import torch
from _arch_checks import randomise_batchnorms
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from robustresnet.arch import ArchSpec, StageSpec, build_model
from robustresnet.arch._fast_block import _TrainSEResidual, supported, trains_fast
from robustresnet.arch._subsampled_bn import _SubsampledBatchNorm
from robustresnet.arch.blocks import RobustResBlock
from robustresnet.arch.layers import ACTIVATIONS, NORMS
from robustresnet.arch.profile import profile

# (input channels, stride): identity shortcut, projection at stride 1, projection at stride 2.
GEOMETRIES = [(128, 1), (64, 1), (64, 2)]


def _block(
    in_ch: int, stride: int, act: str = "relu", norm: str = "batchnorm", planes: int = 32
) -> nn.Module:
    """A tiny block (planes 32: 8 chunks of 8 channels, groups of 2) with random BN state."""
    # se_reduction 16 (8 hidden units) so the SE gate is not dead and its weights get gradients.
    block = RobustResBlock(
        in_ch, planes, stride, act=ACTIVATIONS[act], norm=NORMS[norm], se_reduction=16
    )
    return randomise_batchnorms(block)


class Reference(nn.Module):
    """Runs a block's `reference_forward` (the straightforward, step-by-step definition)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block.reference_forward(x)


def _pass(model: nn.Module, x: torch.Tensor, steps: int = 2):
    """Output, input gradient and parameter gradients after `steps` forward/backward passes."""
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return out.detach(), xg.grad, grads


def _close(actual, expected, name: str) -> None:
    """Equal to fp32 rounding: max error within 1e-5 of the tensor's largest magnitude."""
    if expected is None:
        assert actual is None, name
        return
    error = (actual - expected).abs().max().item()
    assert error <= 1e-5 * max(expected.abs().max().item(), 1.0), (name, error)


def _assert_same(fast: nn.Module, ref: nn.Module, x: torch.Tensor) -> None:
    out, x_grad, grads = _pass(fast, x)
    ref_out, ref_x_grad, ref_grads = _pass(Reference(ref), x)
    _close(out, ref_out, "output")
    _close(x_grad, ref_x_grad, "input gradient")
    for name, grad in grads.items():
        _close(grad, ref_grads["block." + name], name)
    assert any(g is not None and g.abs().max() > 0 for n, g in grads.items() if "se.fc" in n)
    ref_state = ref.state_dict()
    for name, value in fast.state_dict().items():
        _close(value.double(), ref_state[name].double(), name)


@pytest.mark.parametrize(("in_ch", "stride"), GEOMETRIES)
@pytest.mark.parametrize("act", ["relu", "silu"])
def test_fast_equals_definition(in_ch, stride, act):
    """Eval mode: outputs, input and parameter gradients, BN state all as the definition's."""
    fast = _block(in_ch, stride, act).eval()
    ref = copy.deepcopy(fast)
    assert supported(fast, torch.zeros(1))
    _assert_same(fast, ref, torch.randn(4, in_ch, 8, 8))


@pytest.mark.parametrize("training", [False, True])
def test_strided_block_on_odd_maps(training):
    """A 7x7 map at stride 2 (the projection reads pixels 0, 2, 4, 6): the definition's results."""
    fast = _block(64, 2).train(training)
    _assert_same(fast, copy.deepcopy(fast), torch.randn(4, 64, 7, 7))


@pytest.mark.parametrize(("in_ch", "stride"), GEOMETRIES)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_training_equals_definition(in_ch, stride, layout):
    """Training mode (batch statistics): outputs, gradients and BN running statistics after two
    steps as the definition's."""
    fast = _block(in_ch, stride).train().to(memory_format=layout)
    ref = copy.deepcopy(fast)
    assert trains_fast(fast, torch.zeros(1))
    _assert_same(fast, ref, torch.randn(4, in_ch, 8, 8).contiguous(memory_format=layout))


@pytest.mark.parametrize("training", [False, True])
def test_wide_chunks_equal_definition(training):
    """16-channel chunks (grouped convs, not the dense form of 8-channel ones): the definition's
    outputs, gradients and BN state."""
    fast = _block(256, 1, planes=64).train(training)
    _assert_same(fast, copy.deepcopy(fast), torch.randn(4, 256, 8, 8))


@pytest.mark.parametrize("options", [{"momentum": None}, {"track_running_stats": False}])
@pytest.mark.parametrize("stride", [1, 2])
def test_training_batchnorm_options(options, stride):
    """A cumulative average (momentum None) and untracked statistics behave as nn.BatchNorm2d."""

    def norm(channels: int, **factory) -> nn.Module:
        return nn.BatchNorm2d(channels, **options, **factory)

    fast = RobustResBlock(
        64, 32, stride, act=ACTIVATIONS["relu"], norm=norm, se_reduction=16
    ).train()
    assert trains_fast(fast, torch.zeros(1))
    _assert_same(fast, copy.deepcopy(fast), torch.randn(4, 64, 8, 8))


def test_training_se_gradients_float64():
    """The hand-written backward of the training-mode residual SE passes gradcheck."""
    block = _block(64, 1).double().train()
    bn, fc = block.se_bn, block.se.fc
    o = torch.randn(3, 128, 4, 4, dtype=torch.float64, requires_grad=True)
    shortcut = torch.randn(3, 128, 4, 4, dtype=torch.float64, requires_grad=True)

    def tail(o, shortcut, weight, bias, w1, w2):
        return _TrainSEResidual.apply(o, shortcut, weight, bias, w1, w2, None, None, 0.0, bn.eps)

    inputs = (o, shortcut, bn.weight, bn.bias, fc[0].weight, fc[2].weight)
    assert torch.autograd.gradcheck(tail, inputs)


@pytest.mark.parametrize(("stride", "size"), [(2, 5), (2, 6), (3, 7)])
def test_subsampled_batchnorm_gradients_float64(stride, size):
    """The strided projection's BatchNorm (statistics over every pixel, output on the sampled
    ones) passes gradcheck in the input, weight and bias."""
    bn = nn.BatchNorm2d(6, dtype=torch.float64)
    x = torch.randn(3, 6, size, size, dtype=torch.float64, requires_grad=True)

    def norm(x, weight, bias):
        return _SubsampledBatchNorm.apply(x, weight, bias, None, None, 0.0, bn.eps, stride)

    torch.testing.assert_close(
        norm(x, bn.weight, bn.bias), bn(x)[:, :, ::stride, ::stride], rtol=1e-12, atol=1e-12
    )
    assert torch.autograd.gradcheck(norm, (x, bn.weight, bn.bias))


def test_strided_training_step_under_bf16_autocast():
    """A strided block's training step under bf16 autocast: the definition's output and input
    gradient within bf16 rounding."""
    fast = _block(64, 2).train()
    results = []
    for model in (fast, Reference(copy.deepcopy(fast))):
        x = torch.randn(4, 64, 8, 8, generator=torch.Generator().manual_seed(3))
        x.requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().square().sum().backward()
        results.append((out.float(), x.grad))
    (out, grad), (ref_out, ref_grad) = results
    torch.testing.assert_close(out, ref_out, atol=0.05, rtol=0.02)
    torch.testing.assert_close(grad, ref_grad, atol=0.05 * ref_grad.abs().max().item(), rtol=0.05)


def test_training_single_value_per_channel_is_refused():
    """One value per channel cannot give batch statistics: BatchNorm's own error, as before."""
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        _block(64, 2).train()(torch.randn(1, 64, 2, 2))


@pytest.mark.parametrize(("in_ch", "stride"), GEOMETRIES)
def test_frozen_eval_float64(in_ch, stride):
    """An attack's pass in float64 (the frozen SE's hand-written backward): the definition's output
    and input gradient to float64 precision."""
    fast = _block(in_ch, stride).double().eval().requires_grad_(False)
    x = torch.randn(3, in_ch, 6, 6, dtype=torch.float64)
    results = []
    for model in (fast, Reference(fast)):
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        (grad,) = torch.autograd.grad((out * torch.cos(out)).sum(), xg)
        results.append((out, grad))
    (out, grad), (ref_out, ref_grad) = results
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("training", [False, True])
def test_second_derivatives_are_refused(training):
    """The hand-written SE backwards are first-order: asking for second derivatives (a gradient
    penalty, say) is a clear error rather than a silently wrong result."""
    block = _block(64, 1).train(training).requires_grad_(training)
    x = torch.randn(2, 64, 4, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(block(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


@pytest.mark.parametrize(("in_ch", "stride"), GEOMETRIES)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_frozen_eval_input_gradient(in_ch, stride, layout):
    """An attack's pass (eval, parameters frozen): output and input gradient as the definition's."""
    fast = _block(in_ch, stride).eval().requires_grad_(False).to(memory_format=layout)
    x = torch.randn(4, in_ch, 8, 8).contiguous(memory_format=layout)
    results = []
    for model in (fast, Reference(fast)):
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        (grad,) = torch.autograd.grad(
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), xg
        )
        results.append((out, grad))
    (out, grad), (ref_out, ref_grad) = results
    _close(out, ref_out, "output")
    _close(grad, ref_grad, "input gradient")
    with FlopCounterMode(display=False):  # its backward hooks see a plain backward, no nesting
        fast(x.clone().requires_grad_(True)).sum().backward()


@pytest.mark.parametrize(("in_ch", "stride"), GEOMETRIES)
def test_fast_without_grad(in_ch, stride):
    """No-grad inference (the in-place path) gives the definition's output, input untouched."""
    block = _block(in_ch, stride).eval()
    x = torch.randn(4, in_ch, 8, 8)
    x_before = x.clone()
    with torch.no_grad():
        out, ref_out = block(x), block.reference_forward(x)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-4)
    assert torch.equal(x, x_before)


@pytest.mark.parametrize(("in_ch", "stride"), GEOMETRIES)
def test_bf16_autocast(in_ch, stride):
    """Under bf16 autocast: the definition's output dtype, values within bf16 rounding."""
    block = _block(in_ch, stride).eval()
    x = torch.randn(4, in_ch, 8, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, ref_out = block(x), block.reference_forward(x)
    assert out.dtype == ref_out.dtype
    torch.testing.assert_close(out.float(), ref_out.float(), atol=0.05, rtol=0.02)


def test_frozen_bf16_attack_step():
    """An attack step under bf16 autocast: the input gradient is no further from the fp32
    definition's than the definition's own under bf16 (twice that, at most)."""
    block = _block(64, 1).eval().requires_grad_(False)
    x = torch.randn(4, 64, 8, 8)

    def input_grad(model: nn.Module, bf16: bool) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(xg)
        return torch.autograd.grad(out.float().square().sum(), xg)[0]

    exact = input_grad(Reference(block), False)
    ours = input_grad(block, True)
    assert ours.dtype == torch.float32
    definition_error = (input_grad(Reference(block), True) - exact).abs().max()
    assert (ours - exact).abs().max() <= 2 * definition_error


def test_other_norms_run_the_definition():
    """Norms other than BatchNorm2d, and meta tensors, take the step-by-step definition."""
    assert not supported(_block(64, 2, norm="groupnorm").eval(), torch.zeros(1))
    assert not supported(_block(64, 2).eval(), torch.zeros(1, device="meta"))


def test_macs_count_the_definition():
    """The profiler (meta tensors) counts the defining operations, e.g. every BatchNorm."""
    stages = (StageSpec(depth=1, widening=2, block="robust_res_block"),)
    spec = ArchSpec(stages=stages)
    assert profile(build_model(spec)).macs == profile(spec).macs
