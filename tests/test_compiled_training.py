"""A torch.compile'd bf16-autocast TRADES step of a 32x32 RobustResNet (inductor, the real
compiler): with the deleted hand-written training paths it crashed with "modified by an inplace
operation"; now it runs and agrees with the eager step. The slowest test of the suite (about
three minutes of compilation on 2 cores the first time; the inductor cache keeps it)."""

from __future__ import annotations

import copy

import torch

from robustresnet import build_model
from robustresnet.arch import ArchSpec, StageSpec
from robustresnet.train.objectives import make_objective


def _step(net: torch.nn.Module, model: torch.nn.Module, x, y) -> float:
    """One training step as `train_step` takes it: autocast objective, backward, SGD."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = make_objective("trades")(net, x, y, generator=torch.Generator().manual_seed(0))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def test_compiled_bf16_trades_step():
    """The benchmarks' tiny RobustResNet, batch 64, TRADES-10: the setting that crashed."""
    torch.set_num_threads(2)
    stages = tuple(
        StageSpec(depth=d, widening=w, stride=1 if i == 0 else 2, block="robust_res_block")
        for i, (d, w) in enumerate(zip((2, 2, 1), (2, 2, 1), strict=True))
    )
    model = build_model(ArchSpec(stages=stages)).to(memory_format=torch.channels_last)
    eager = copy.deepcopy(model)
    x = torch.rand(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.arange(64) % 10
    compiled = torch.compile(model)
    first = _step(compiled, model, x, y)
    torch.testing.assert_close(first, _step(eager, eager, x, y), rtol=0.02, atol=0)
    for ours, theirs in zip(model.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-3)
    assert torch.isfinite(torch.tensor(_step(compiled, model, x, y)))
