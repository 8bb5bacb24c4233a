"""Every committed recipe loads, resolves its network and objective, builds on the meta device."""

from __future__ import annotations

import filecmp
import functools
import runpy
from pathlib import Path

import pytest

from robustresnet.arch import build_model
from robustresnet.train import setup
from robustresnet.train.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SWEEPS = CONFIGS / "sweeps"  # sweep files (tested in test_sweep_files.py) and their base configs
FILES = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent != SWEEPS)
BASES = sorted(SWEEPS.glob("*-base.yaml"))
CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10}


def test_the_paper_recipes_are_all_there():
    names = {str(p.relative_to(CONFIGS)) for p in FILES}
    assert len(names) == 2 * 3 * 13 + 2 + 1
    assert "cifar100/mart/wrn-70-16.yaml" in names
    assert "cifar10/advanced/robustresnet-a1.yaml" in names and "digits-demo.yaml" in names


def test_generated_files_match_the_script(tmp_path):
    runpy.run_path(str(CONFIGS / "generate.py"))["main"](tmp_path)
    for path in tmp_path.rglob("*.yaml"):
        assert filecmp.cmp(path, CONFIGS / path.relative_to(tmp_path), shallow=False), path


@functools.cache
def _built(spec):
    return build_model(spec, device="meta")


@pytest.mark.parametrize("path", FILES + BASES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_builds(path):
    config = load_config(path)
    classes = CLASSES[config.data.name]
    spec = setup.build_spec(config.model, classes, (3, 32, 32))
    assert spec.num_classes == classes
    model = _built(spec.replace(num_classes=10))  # a network is built once, whatever its head
    assert sum(p.numel() for p in model.parameters()) > 0
    setup.build_objective(config)


def test_advanced_recipe_values():
    config = load_config(CONFIGS / "cifar10" / "advanced" / "wrn-a4.yaml")
    assert config.objective.label_smoothing == 0.1 and config.objective.bn_adversarial_only
    assert config.optim.nesterov and config.optim.exclude_norm_and_bias
    assert (config.optim.lr, config.optim.weight_decay, config.ema.tau) == (0.4, 5e-4, 0.995)
    assert (config.run.batch_size, config.schedule.epochs, config.schedule.kind) == (
        1024,
        400,
        "onecycle",
    )
    assert (config.data.val_size, config.data.extra_fraction) == (1024, 0.7)
    assert (config.eval.val_steps, config.eval.val_loss) == (40, "cw")
    spec = setup.build_spec(config.model, 10, (3, 32, 32))
    assert {s.activation for s in spec.stages} == {"silu"} and spec.mean is not None
