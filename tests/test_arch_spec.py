"""ArchSpec: validation, YAML/JSON round trip, conversion of the authors' configs."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from robustresnet import ArchSpec, ConfigError, StageSpec, build_model, get_spec
from robustresnet.arch.zoo import PRESETS


def _stages(block="basic_block", widening=(1, 1, 1), **stage):
    return tuple(
        StageSpec(depth=1, widening=w, stride=1 if i == 0 else 2, block=block, **stage)
        for i, w in enumerate(widening)
    )


def test_properties():
    spec = get_spec("robustresnet-a1")
    assert spec.depths == (14, 14, 7)
    assert spec.widening == (5, 7, 3)
    assert spec.planes == (80, 224, 192)
    assert spec.out_channels == (320, 896, 768)
    assert get_spec("preactresnet-18").widening == (4, 4, 4, 4)


def test_names_are_normalised_once():
    stage = StageSpec(depth=1, widening=1, activation="ReLU", normalization="BatchNorm")
    assert (stage.activation, stage.normalization) == ("relu", "batchnorm")
    assert StageSpec(depth=1, widening=1, activation="Swish").activation == "silu"
    assert StageSpec(depth=1, widening=1, block="Robust-Res-Block").block == "robust_res_block"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_dict_round_trip(name):
    spec = PRESETS[name]
    assert type(spec).from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    spec = get_spec("wrn-a4", activation="silu", mean="cifar10", num_classes=100)
    path = spec.save(tmp_path / f"arch{suffix}")
    loaded = ArchSpec.load(path)
    assert loaded == spec and loaded.mean == spec.mean and loaded.stages[0].activation == "silu"


def _bad(field, **changes):
    return pytest.param(field, changes, id=field + ":" + ",".join(map(str, changes.values())))


@pytest.mark.parametrize(
    "field, stage_changes",
    [
        ("depth", {"depth": 0}),
        ("depth", {"depth": -2}),
        ("depth", {"depth": True}),
        ("depth", {"depth": 1.5}),
        ("widening", {"widening": 0}),
        ("widening", {"channels": 64}),
        ("stride", {"stride": 3}),
        ("kernel_size", {"kernel_size": 2}),
        ("block", {"block": "resnext"}),
        ("activation", {"activation": "tanh"}),
        ("normalization", {"normalization": "batchrenorm"}),
    ],
)
def test_bad_stage_names_field(field, stage_changes):
    with pytest.raises(ConfigError) as err:
        StageSpec(**{"depth": 1, "widening": 1, **stage_changes})
    assert err.value.field == field
    assert field in str(err.value)


def test_unknown_choice_lists_the_choices():
    with pytest.raises(
        ConfigError, match="relu, silu, gelu, softplus, mish, elu, leakyrelu, prelu"
    ):
        StageSpec(depth=1, widening=1, activation="tanh")
    with pytest.raises(ConfigError, match="batchnorm, groupnorm, layernorm, instancenorm"):
        StageSpec(depth=1, widening=1, normalization="weightnorm")


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("stages", {"stages": ()}),
        ("num_classes", {"num_classes": 0}),
        ("stem_channels", {"stem_channels": -1}),
        ("se_reduction", {"se_reduction": 0}),
        ("mean", {"mean": (0.5, 0.5), "std": (0.2, 0.2)}),
        ("std", {"mean": (0.5, 0.5, 0.5)}),
        ("std", {"mean": (0.5, 0.5, 0.5), "std": (0.2, 0.0, 0.2)}),
        ("input_size", {"input_size": 2}),
    ],
)
def test_bad_arch_fields(field, kwargs):
    with pytest.raises(ConfigError) as err:
        ArchSpec(**{"stages": _stages(), **kwargs})
    assert err.value.field == field


@pytest.mark.parametrize(
    "block, widening, options, expected",
    [
        ("grouped_bottleneck", (1, 1, 1), {"cardinality": 3}, "cardinality 3"),
        ("multiscale_bottleneck", (1, 1, 1), {"scales": 3}, "scales 3"),
        ("robust_res_block", (1, 1, 1), {"base_width": 5}, "floor"),
        ("robust_res_block", (1, 1, 1), {"scales": 1}, "scales at least 2"),
        ("se_bottleneck", (1, 1, 1), {"se_reduction": 128}, "SE keeps a channel"),
    ],
)
def test_widths_the_block_cannot_split(block, widening, options, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        ArchSpec(stages=_stages(block, widening), **options)
    assert err.value.field == "stages[0].widening"


def test_replace_validates_again():
    spec = get_spec("wrn-28-10")
    assert spec.replace(num_classes=100).num_classes == 100
    with pytest.raises(ConfigError):
        spec.replace(num_classes=0)


def test_from_dict_rejects_unknown_keys():
    data = get_spec("wrn-28-10").to_dict()
    with pytest.raises(ConfigError, match="spec.widht"):
        ArchSpec.from_dict({**data, "widht": 3})
    data["stages"][2]["activation"] = "tanh"
    with pytest.raises(ConfigError, match=r"stages\[2\].activation: got 'tanh'"):
        ArchSpec.from_dict(data)
    data["stages"][1]["dept"] = 2
    with pytest.raises(ConfigError, match=r"stages\[1\].dept"):
        ArchSpec.from_dict(data)


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="path"):
        ArchSpec.load(tmp_path / "arch.txt")
    with pytest.raises(ConfigError, match="readable"):
        ArchSpec.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="valid JSON"):
        ArchSpec.load(tmp_path / "bad.json")


# The `model:` section of the authors' configs/CIFAR10/RobustResNet-A1.yaml, verbatim.
AUTHORS_A1 = {
    "name": "PreActResNet",
    "channel_configs": [16, 80, 224, 192],
    "depth_configs": [14, 14, 7],
    "drop_rate_config": [0.0, 0.0, 0.0],
    "num_classes": 10,
    "stride_config": [1, 2, 2],
    "zero_init_residual": False,
    "block_types": ["robust_res_block"] * 3,
    "activations": ["ReLU"] * 3,
    "kernel_size_configs": [3, 3, 3],
    "normalizations": ["BatchNorm"] * 3,
}
PAPER_BLOCK = {"scales": 8, "base_width": 10, "cardinality": 4, "se_reduction": 64}


def test_from_reference_default_trap_warns_and_reproduces_authors_build():
    with pytest.warns(UserWarning, match="8, base_width=10, cardinality=4, se_reduction=64"):
        spec = ArchSpec.from_reference({"model": AUTHORS_A1})
    assert (spec.scales, spec.base_width, spec.cardinality, spec.se_reduction) == (4, 64, 8, 16)
    params = sum(p.numel() for p in build_model(spec, device="meta").parameters())
    assert 140e6 < params < 150e6  # "about 144M", not the paper's 19.2M


def test_from_reference_with_block_keys_is_the_paper_network():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = ArchSpec.from_reference({**AUTHORS_A1, **PAPER_BLOCK})
    assert spec == get_spec("robustresnet-a1")


def test_from_reference_basic_blocks_do_not_warn_and_pre_process_normalises():
    cfg = {**AUTHORS_A1, "block_types": ["basic_block"] * 3, "pre_process": True}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = ArchSpec.from_reference(cfg)
    assert spec.stages[0].block == "basic_block" and spec.mean == (0.4914, 0.4822, 0.4465)


def test_from_reference_channels_not_multiple_of_base_kept_as_channels():
    spec = ArchSpec.from_reference(
        {**AUTHORS_A1, **PAPER_BLOCK, "channel_configs": [16, 80, 50, 192]}
    )
    assert spec.stages[1].channels == 50 and spec.stages[1].widening is None
    assert spec.planes == (80, 50, 192)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"depth_configs": [14, 14]}, "model.channel_configs"),
        ({"activations": ["ReLU"] * 2}, "model.activations"),
        ({"channel_configs": [16, 80, 224]}, "model.channel_configs"),
        ({"block_types": "robust_res_block"}, "model.block_types"),
        ({"depth_multiplier": 2}, "model.depth_multiplier"),
        ({"name": "WideResNet"}, "model.name"),
        ({"stride_config": [1, 3, 2]}, "model.stride_config[1]"),
        ({"activations": ["ReLU", "ReLU", "Tanh"]}, "model.activations[2]"),
        ({"depth_configs": [14, 0, 7]}, "model.depth_configs[1]"),
    ],
)
def test_from_reference_errors_name_the_key(changes, field):
    with pytest.raises(ConfigError) as err:
        ArchSpec.from_reference({**AUTHORS_A1, **PAPER_BLOCK, **changes})
    assert err.value.field == field


def test_stage_to_dict_omits_unset_size():
    stage = StageSpec(depth=2, channels=64)
    assert "widening" not in stage.to_dict() and stage.to_dict()["channels"] == 64
    assert dataclasses.replace(stage, depth=3).depth == 3
