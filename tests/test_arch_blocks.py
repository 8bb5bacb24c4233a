"""Blocks, activations and normalisations of the design space: shapes, gradients, definitions."""

from __future__ import annotations

import pytest
import torch
from _arch_checks import check_trains, unused_parameters

from robustresnet import ArchSpec, StageSpec, build_model
from robustresnet.arch.blocks import BLOCKS, make_stage
from robustresnet.arch.layers import ACTIVATIONS, NORMS, SqueezeExcitation, canonical_name
from robustresnet.arch.spec import stage_base


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("stride", [1, 2])
def test_block_shapes_and_gradients(name, stride):
    block = BLOCKS[name]
    stage, out_ch = make_stage(block, 24, 32, 2, stride, scales=4, cardinality=4, se_reduction=16)
    assert out_ch == 32 * block.expansion
    x = torch.randn(2, 24, 8, 8, requires_grad=True)
    y = stage(x)
    assert y.shape == (2, out_ch, 8 // stride, 8 // stride)
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    no_grad = {n for n, p in stage.named_parameters() if p.grad is None}
    assert no_grad == unused_parameters(stage)


def _network(block="basic_block", activation="relu", normalization="batchnorm") -> ArchSpec:
    stages = tuple(
        StageSpec(
            depth=2,
            widening=1,
            stride=1 if i == 0 else 2,
            block=block,
            activation=activation,
            normalization=normalization,
        )
        for i in range(3)
    )
    return ArchSpec(stages=stages, stem_channels=8, se_reduction=16)


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_every_block_builds_a_network(block):
    check_trains(build_model(_network(block)).train(), torch.rand(2, 3, 16, 16))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_trains(activation):
    check_trains(build_model(_network(activation=activation)), torch.rand(2, 3, 16, 16))


@pytest.mark.parametrize("normalization", sorted(NORMS))
@pytest.mark.parametrize("block", ["basic_block", "robust_res_block"])
def test_every_normalization_trains(normalization, block):
    spec = _network(block, normalization=normalization)
    check_trains(build_model(spec).train(), torch.rand(2, 3, 16, 16))


def test_layer_definitions():
    softplus = ACTIVATIONS["softplus"]()
    assert (softplus.beta, softplus.threshold) == (1.0, 20.0)
    assert NORMS["groupnorm"](64).num_groups == 8
    assert NORMS["groupnorm"](20).num_groups == 2
    x = torch.randn(2, 16, 4, 4)
    ln = NORMS["layernorm"](16)(x)
    torch.testing.assert_close(ln.mean(dim=1), torch.zeros(2, 4, 4), atol=1e-5, rtol=0)
    assert (
        canonical_name("LeakyReLU") == "leakyrelu" and canonical_name("Batch_Norm") == "batchnorm"
    )


def test_squeeze_excitation_is_a_gate():
    se = SqueezeExcitation(64, 16)
    assert [k for k in se.state_dict()] == ["fc.0.weight", "fc.2.weight"]
    x = torch.rand(2, 64, 4, 4)
    gate = se(x) / x
    assert ((gate > 0) & (gate < 1)).all()
    torch.testing.assert_close(gate, gate[:, :, :1, :1].expand_as(gate))


def test_robust_res_block_widths():
    """width = floor(planes·base_width/160)·cardinality; conv1 to width·scales; output 4·planes."""
    stage, out_ch = make_stage(BLOCKS["robust_res_block"], 16, 80, 1, 1)
    block = stage.layer[0]
    assert block.conv1.weight.shape == (160, 16, 1, 1)  # width 20, scales 8
    assert block.conv2[0].weight.shape == (20, 5, 3, 3)  # cardinality 4 groups
    assert out_ch == 320 and block.se.fc[0].weight.shape == (5, 320)


def test_stride_two_chunks_are_independent():
    """With a stride, chunk k's conv does not see chunk k-1 (no Res2Net hierarchy)."""
    block = make_stage(BLOCKS["multiscale_bottleneck"], 16, 16, 1, 2, scales=4)[0].layer[0].eval()
    h = torch.randn(1, 16, 8, 8)
    convs, norms = block.conv2, block.bn3
    first = block.act(norms[1](convs[1](h[:, 4:8])))
    from robustresnet.arch.layers import hierarchical

    out = hierarchical(h, convs, norms, block.act, 4, block.pool)
    torch.testing.assert_close(out[:, 4:8], first)


def test_device_and_dtype():
    spec = _network("robust_res_block").replace(mean=(0.5,) * 3, std=(0.2,) * 3)
    model = build_model(spec, dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model.mu.dtype == torch.float64 and model.mu.shape == (1, 3, 1, 1)
    assert model(torch.rand(1, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64
    meta = build_model(spec, device="meta")
    assert all(p.is_meta for p in meta.parameters())


def test_reference_init():
    model = build_model(_network("basic_block"))
    conv = model.blocks[0].layer[0].conv1
    assert abs(conv.weight.std().item() - (2 / (9 * conv.out_channels)) ** 0.5) < 0.02
    assert (model.norm1.weight == 1).all() and (model.fc.bias == 0).all()
    assert stage_base(3) == 128
