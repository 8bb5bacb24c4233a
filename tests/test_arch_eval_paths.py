"""Eval-mode shortcuts compute the same function: our BatchNorm2d's multiply-add, the basic
block's conv1 with bn2 folded in."""

from __future__ import annotations

import pytest
import torch
from _arch_checks import batchnorm_pair, randomise_batchnorms
from torch import nn

from robustresnet.arch.blocks import PreActBasicBlock
from robustresnet.arch.layers import NORMS, BatchNorm2d


def test_registry_builds_ours_with_the_native_state_dict():
    norm = NORMS["batchnorm"](8)
    assert type(norm) is BatchNorm2d
    assert list(norm.state_dict()) == list(nn.BatchNorm2d(8).state_dict())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_eval_output_and_input_gradient_match_native(layout):
    native, ours = batchnorm_pair(6)
    native.eval(), ours.eval()
    x = torch.randn(4, 6, 5, 5).contiguous(memory_format=layout)
    outputs, grads = [], []
    for bn in (native, ours):
        xi = x.clone().requires_grad_(True)
        y = bn(xi)
        (grad,) = torch.autograd.grad((y * torch.arange(y.numel()).view_as(y)).sum(), xi)
        outputs.append(y)
        grads.append(grad)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-4)
    assert outputs[1].is_contiguous(memory_format=layout)


def test_training_mode_is_native():
    native, ours = batchnorm_pair(6)
    x = torch.randn(8, 6, 4, 4)
    torch.testing.assert_close(ours(x), native(x))
    torch.testing.assert_close(ours.running_mean, native.running_mean)
    torch.testing.assert_close(ours.running_var, native.running_var)
    assert int(ours.num_batches_tracked) == int(native.num_batches_tracked) == 1


def test_bf16_autocast_keeps_bf16_activations():
    _, ours = batchnorm_pair(6)
    ours.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(torch.randn(2, 6, 3, 3).bfloat16())
    assert y.dtype == torch.bfloat16


def test_wrong_rank_is_rejected_as_natively():
    _, ours = batchnorm_pair(6)
    with pytest.raises(ValueError, match="4D input"):
        ours.eval()(torch.randn(2, 6))


class _Definition(nn.Module):
    """The pre-activation basic block step by step, with native BatchNorm2d."""

    def __init__(self, block: PreActBasicBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        out = torch.relu(nn.BatchNorm2d.forward(b.bn1, x))
        shortcut = x if b.shortcut is None else b.shortcut(out)
        out = torch.relu(nn.BatchNorm2d.forward(b.bn2, b.conv1(out)))
        return b.conv2(out) + shortcut


@pytest.mark.parametrize("in_ch, stride", [(8, 1), (4, 2)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_basic_block_eval_matches_its_definition(in_ch, stride, layout):
    block = PreActBasicBlock(in_ch, 8, stride)
    randomise_batchnorms(block, seed=2)
    block.eval().to(memory_format=layout)
    x = torch.randn(3, in_ch, 6, 6).contiguous(memory_format=layout)
    results = []
    for model in (block, _Definition(block)):
        xi = x.clone().requires_grad_(True)
        y = model(xi)
        (grad,) = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), xi)
        results.append((y, grad))
    (y, grad), (y_ref, grad_ref) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5)


def test_basic_block_training_keeps_batch_statistics():
    block = PreActBasicBlock(8, 8, 1)
    reference = _Definition(block)
    x = torch.randn(4, 8, 5, 5)
    torch.testing.assert_close(block(x), reference(x))
