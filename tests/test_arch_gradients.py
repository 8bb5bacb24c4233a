"""Every block is differentiable in every way PyTorch offers: second derivatives (gradgradcheck,
gradient penalties against central differences of first derivatives), torch.func (grad, vmap,
functional_call) against loops, and torch.compile with no graph break; train and eval mode."""

from __future__ import annotations

import pytest
import torch
from _arch_checks import randomise_batchnorms
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from robustresnet.arch import ArchSpec, StageSpec, build_model
from robustresnet.arch.blocks import BLOCKS
from robustresnet.arch.layers import ACTIVATIONS

# Tiny but complete: 3 chunks (a Res2Net chain of two chunk convs), 2 groups, an SE of 6 units.
OPTIONS = {"scales": 3, "base_width": 40, "cardinality": 2, "se_reduction": 4}
IN_CH, PLANES = 4, 6
MODES = ["train", "eval"]
STRIDES = [1, 2]  # both with a projection shortcut (4 input channels)


def tiny_block(name: str, stride: int, mode: str, *, frozen: bool = False) -> nn.Module:
    """A float64 block with SiLU (smooth, so central differences are accurate) and random BN."""
    torch.manual_seed(0)
    block = BLOCKS[name](
        IN_CH, PLANES, stride, act=ACTIVATIONS["silu"], dtype=torch.float64, **OPTIONS
    )
    randomise_batchnorms(block)
    block.train(mode == "train")
    return block.requires_grad_(not frozen)


def tiny_input(batch: int = 2, size: int = 5) -> torch.Tensor:
    return torch.randn(batch, IN_CH, size, size, dtype=torch.float64)


def objective(out: torch.Tensor) -> torch.Tensor:
    """A scalar whose derivatives of every order are non-trivial."""
    return out.pow(3).sum()


def input_gradient(model: nn.Module, x: torch.Tensor, *, create_graph: bool = False):
    x = x if create_graph else x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(model(x)), x, create_graph=create_graph)
    return g


CASES = [(name, stride, mode) for name in sorted(BLOCKS) for stride in STRIDES for mode in MODES]


@pytest.mark.parametrize(("name", "stride", "mode"), CASES)
def test_gradgradcheck(name, stride, mode):
    block = tiny_block(name, stride, mode)
    x = tiny_input().requires_grad_(True)
    assert torch.autograd.gradgradcheck(block, (x,), fast_mode=True)


@pytest.mark.parametrize(("name", "stride", "mode"), CASES)
def test_input_hessian_vector_product_matches_central_differences(name, stride, mode):
    """d/dx of the input gradient along v, by double backward, equals the central difference of
    first-order input gradients (parameters frozen: how attacks and input regularisers run)."""
    block = tiny_block(name, stride, mode, frozen=True)
    x, v = tiny_input(), tiny_input()
    xg = x.clone().requires_grad_(True)
    g = input_gradient(block, xg, create_graph=True)
    (hvp,) = torch.autograd.grad((g * v).sum(), xg)
    h = 1e-5
    numeric = (input_gradient(block, x + h * v) - input_gradient(block, x - h * v)) / (2 * h)
    torch.testing.assert_close(hvp, numeric, rtol=1e-6, atol=1e-6 * numeric.abs().max().item())


@pytest.mark.parametrize(("name", "stride", "mode"), CASES)
def test_gradient_penalty_parameter_gradient_matches_central_differences(name, stride, mode):
    """The parameter gradient of the penalty |d objective / dx|^2 (double backward) along a random
    direction u equals the central difference of the penalty computed with first derivatives."""
    block = tiny_block(name, stride, mode)
    x = tiny_input()
    params = dict(block.named_parameters())
    buffers = dict(block.named_buffers())

    def penalty(values: dict[str, torch.Tensor], create_graph: bool) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        out = functional_call(block, (values, buffers), (xg,))
        (g,) = torch.autograd.grad(objective(out), xg, create_graph=create_graph)
        return g.square().sum()

    grads = torch.autograd.grad(penalty(params, True), list(params.values()))
    u = {k: torch.randn_like(p) for k, p in params.items()}
    directional = sum((g * u[k]).sum() for g, k in zip(grads, params, strict=True))
    h = 1e-6
    with torch.no_grad():
        plus = {k: p + h * u[k] for k, p in params.items()}
        minus = {k: p - h * u[k] for k, p in params.items()}
    numeric = (penalty(plus, False) - penalty(minus, False)) / (2 * h)
    torch.testing.assert_close(directional, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(("name", "stride", "mode"), CASES)
def test_torch_func_per_sample_gradients_match_a_loop(name, stride, mode):
    """vmap(grad(...)) over a batch with functional_call equals one autograd call per sample, for
    the parameters and the input (in train mode BatchNorm uses each sample's own statistics)."""
    block = tiny_block(name, stride, mode)
    if mode == "train":
        replace_all_batch_norm_modules_(block)  # no running statistics to update under vmap
    params = {k: p.detach() for k, p in block.named_parameters()}
    buffers = dict(block.named_buffers())
    x = tiny_input(batch=3)

    def loss(values, sample):
        return objective(functional_call(block, (values, buffers), (sample[None],)))

    param_grads, x_grads = vmap(grad(loss, argnums=(0, 1)), in_dims=(None, 0))(params, x)
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        expected = torch.autograd.grad(objective(block(xi)), [xi, *block.parameters()])
        torch.testing.assert_close(x_grads[i], expected[0][0])
        for (key, value), want in zip(param_grads.items(), expected[1:], strict=True):
            torch.testing.assert_close(value[i], want, msg=key)


@pytest.mark.parametrize(("name", "stride", "mode"), CASES)
def test_compiles_as_one_graph_with_the_same_gradients(name, stride, mode):
    """torch.compile(fullgraph=True) traces forward and backward (AOTAutograd, no codegen)."""
    torch._dynamo.reset()  # every case its own compilation (not a recompilation of `forward`)
    block = tiny_block(name, stride, mode)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    x = tiny_input()
    expected = input_gradient(block, x)
    torch.testing.assert_close(input_gradient(compiled, x), expected)


def tiny_network(block: str, mode: str) -> nn.Module:
    stages = tuple(
        StageSpec(depth=2, channels=c, stride=s, block=block) for c, s in ((24, 1), (24, 2))
    )
    spec = ArchSpec(stages=stages, stem_channels=8, input_size=8, mean=(0.5,) * 3, std=(0.25,) * 3,
                    **OPTIONS)  # fmt: skip
    return randomise_batchnorms(build_model(spec)).train(mode == "train")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("block", ["robust_res_block", "basic_block"])
def test_network_has_no_graph_break(block, mode):
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(tiny_network(block, mode))(torch.rand(2, 3, 8, 8))
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


@pytest.mark.parametrize("mode", MODES)
def test_network_gradgradcheck(mode):
    """A whole RobustResNet (identity and projection shortcuts, in-model normalisation)."""
    model = tiny_network("robust_res_block", mode).double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(model, (x,), fast_mode=True)
