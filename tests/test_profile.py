"""The profiler: torchprofile's counting rules, the paper's published #P / #F, the depth model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustresnet import ConfigError, profile
from robustresnet._units import format_count, parse_count
from robustresnet.arch import ArchSpec, StageSpec, build_model, get_spec
from robustresnet.arch.profile import count_macs, depth_costs


def _uniform(block: str, depth: int, widening: int) -> ArchSpec:
    stages = tuple(
        StageSpec(depth=depth, widening=widening, stride=1 if i == 0 else 2, block=block)
        for i in range(3)
    )
    return ArchSpec(stages=stages)


# Published #P / #F (MACs) at the paper's printed precision, 32×32 input.
PUBLISHED = [
    ("robustresnet-a1", "19.2M", "5.11G"),
    ("robustresnet-a2", "39.0M", "10.8G"),
    ("robustresnet-a3", "75.9M", "19.9G"),
    ("robustresnet-a4", "147M", "39.4G"),
    ("wrn-a4", "147M", "40.4G"),
    # The paper prints 5.20G for WRN-28-10; torchprofile's rules give 5.25G (see paper-facts.md).
    ("wrn-28-10", "36.5M", "5.25G"),
    ("wrn-34-r", "68.1M", "19.1G"),
    ("wrn-70-16", "267M", "38.8G"),
    ("robust_res_block D=4 W=10", "39.6M", "6.00G"),
]


@pytest.mark.parametrize(("name", "params", "macs"), PUBLISHED)
def test_published_figures(name, params, macs):
    spec = _uniform("robust_res_block", 4, 10) if name.startswith("robust_res") else get_spec(name)
    result = profile(spec)
    assert (format_count(result.params), format_count(result.macs)) == (params, macs)
    assert isinstance(result.params, int) and isinstance(result.macs, int)


def test_wrn_28_10_conv_and_linear_alone_give_5_243g():
    model = build_model(get_spec("wrn-28-10"), device="meta")
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    _, parts = count_macs(model, (3, 32, 32), parts=convs)
    assert round(sum(parts) / 1e9, 3) == 5.243
    assert profile(model).macs - sum(parts) > 2_000_000  # BN and pooling add the rest


@pytest.mark.parametrize(
    ("module", "shape", "expected"),
    [
        # output 6×4×4 elements × (4 in / 2 groups) × 3×3 kernel; the bias is free
        (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (4, 8, 8), 96 * 2 * 9),
        # transposed: torchprofile multiplies by the weight's first dim (the input channels)
        (nn.ConvTranspose2d(4, 6, 3), (4, 2, 2), 6 * 4 * 4 * 4 * 9),
        (nn.Linear(5, 7), (1, 3, 5), 3 * 5 * 7),
        (nn.BatchNorm2d(4), (4, 3, 3), 36),
        (nn.BatchNorm2d(4, affine=False), (4, 3, 3), 0),
        (nn.GroupNorm(2, 4), (4, 3, 3), 36),
        (nn.LayerNorm(3), (4, 3, 3), 36),
        (nn.InstanceNorm2d(4, affine=True), (4, 3, 3), 36),
        (nn.InstanceNorm2d(4), (4, 3, 3), 0),
        (nn.LeakyReLU(), (4, 3, 3), 36),
        (nn.AvgPool2d(3, 2, padding=1), (4, 4, 4), 16),
        (nn.AdaptiveAvgPool2d(2), (4, 4, 4), 16),
        (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 2), 4 * 16),
        (nn.Sequential(nn.ReLU(), nn.SiLU(), nn.Sigmoid(), nn.GELU(), nn.Softplus()), (4, 3), 0),
        (nn.Sequential(nn.Mish(), nn.ELU(), nn.PReLU(), nn.Dropout(), nn.Softmax(1)), (4, 3), 0),
        (nn.MaxPool2d(2), (4, 4, 4), 0),
    ],
)
def test_module_rules(module, shape, expected):
    assert profile(module, input_size=shape).macs == expected


class _Ops(nn.Module):
    """Elementwise and reduction ops written as tensor expressions."""

    def forward(self, x):
        scaled = x * x.mean(dim=(2, 3), keepdim=True)  # mean: 2 elements, mul: 2·3·3
        normalised = (x - 0.5) / 0.25 + scaled  # sub, div and add are free
        return normalised @ x.new_ones(3, 5)  # matmul: (1·2·3)·3·5


def test_tensor_expression_rules():
    assert profile(_Ops(), input_size=(2, 3, 3)).macs == 2 + 18 + 6 * 3 * 5


def test_batched_matmul():
    class Bmm(nn.Module):
        def forward(self, x):
            return torch.matmul(x, x.transpose(-1, -2))

    assert profile(Bmm(), input_size=(2, 3, 4)).macs == 2 * 3 * 4 * 3


def test_se_rescaling_counts_as_multiply():
    class Gate(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(F.adaptive_avg_pool2d(x, 1))

    assert profile(Gate(), input_size=(4, 3, 3)).macs == 4 + 36


def test_trainable_params_only_and_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    model[1].requires_grad_(False)
    model.train()
    result = profile(model, input_size=8)
    assert result.params == 4 * 3 * 9
    assert result.input_size == (3, 8, 8)
    assert model.training and model[1].training
    assert model[0].weight.device.type == "cpu"
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks


def test_depth_model_matches_a_direct_count():
    stages = (
        StageSpec(depth=3, widening=1, block="basic_block"),
        StageSpec(depth=1, widening=2, stride=2, block="robust_res_block"),
        StageSpec(depth=2, channels=48, stride=2, block="bottleneck", activation="leakyrelu"),
    )
    spec = ArchSpec(stages=stages, num_classes=7, mean=(0.5,) * 3, std=(0.25,) * 3)
    direct = profile(build_model(spec))
    assert profile(spec) == direct
    deeper = spec.replace(stages=(dataclasses.replace(stages[0], depth=5), *stages[1:]))
    assert depth_costs(spec).at((5, 1, 2)) == profile(build_model(deeper))


def test_input_size_follows_the_spec_or_the_override():
    spec = get_spec("preactresnet-18")
    small, large = profile(spec), profile(spec, input_size=64)
    assert large.input_size == (3, 64, 64) and small.input_size == (3, 32, 32)
    assert large.params == small.params
    assert large == profile(build_model(spec, device="meta"), input_size=(64, 64))
    assert 3.9 < large.macs / small.macs < 4.0


def test_bad_input_is_a_config_error():
    with pytest.raises(ConfigError, match="input_size"):
        profile(nn.Linear(3, 3))
    with pytest.raises(ConfigError, match="spec_or_model"):
        profile("wrn-28-10")


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (5_112_769_408, "5.11G"),
        (36_479_194, "36.5M"),
        (266_796_506, "267M"),
        (999_960_000, "1.00G"),
        (19_138_024_960, "19.1G"),
        (512, "512"),
        (1234, "1.23K"),
    ],
)
def test_format_count(count, text):
    assert format_count(count) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [("10G", 10**10), ("500M", 5 * 10**8), ("1e9", 10**9), ("2.5g", 2_500_000_000)],
)
def test_parse_count(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["abc", "-5G", "0", "10X", "", "nan"])
def test_parse_count_rejects(text):
    with pytest.raises(ConfigError, match="macs"):
        parse_count(text, field="macs")
