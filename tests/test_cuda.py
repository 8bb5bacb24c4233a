"""The same functions on a GPU as on the CPU: the authors' test vectors (definition and fused
copy), double backward and torch.func per block, the fused copy's refusal of second derivatives,
bf16 autocast and an inductor-compiled TRADES step. Skipped without CUDA; where a GPU is, run
`pytest tests/test_cuda.py` (benchmarks/gpu.sh does, before it measures)."""

from __future__ import annotations

import copy

import pytest
import torch
from _arch_checks import randomise_batchnorms
from test_arch_gradients import CASES, objective, tiny_block, tiny_input
from test_arch_reference import CASES as VECTORS
from test_arch_reference import _case
from test_fuse import network, output_and_input_gradient
from torch import nn
from torch.func import functional_call, grad, vmap

from robustresnet import build_model, fuse, load_weights
from robustresnet.arch import ArchSpec, StageSpec
from robustresnet.arch.blocks import RobustResBlock
from robustresnet.arch.fuse import SecondOrderError
from robustresnet.train.objectives import make_objective

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = "cuda"


@pytest.fixture(autouse=True)
def _full_fp32():
    """TF32 off, as on the CPU: the vectors' tolerances are for fp32 arithmetic."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("name", VECTORS)
def test_vector_logits(reference_dir, name, fused):
    case, x, logits, state = _case(reference_dir, name)
    model = build_model(ArchSpec.from_reference(case["model"])).eval()
    load_weights(model, state)
    model = model.to(CUDA)
    with torch.no_grad():
        out = (fuse(model) if fused else model)(x.to(CUDA))
    torch.testing.assert_close(out.cpu(), logits, atol=case["tolerance_abs"], rtol=0)


@pytest.mark.parametrize(("name", "stride", "mode"), CASES)
def test_block_gradgradcheck(name, stride, mode):
    block = tiny_block(name, stride, mode).to(CUDA)
    x = tiny_input().to(CUDA).requires_grad_(True)
    assert torch.autograd.gradgradcheck(block, (x,), fast_mode=True, nondet_tol=1e-10)


@pytest.mark.parametrize(("name", "stride", "mode"), [c for c in CASES if c[2] == "eval"])
def test_block_per_sample_gradients_match_the_cpu(name, stride, mode):
    """vmap(grad(...)) with functional_call on the GPU equals the same on the CPU (float64)."""
    block = tiny_block(name, stride, mode)
    x = tiny_input(batch=3)

    def per_sample(device: str) -> torch.Tensor:
        moved = copy.deepcopy(block).to(device)
        params = {k: p.detach() for k, p in moved.named_parameters()}
        buffers = dict(moved.named_buffers())

        def loss(sample):
            return objective(functional_call(moved, (params, buffers), (sample[None],)))

        return vmap(grad(loss))(x.to(device)).cpu()

    torch.testing.assert_close(per_sample(CUDA), per_sample("cpu"))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("block", ["robust_res_block", "basic_block", "bottleneck"])
def test_fused_copy_is_the_function_on_the_cpu(block, layout):
    """Outputs and input gradients of the fused copy on the GPU equal the CPU definition's."""
    model = network(block).to(memory_format=layout)
    x = torch.rand(3, 3, 9, 9).contiguous(memory_format=layout)
    ref_out, ref_grad = output_and_input_gradient(model, x)
    out, grad_ = output_and_input_gradient(fuse(model.to(CUDA)), x.to(CUDA))
    scale = max(ref_out.abs().max().item(), 1.0)
    torch.testing.assert_close(out.cpu(), ref_out, rtol=0, atol=1e-5 * scale)
    scale = max(ref_grad.abs().max().item(), 1.0)
    torch.testing.assert_close(grad_.cpu(), ref_grad, rtol=0, atol=1e-5 * scale)


def test_bf16_autocast_stays_close():
    model = network("robust_res_block").to(CUDA, memory_format=torch.channels_last)
    x = torch.rand(4, 3, 8, 8, device=CUDA).contiguous(memory_format=torch.channels_last)
    exact_out, exact_grad = output_and_input_gradient(model, x)
    for candidate in (fuse(model), model):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, grad_ = output_and_input_gradient(candidate, x)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), exact_out, rtol=0.05, atol=0.05)
        cosine = nn.functional.cosine_similarity(grad_.flatten(), exact_grad.flatten(), dim=0)
        assert cosine > 0.97


def test_fused_se_refuses_second_derivatives():
    block = RobustResBlock(16, 16, se_reduction=4)
    fused = fuse(randomise_batchnorms(block).eval().to(CUDA)).network
    x = torch.rand(2, 16, 8, 8, device=CUDA, requires_grad=True)
    with pytest.raises(SecondOrderError, match="first derivatives only"):
        torch.autograd.grad(fused(x).square().sum(), x, create_graph=True)


def _trades_step(net: nn.Module, model: nn.Module, x, y) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        generator = torch.Generator(CUDA).manual_seed(0)
        loss, _ = make_objective("trades")(net, x, y, generator=generator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def test_inductor_compiled_bf16_trades_step():
    """torch.compile (inductor, Triton kernels) of a 32x32 RobustResNet's TRADES-10 step agrees
    with the eager step, as tests/test_compiled_training.py checks on the CPU."""
    torch._dynamo.reset()
    stages = tuple(
        StageSpec(depth=d, widening=w, stride=1 if i == 0 else 2, block="robust_res_block")
        for i, (d, w) in enumerate(zip((2, 2, 1), (2, 2, 1), strict=True))
    )
    model = build_model(ArchSpec(stages=stages)).to(CUDA, memory_format=torch.channels_last)
    eager = copy.deepcopy(model)
    x = torch.rand(64, 3, 32, 32, device=CUDA).contiguous(memory_format=torch.channels_last)
    y = torch.arange(64, device=CUDA) % 10
    compiled = torch.compile(model)
    first = _trades_step(compiled, model, x, y)
    torch.testing.assert_close(first, _trades_step(eager, eager, x, y), rtol=0.02, atol=0)
    for ours, theirs in zip(model.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-3)
    assert torch.isfinite(torch.tensor(_trades_step(compiled, model, x, y)))
