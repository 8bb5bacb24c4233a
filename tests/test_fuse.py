"""`fuse(model)` computes the model's eval-mode function (outputs and input gradients) over every
block type and geometry, refuses second derivatives, and is what attacks run by default."""

from __future__ import annotations

import pytest
import torch
from _arch_checks import randomise_batchnorms
from torch import nn

from robustresnet import build_model, evaluate, fuse, pgd
from robustresnet.arch import ArchSpec, StageSpec
from robustresnet.arch.blocks import BLOCKS, RobustResBlock
from robustresnet.arch.fuse import FusedNetwork, SecondOrderError
from robustresnet.arch.layers import ACTIVATIONS, NORMS
from robustresnet.attacks.pgd import attack_model
from robustresnet.train.objectives import make_objective

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def network(block: str, act: str = "relu", norm: str = "batchnorm") -> nn.Module:
    """Two stages of two blocks (identity and projection shortcuts, strides 1 and 2)."""
    stages = tuple(
        StageSpec(depth=2, channels=c, stride=s, block=block, activation=act, normalization=norm)
        for c, s in ((32, 1), (64, 2))
    )
    spec = ArchSpec(stages=stages, stem_channels=16, se_reduction=16, mean=(0.5,) * 3,
                    std=(0.25,) * 3)  # fmt: skip
    return randomise_batchnorms(build_model(spec)).eval()


def output_and_input_gradient(model: nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = model(x)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)
    (g,) = torch.autograd.grad((out * weights).sum(), x)
    return out.detach(), g


def assert_close_to_fp32_rounding(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Within 1e-5 of the largest magnitude (float32 summation order differs)."""
    error = (actual.float() - expected.float()).abs().max().item()
    assert error <= 1e-5 * max(expected.abs().max().item(), 1.0), error


def assert_same_function(model: nn.Module, x: torch.Tensor) -> None:
    fused = fuse(model)
    out, grad = output_and_input_gradient(fused, x)
    ref_out, ref_grad = output_and_input_gradient(model, x)
    assert_close_to_fp32_rounding(out, ref_out)
    assert_close_to_fp32_rounding(grad, ref_grad)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_every_block_type(block, layout):
    model = network(block).to(memory_format=layout)
    assert_same_function(model, torch.rand(3, 3, 9, 9).contiguous(memory_format=layout))


@pytest.mark.parametrize("norm", ["groupnorm", "layernorm", "instancenorm"])
def test_other_norms_stay_as_they_are(norm):
    model = network("robust_res_block", norm=norm)
    assert_same_function(model, torch.rand(2, 3, 8, 8))
    assert any(isinstance(m, RobustResBlock) for m in fuse(model).modules())


def test_batchnorm_without_running_statistics_is_not_folded():
    model = network("robust_res_block")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    assert_same_function(model, torch.rand(4, 3, 8, 8))


# (input channels, stride) of one RobustResBlock (planes 32: 8 chunks of 8 channels, groups of 2):
# identity shortcut, projection at stride 1, projection at stride 2.
GEOMETRIES = [(128, 1), (64, 1), (64, 2)]


@pytest.mark.parametrize("size", [1, 7, 8, 9])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("act", ["relu", "silu", "prelu"])
@pytest.mark.parametrize(("in_ch", "stride"), GEOMETRIES)
def test_robust_res_block_geometries(in_ch, stride, act, layout, size):
    block = RobustResBlock(in_ch, 32, stride, act=ACTIVATIONS[act], se_reduction=16)
    block = randomise_batchnorms(block).eval().to(memory_format=layout)
    batch = 1 if size == 8 else 3
    x = torch.randn(batch, in_ch, size, size).contiguous(memory_format=layout)
    assert_same_function(block, x)
    assert fuse(block)(x).is_contiguous(memory_format=layout)


@pytest.mark.parametrize("block", ["robust_res_block", "basic_block"])
def test_bf16_autocast(block):
    """Under bf16 autocast the fused copy is as close to the fp32 function as the definition is
    (bf16 alone moves input gradients to a cosine of 0.98-0.99 here)."""
    model = network(block).to(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    exact_out, exact_grad = output_and_input_gradient(model, x)
    for candidate in (fuse(model), model):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, grad = output_and_input_gradient(candidate, x)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), exact_out, rtol=0.05, atol=0.05)
        cosine = nn.functional.cosine_similarity(grad.flatten(), exact_grad.flatten(), dim=0)
        assert cosine > 0.97


def second_order_calls(fused: nn.Module, x: torch.Tensor):
    """The APIs that build a graph of the gradient."""

    def autograd_grad():
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(fused(xg).square().sum(), xg, create_graph=True)

    def backward():
        xg = x.clone().requires_grad_(True)
        fused(xg).square().sum().backward(create_graph=True)

    def func_grad():
        torch.func.grad(lambda t: fused(t).square().sum())(x)

    return [autograd_grad, backward, func_grad]


@pytest.mark.parametrize("call", range(3))
def test_second_derivatives_are_refused(call):
    fused = fuse(network("robust_res_block"))
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(SecondOrderError, match="first derivatives only"):
        second_order_calls(fused, x)[call]()


@pytest.mark.parametrize("call", range(3))
def test_a_fused_block_alone_refuses_second_derivatives(call):
    """The SE's hand-written backward refuses too, without the network's input guard."""
    block = fuse(randomise_batchnorms(RobustResBlock(16, 16, se_reduction=4)).eval()).network
    with pytest.raises(SecondOrderError, match="first derivatives only"):
        second_order_calls(block, torch.rand(2, 16, 5, 5))[call]()


def test_snapshot_of_the_current_weights_the_model_untouched():
    model = network("robust_res_block").train()
    fused = fuse(model)
    assert isinstance(fused, FusedNetwork) and not fused.training
    assert not fused.train().training
    assert not any(p.requires_grad for p in fused.parameters())
    assert model.training and all(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 8, 8)
    before = fused(x)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    model.eval()
    torch.testing.assert_close(fuse(model)(x), model(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fuse(model)(x), before)
    with pytest.raises(TypeError, match="not a fused copy"):
        fuse(fused)


def test_attacks_run_the_fused_copy_unless_told_not_to():
    model = network("robust_res_block")
    assert isinstance(attack_model(model), FusedNetwork)
    assert attack_model(model, fuse=False) is model
    plain = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    assert attack_model(plain) is plain
    compiled = torch.compile(model)
    assert attack_model(compiled) is compiled


def test_pgd_and_evaluate_give_the_same_results_fused_or_not():
    """In float64 the two computations agree to the last bits that sign steps see."""
    model = network("robust_res_block").double()
    x, y = torch.rand(6, 3, 8, 8, dtype=torch.float64), torch.arange(6) % 10
    runs = [
        pgd(
            model,
            x,
            y,
            eps=8 / 255,
            step_size=2 / 255,
            steps=5,
            generator=torch.Generator().manual_seed(0),
            fuse=fused,
        )  # fmt: skip
        for fused in (True, False)
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    images = (torch.rand(8, 3, 8, 8) * 255).to(torch.uint8)
    reports = [
        evaluate(
            model.float(),
            images,
            torch.arange(8) % 10,
            attacks=("clean", "fgsm", "pgd5"),
            sanity_checks=False,
            fuse=fused,
        )  # fmt: skip
        for fused in (True, False)
    ]
    assert reports[0]["flags"] == reports[1]["flags"]


def test_the_objective_attacks_the_current_weights():
    """Each inner maximisation fuses afresh: after a weight change it equals the unfused attack."""
    model = network("robust_res_block").double().train()
    x, y = torch.rand(4, 3, 8, 8, dtype=torch.float64), torch.arange(4)
    objective = make_objective("trades", steps=3)
    for _ in range(2):
        attacks = [
            objective.attack(model, x, y, generator=torch.Generator().manual_seed(1), fuse=fuse)
            for fuse in (True, False)
        ]
        torch.testing.assert_close(attacks[0], attacks[1], rtol=0, atol=0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))


def test_fused_model_is_one_graph():
    torch._dynamo.reset()
    fused = fuse(network("robust_res_block"))
    explanation = torch._dynamo.explain(fused)(torch.rand(2, 3, 8, 8))
    assert explanation.graph_break_count == 0


def test_norm_registry_is_native_batchnorm():
    assert type(NORMS["batchnorm"](8)) is nn.BatchNorm2d


def test_the_fused_se_backward_passes_gradcheck():
    """The residual SE's hand-written first-order backward, in float64, at odd map sizes."""
    block = randomise_batchnorms(RobustResBlock(16, 8, se_reduction=4)).eval().double()
    fused_se = fuse(block).network
    o = torch.randn(3, 32, 5, 3, dtype=torch.float64, requires_grad=True)
    shortcut = torch.randn(3, 32, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fused_se._se_residual, (o, shortcut))
