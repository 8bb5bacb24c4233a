"""The zoo: every preset builds, has the published size, and runs at tiny width."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _arch_checks import check_trains

from robustresnet import ArchSpec, ConfigError, build_model, get_spec, resolve_spec
from robustresnet.arch.zoo import PRESETS

# The residual presets (the NAS cell baselines are tested in test_arch_cells.py).
RESIDUAL = sorted(name for name, spec in PRESETS.items() if isinstance(spec, ArchSpec))

# Published #P (paper-facts.md), compared at the printed precision.
PUBLISHED_PARAMS = {
    "robustresnet-a1": "19.2M",
    "wrn-28-10": "36.5M",
    "wrn-34-r": "68.1M",
    "wrn-70-16": "267M",
}


def _params(spec: ArchSpec) -> int:
    return sum(p.numel() for p in build_model(spec, device="meta").parameters())


def _printed(count: int, like: str) -> str:
    decimals = len(like[:-1].partition(".")[2])
    return f"{count / 1e6:.{decimals}f}M"


def test_robust_res_block_wrn_28_10_parameter_count():
    spec = get_spec("wrn-28-10")
    stages = tuple(dataclasses.replace(s, block="robust_res_block") for s in spec.stages)
    assert _printed(_params(spec.replace(stages=stages)), "39.6M") == "39.6M"


def test_zoo_lists_the_paper_presets():
    expected = {f"robustresnet-a{i}" for i in range(1, 5)} | {f"wrn-a{i}" for i in range(1, 5)}
    expected |= {"wrn-28-10", "wrn-34-10", "wrn-34-12", "wrn-34-r", "wrn-46-14", "wrn-70-16"}
    nas = {"robnet-large-v2", "advrush", "racl"}
    assert set(PRESETS) == expected | {"preactresnet-18"} | nas


def _tiny(spec: ArchSpec) -> ArchSpec:
    """The same topology at the smallest width and depth ≤ 2, for fast forward/backward."""
    stages = tuple(
        dataclasses.replace(
            s,
            depth=min(s.depth, 2),
            widening=None if s.widening is None else 1,
            channels=None if s.channels is None else s.channels // 16,
        )
        for s in spec.stages
    )
    return spec.replace(stages=stages, stem_channels=8)


@pytest.mark.parametrize("name", RESIDUAL)
def test_preset_builds_on_meta_and_trains_at_tiny_width(name):
    spec = get_spec(name)
    full = build_model(spec, device="meta")
    assert full.fc.out_features == 10
    if name in PUBLISHED_PARAMS:
        params = sum(p.numel() for p in full.parameters())
        assert _printed(params, PUBLISHED_PARAMS[name]) == PUBLISHED_PARAMS[name]
    model = build_model(_tiny(spec)).train()
    logits = check_trains(model, torch.rand(2, 3, 16, 16))
    assert logits.shape == (2, 10)


def test_overrides():
    spec = get_spec("robustresnet-a1", num_classes=100, activation="silu", mean="cifar10")
    assert spec.num_classes == 100
    assert {s.activation for s in spec.stages} == {"silu"}
    assert spec.std == (0.2471, 0.2435, 0.2616)
    custom = get_spec("wrn-28-10", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert custom.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ConfigError, match="mean"):
        get_spec("wrn-28-10", mean="imagenet-21k")


@pytest.mark.parametrize(
    "alias, name",
    [
        ("RobustResNet-A1", "robustresnet-a1"),
        ("WRN_A4", "wrn-a4"),
        ("PreActResNet18", "preactresnet-18"),
        ("Huang2022Revisiting_WRN-A4", "wrn-a4"),
    ],
)
def test_aliases(alias, name):
    assert get_spec(alias) == PRESETS[name]


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="did you mean robustresnet-a1"):
        get_spec("robustresnt-a1")


def test_resolve_spec(tmp_path):
    assert resolve_spec("wrn-28-10", num_classes=100).num_classes == 100
    spec = get_spec("wrn-34-10")
    spec.save(tmp_path / "spec.json")
    assert resolve_spec(tmp_path / "spec.json") == spec
    run = tmp_path / "run"
    spec.save(run / "arch.yaml")
    assert resolve_spec(str(run), activation="gelu").stages[0].activation == "gelu"
    with pytest.raises(ConfigError, match="arch.yaml"):
        resolve_spec(tmp_path)
    with pytest.raises(ConfigError, match="existing spec file"):
        resolve_spec(tmp_path / "missing.yaml")


def test_in_model_normalisation_is_applied():
    spec = _tiny(get_spec("wrn-28-10"))
    plain = build_model(spec).eval()
    normed = build_model(spec.replace(mean=(0.5,) * 3, std=(0.25,) * 3)).eval()
    normed.load_state_dict(plain.state_dict(), strict=False)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(normed(x), plain((x - 0.5) / 0.25))
