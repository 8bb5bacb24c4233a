"""Training-mode BatchNorm on narrow channels_last tensors (`_packed_bn`) is nn.BatchNorm2d: the
same output, gradients and running statistics, step after step."""

from __future__ import annotations

import copy

import pytest
import torch
from _arch_checks import batchnorm_pair
from torch import nn

from robustresnet.arch import _packed_bn
from robustresnet.arch._packed_bn import _PackedBatchNorm, packs

CL = torch.channels_last


@pytest.fixture(autouse=True)
def _any_size(monkeypatch):
    """Small test tensors take the row view too (it is skipped below MIN_ELEMENTS for speed)."""
    monkeypatch.setattr(_packed_bn, "MIN_ELEMENTS", 1)


def _input(shape, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator) * 3 + 1
    return x.contiguous(memory_format=CL)


@pytest.mark.parametrize(
    "shape", [(4, 8, 6, 6), (2, 12, 5, 4), (3, 20, 4, 4), (2, 24, 3, 2), (16, 4, 1, 1)]
)
@pytest.mark.parametrize("options", [{}, {"momentum": None}, {"track_running_stats": False}])
def test_training_matches_native_batchnorm(shape, options):
    native, ours = batchnorm_pair(shape[1], **options)
    for step in range(2):  # the running statistics and the batch counter move the same way
        x = _input(shape, seed=step)
        assert packs(ours, x)
        x_native, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_native, y_ours = native(x_native), ours(x_ours)
        assert y_ours.is_contiguous(memory_format=CL)
        torch.testing.assert_close(y_ours, y_native, atol=1e-5, rtol=1e-5)
        grad = _input(shape, seed=10 + step)
        y_native.backward(grad)
        y_ours.backward(grad)
        torch.testing.assert_close(x_ours.grad, x_native.grad, atol=1e-5, rtol=1e-4)
        for mine, theirs in zip(ours.parameters(), native.parameters(), strict=True):
            torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-4, rtol=1e-4)
        for name, buffer in native.named_buffers():
            torch.testing.assert_close(ours.get_buffer(name), buffer, atol=1e-6, rtol=1e-5)


def test_statistics_update_without_autograd():
    """Recomputing BN statistics under no_grad (after weight averaging) matches native."""
    native, ours = batchnorm_pair(12)
    x = _input((4, 12, 4, 4))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), native(x), atol=1e-5, rtol=1e-5)
    for name, buffer in native.named_buffers():
        torch.testing.assert_close(ours.get_buffer(name), buffer, atol=1e-6, rtol=1e-5)


def test_backward_takes_any_gradient_layout():
    native, ours = batchnorm_pair(8)
    x = _input((2, 8, 4, 4))
    grad = torch.randn(2, 8, 4, 4)  # contiguous, not channels_last
    x_native, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    native(x_native).backward(grad)
    ours(x_ours).backward(grad)
    torch.testing.assert_close(x_ours.grad, x_native.grad, atol=1e-5, rtol=1e-4)


def test_gradients_match_finite_differences():
    x = _input((2, 12, 2, 2)).double().requires_grad_()
    weight = torch.rand(12, dtype=torch.double).add(0.5).requires_grad_()
    bias = torch.randn(12, dtype=torch.double).requires_grad_()
    torch.autograd.gradcheck(
        lambda *t: _PackedBatchNorm.apply(*t, None, None, 0.0, 1e-5), (x, weight, bias)
    )


def test_second_derivatives_are_refused():
    _, ours = batchnorm_pair(8)
    x = _input((2, 8, 4, 4)).requires_grad_()
    (grad,) = torch.autograd.grad(ours(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


@pytest.mark.parametrize(
    "case",
    [
        "16 channels",
        "contiguous layout",
        "float64",
        "eval mode",
        "odd pixel count",
        "meta",
        "small",
    ],
)
def test_other_inputs_take_native_batchnorm(case, monkeypatch):
    _, ours = batchnorm_pair(16 if case == "16 channels" else 8)
    x = _input((2, ours.num_features, 4, 4))
    if case == "contiguous layout":
        x = x.contiguous()
    elif case == "float64":
        ours, x = ours.double(), x.double()
    elif case == "eval mode":
        ours.eval()
    elif case == "odd pixel count":  # 3x3 pixels: no whole rows of two pixels
        x = _input((1, 8, 3, 3))
    elif case == "meta":
        x = x.to("meta")
    elif case == "small":  # fixed per-op costs outweigh the gain: native BatchNorm
        monkeypatch.setattr(_packed_bn, "MIN_ELEMENTS", x.numel() + 1)
    assert not packs(ours, x)
    native = copy.deepcopy(ours)
    native.__class__ = nn.BatchNorm2d
    if case != "meta":
        torch.testing.assert_close(ours(x), native(x))
