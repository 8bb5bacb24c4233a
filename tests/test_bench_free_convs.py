"""The block benchmark's ceiling (`--free-chunk-convs`) removes exactly the chunk convs."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from torch.utils._python_dispatch import TorchDispatchMode

from robustresnet.arch import ArchSpec, StageSpec, build_model

sys.path.insert(0, str(REPO / "benchmarks"))
from _free_convs import chunk_convs_free  # noqa: E402


class GroupedConvs(TorchDispatchMode):
    """Counts grouped convolutions, forward and backward."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        if packet is torch.ops.aten.convolution and args[-1] > 1:
            self.count += 1
        if packet is torch.ops.aten.convolution_backward and args[-2] > 1:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _pass(model, x, mode: str) -> torch.Tensor:
    """A forward (eval, no grad), attack step (eval, input gradient) or training step."""
    model.train(mode == "train").requires_grad_(mode == "train")
    if mode == "forward":
        with torch.no_grad():
            return model(x)
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long))
    loss.backward()
    return x.grad


@pytest.mark.parametrize("mode", ["forward", "attack", "train"])
def test_chunk_convs_free_removes_them_and_restores(mode):
    stages = tuple(
        StageSpec(depth=2, widening=1, stride=s, block="robust_res_block") for s in (1, 2)
    )
    model = build_model(ArchSpec(stages=stages)).to(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with GroupedConvs() as before:
        expected = _pass(model, x, mode)
    with chunk_convs_free(model), GroupedConvs() as free:
        changed = _pass(model, x, mode)
    with GroupedConvs() as after:
        again = _pass(model, x, mode)
    assert before.count > 0 and free.count == 0 and after.count == before.count
    assert changed.shape == expected.shape and not torch.allclose(changed, expected)
    if mode != "train":  # a training step moves the weights
        torch.testing.assert_close(again, expected)
