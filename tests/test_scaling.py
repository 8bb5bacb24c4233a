"""RobustScaling: the published A1-A4 anchors, properties across budgets, the two baselines."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustresnet import ConfigError, get_spec, profile, robust_scaling
from robustresnet.arch.scaling import (
    DEPTH_RATIO,
    DEPTH_SHARE,
    WIDENING_RATIO,
    _candidates,
    _crossing,
    _ratio_error,
    apportion,
    nearest_standard_wrn,
)

# The paper's outputs of RobustScaling (depths, widening) for 5G, 10G, 20G and 40G.
PUBLISHED = {
    5e9: ((14, 14, 7), (5, 7, 3)),
    10e9: ((17, 17, 8), (7, 9, 4)),
    20e9: ((22, 22, 11), (8, 11, 5)),
    40e9: ((27, 28, 13), (10, 14, 6)),
}
STANDARD = {5e9: "wrn-28-10", 10e9: "wrn-34-12", 20e9: "wrn-46-14", 40e9: "wrn-70-16"}


def _miss(spec, target: float) -> float:
    return abs(profile(spec).macs / target - 1)


@pytest.mark.parametrize("target", list(PUBLISHED))
def test_compound_lands_near_the_published_networks(target):
    spec = robust_scaling(target)
    depths, widening = PUBLISHED[target]
    assert all(abs(a - b) <= 1 for a, b in zip(spec.depths, depths, strict=True)), spec.depths
    assert all(abs(a - b) <= 1 for a, b in zip(spec.widening, widening, strict=True))
    assert _miss(spec, target) <= 0.05
    assert {s.block for s in spec.stages} == {"robust_res_block"}


def test_5g_is_robustresnet_a1_exactly():
    spec = robust_scaling("5G")
    assert (spec.depths, spec.widening) == PUBLISHED[5e9]


@settings(max_examples=5, deadline=None)
@given(st.floats(math.log(0.3e9), math.log(100e9)))
def test_compound_properties(log_target):
    target = math.exp(log_target)
    spec = robust_scaling(target)
    assert _miss(spec, target) <= 0.05
    # Stage ratios: each total is split as closely as integers allow.
    assert spec.depths == apportion(sum(spec.depths), DEPTH_RATIO)
    assert spec.widening == apportion(sum(spec.widening), WIDENING_RATIO)
    # Total depth : total widening stays near 7:3 once a block is a small share of the budget.
    if target >= 1e9:
        assert _ratio_error(sum(spec.depths), sum(spec.widening), DEPTH_SHARE) <= 0.2


@pytest.mark.parametrize("target", [1e9, 7e9])
def test_compound_keeps_7_to_3_best_among_a_wider_search(target):
    """No split within the tolerance, even four total-widening steps further, is nearer 7:3."""
    spec = robust_scaling(target)
    options = {"block": "robust_res_block", "activation": "relu"}
    crossing = _crossing(int(target), DEPTH_SHARE, options)
    wider = [
        c
        for offset in (-4, 0, 4)
        for c in _candidates(int(target), crossing + offset, DEPTH_SHARE, options)
        if c.miss <= 0.025
    ]
    chosen = _ratio_error(sum(spec.depths), sum(spec.widening), DEPTH_SHARE)
    assert chosen <= min(c.ratio_error for c in wider) + 1e-12
    assert chosen < 0.2


def test_compound_basic_block_and_spec_fields():
    spec = robust_scaling("2G", block="basic_block", num_classes=100, input_size=64)
    assert spec.num_classes == 100 and spec.input_size == 64
    assert {s.block for s in spec.stages} == {"basic_block"}
    assert profile(spec).input_size == (3, 64, 64)
    assert _miss(spec, 2e9) <= 0.05


@pytest.mark.parametrize(
    ("total", "ratio", "parts"),
    [
        (35, DEPTH_RATIO, (14, 14, 7)),
        (12, DEPTH_RATIO, (5, 5, 2)),
        (21, DEPTH_RATIO, (9, 8, 4)),  # a tie goes to the earlier stage
        (15, WIDENING_RATIO, (5, 7, 3)),
        (30, WIDENING_RATIO, (11, 14, 5)),
    ],
)
def test_apportion(total, ratio, parts):
    assert apportion(total, ratio) == parts


@given(st.integers(1, 500), st.lists(st.floats(0.1, 10), min_size=1, max_size=5))
def test_apportion_keeps_the_total_within_one_of_exact(total, ratio):
    parts = apportion(total, ratio)
    assert sum(parts) == total
    assert all(abs(p - total * r / sum(ratio)) < 1 for p, r in zip(parts, ratio, strict=True))


@pytest.mark.parametrize("target", list(STANDARD))
def test_nearest_standard_wrn(target):
    assert nearest_standard_wrn(target) == STANDARD[target]


@pytest.mark.parametrize("target", [5e9, 20e9])
def test_depth_only_baseline_keeps_total_depth_and_widths(target):
    wrn = get_spec(STANDARD[target])
    spec = robust_scaling(target, rule="depth")
    assert sum(spec.depths) == sum(wrn.depths)
    assert spec.widening == wrn.widening
    assert spec.depths == apportion(sum(wrn.depths), DEPTH_RATIO)


def test_width_only_baseline_keeps_total_widening_and_depths():
    spec = robust_scaling("10G", rule="width", block="basic_block")
    assert spec.depths == (5, 5, 5)  # WRN-34-12's
    assert spec.widening == (13, 16, 7)  # 36 split 2:2.5:1
    assert sum(spec.widening) == 36


def test_baselines_at_5g():
    depth = robust_scaling("5G", rule="depth")
    width = robust_scaling("5G", rule="width")
    assert (depth.depths, depth.widening) == ((5, 5, 2), (10, 10, 10))
    assert (width.depths, width.widening) == ((4, 4, 4), (11, 14, 5))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_macs": "abc"}, "target_macs"),
        ({"target_macs": -1}, "target_macs"),
        ({"target_macs": "10G", "rule": "diagonal"}, "rule"),
        ({"target_macs": "10G", "block": "no_such_block"}, "block"),
        ({"target_macs": "10G", "tolerance": 2}, "tolerance"),
        ({"target_macs": "1K"}, "target_macs"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        robust_scaling(**kwargs)


@pytest.mark.parametrize("share", [0.3, 0.5, 0.9])
def test_compound_at_a_given_depth_share_keeps_that_share_and_the_budget(share):
    spec = robust_scaling("5G", block="basic_block", depth_share=share)
    total_depth, total_widening = sum(spec.depths), sum(spec.widening)
    assert abs(total_depth / (total_depth + total_widening) - share) < 0.06
    assert abs(profile(spec).macs / 5e9 - 1) <= 0.05
    assert robust_scaling("5G", depth_share=0.7) == robust_scaling("5G")


def test_depth_share_is_checked():
    with pytest.raises(ConfigError, match="depth_share"):
        robust_scaling("5G", depth_share=1.2)
    with pytest.raises(ConfigError, match="depth_share"):
        robust_scaling("5G", rule="depth", depth_share=0.5)
