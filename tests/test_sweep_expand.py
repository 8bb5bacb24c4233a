"""Sweep files: parsing, expansion into trials (grids, zip), names, and the checks on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from robustresnet.errors import ConfigError
from robustresnet.sweep.expand import expand
from robustresnet.sweep.spec import load_sweep, parse_sweep


def _sweep(axes=None, **extra):
    return parse_sweep({"base": "digits-base", "axes": axes or {}, **extra}, root=Path("/tmp"))


def test_product_of_axes_with_readable_deterministic_names():
    sweep = _sweep(
        {"block": ["basic_block", "robust_res_block"], "method": ["trades"], "seed": [0, 1]}
    )
    names = [t.name for t in expand(sweep)]
    assert names == ["basic-trades-s0", "basic-trades-s1", "rrb-trades-s0", "rrb-trades-s1"]
    assert names == [t.name for t in expand(sweep)]  # same file, same names
    assert {t.group for t in expand(sweep)} == {"basic-trades", "rrb-trades"}


def test_per_stage_grids_are_products_over_stages():
    sweep = _sweep({"depth_grid": [[2, 3], [2], [1, 2]], "width_grid": [[4], [4, 6], [2]]})
    trials = expand(sweep)
    assert len(trials) == 2 * 1 * 2 * (1 * 2 * 1)
    assert trials[0].values == {"depths": [2, 2, 1], "widening": [4, 4, 2]}
    assert trials[0].name == "d2-2-1-w4-4-2"
    assert len({t.name for t in trials}) == len(trials)


def test_paper_example_name():
    sweep = _sweep(
        {
            "block": ["robust_res_block"],
            "depths": [[14, 14, 7]],
            "widening": [[5, 7, 3]],
            "method": ["trades"],
            "seed": [0],
        }
    )
    assert expand(sweep)[0].name == "rrb-d14-14-7-w5-7-3-trades-s0"


def test_zip_varies_axes_together_and_multiplies_with_the_rest():
    sweep = _sweep(
        {"seed": [0, 1]},
        zip=[{"depths": [[2, 2, 1], [4, 4, 2]], "widening": [[2, 2, 1], [4, 4, 2]]}],
    )
    trials = expand(sweep)
    assert [t.name for t in trials] == [
        "d2-2-1-w2-2-1-s0",
        "d4-4-2-w4-4-2-s0",
        "d2-2-1-w2-2-1-s1",
        "d4-4-2-w4-4-2-s1",
    ]


def test_scaling_targets_and_rules_and_dotted_axes():
    sweep = _sweep(
        {
            "scaling": {"targets": ["20M", "1.5G"], "rules": ["compound", "depth"]},
            "optim.lr": [0.1, 0.05],
        }
    )
    trials = expand(sweep)
    assert len(trials) == 8
    assert trials[0].values["scaling"] == {"rule": "compound", "target": 20_000_000}
    assert trials[0].name == "compound20M-lr0.1"
    assert "depth1.5G-lr0.05" in {t.name for t in trials}


def test_filters_and_resources_are_parsed():
    sweep = _sweep(
        {"seed": [0]},
        filters={"macs": ["4G", "6G"], "params": [None, "50M"]},
        resources={"num_cpus": 2, "num_gpus": 0.5},
    )
    assert sweep.macs_window == (4 * 10**9, 6 * 10**9)
    assert sweep.params_window == (None, 50 * 10**6)
    assert (sweep.num_cpus, sweep.num_gpus) == (2.0, 0.5)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"axes": {"colour": ["red"]}}, "axes.colour"),
        ({"axes": {"seed": []}}, "axes.seed"),
        ({"axes": {"seed": [0]}, "zip": [{"seed": [1]}]}, "axes.seed"),
        ({"axes": {"scaling": {"targets": ["5G"]}, "depths": [[1, 1, 1]]}}, "axes.scaling"),
        ({"axes": {"scaling": {"targets": ["5G"], "rules": ["diagonal"]}}}, "axes.scaling.rule"),
        ({"axes": {"scaling": {"targets": ["lots"]}}}, "axes.scaling.target"),
        ({"zip": [{"depths": [[1, 1, 1]], "widening": [[1, 1, 1], [2, 2, 2]]}]}, "zip[0]"),
        ({"filters": {"macs": ["6G", "4G"]}}, "filters.macs"),
        ({"filters": {"flops": [1, 2]}}, "filters.flops"),
        ({"grid": {}}, "grid"),
        ({"resources": {"slurm": {"queue": "gpu"}}}, "resources.slurm.queue"),
        ({"resources": {"slurm": {"partition": ""}}}, "resources.slurm.partition"),
        ({"resources": {"slurm": {"account": 7}}}, "resources.slurm.account"),
        ({"resources": {"slurm": {"time": "1:75:00"}}}, "resources.slurm.time"),
        ({"resources": {"slurm": {"time": 0}}}, "resources.slurm.time"),
        ({"resources": {"slurm": {"mem_gb": 0}}}, "resources.slurm.mem_gb"),
        ({"resources": {"slurm": {"sbatch": {"--qos": "high"}}}}, "resources.slurm.sbatch"),
        ({"resources": {"slurm": {"sbatch": {"qos": [1]}}}}, "resources.slurm.sbatch.qos"),
    ],
)
def test_bad_sweep_files_name_the_field(raw, field):
    with pytest.raises(ConfigError) as info:
        parse_sweep({"base": "digits-base", **raw}, root=Path("/tmp"))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("time", "minutes"), [(30, 30), ("2:00:00", 120), ("1-00:00:30", 1441), ("0:00:10", 1)]
)
def test_slurm_time_limits_in_slurm_forms_are_whole_minutes(time, minutes):
    sweep = _sweep(resources={"slurm": {"time": time}})
    assert sweep.slurm.time_minutes == minutes


def test_name_clash_is_refused():
    sweep = _sweep({"optim.lr": [0.1, 0.10]})
    with pytest.raises(ConfigError, match="distinct trial names"):
        expand(sweep)


def test_load_sweep_resolves_paths_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text("model: {name: wrn-28-10}\n")
    path = tmp_path / "sub" / "study.yaml"
    path.write_text(
        yaml.safe_dump({"base": "../base.yaml", "output": "out", "axes": {"seed": [0]}})
    )
    sweep = load_sweep(path)
    assert sweep.name == "study"
    assert sweep.base == (tmp_path / "base.yaml").resolve()
    assert sweep.output == (tmp_path / "sub" / "out").resolve()
    with pytest.raises(ConfigError, match="an existing YAML file or a sweep's name"):
        load_sweep(tmp_path / "missing.yaml")


def test_a_base_axis_gives_each_run_its_own_base_config(tmp_path):
    from robustresnet.sweep import plan_sweep

    raw = {
        "axes": {
            "base": ["cifar10/trades/wrn-28-10", "cifar100/pgd_at/wrn-28-10"],
            "se_reduction": [16],
            "block": ["residual_se_bottleneck"],
        }
    }
    sweep = parse_sweep(raw, root=tmp_path)
    assert sweep.base is None and len(sweep.bases) == 2
    plan = plan_sweep(sweep, tmp_path / "runs")
    names = [t.name for t in plan.trials]
    assert names == [
        "cifar10-trades-wrn-28-10-residual_se_bottleneck-r16",
        "cifar100-pgd_at-wrn-28-10-residual_se_bottleneck-r16",
    ]
    assert [t.base.parts[-3] for t in plan.trials] == ["cifar10", "cifar100"]
    assert all(t.spec.se_reduction == 16 for t in plan.trials)
    with pytest.raises(ConfigError, match="either the base key or a base axis"):
        parse_sweep({"base": "digits-base", **raw}, root=tmp_path)
    with pytest.raises(ConfigError, match="base"):
        parse_sweep({"axes": {"seed": [0]}}, root=tmp_path)


def test_scaling_points_at_given_depth_shares():
    sweep = _sweep({"scaling": {"targets": ["2M"], "depth_shares": [0.4, 0.8]}})
    assert [t.name for t in expand(sweep)] == ["compound2M-share0.4", "compound2M-share0.8"]
    with pytest.raises(ConfigError, match="depth_share"):
        _sweep({"scaling": {"targets": ["2M"], "rules": ["depth"], "depth_shares": [0.4]}})
