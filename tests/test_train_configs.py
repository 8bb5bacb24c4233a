"""Every shipped training recipe loads, resolves its network and objective, builds on the meta
device; the generated ones are what tools/generate_recipes.py writes."""

from __future__ import annotations

import filecmp
import functools
import runpy

import pytest
from conftest import REPO

from robustresnet.arch import build_model
from robustresnet.recipes import RECIPES_DIR, recipes
from robustresnet.train import setup
from robustresnet.train.config import load_config

NAMES = [recipe.name for recipe in recipes("train")]
CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10}


def test_the_paper_recipes_are_all_there():
    # baseline, its TRADES runs of the three NAS baselines, advanced, the digits demo and study base
    assert len(NAMES) == 2 * 3 * 14 + 2 * 3 + 2 + 2
    assert "cifar100/mart/wrn-70-16" in NAMES and "cifar100/trades/robnet-large-v2" in NAMES
    assert "cifar10/advanced/robustresnet-a1" in NAMES and "digits-demo" in NAMES


def test_generated_files_match_the_script(tmp_path):
    runpy.run_path(str(REPO / "tools" / "generate_recipes.py"))["main"](tmp_path)
    written = sorted(tmp_path.rglob("*.yaml"))
    assert len(written) == 2 * 3 * 14 + 2 * 3 + 2
    for path in written:
        assert filecmp.cmp(path, RECIPES_DIR / path.relative_to(tmp_path), shallow=False), path


@functools.cache
def _built(spec):
    return build_model(spec, device="meta")


@pytest.mark.parametrize("name", NAMES)
def test_config_builds(name):
    config = load_config(name)
    classes = CLASSES[config.data.name]
    spec = setup.build_spec(config.model, classes, (3, 32, 32))
    assert spec.num_classes == classes
    model = _built(spec.replace(num_classes=10))  # a network is built once, whatever its head
    assert sum(p.numel() for p in model.parameters()) > 0
    setup.build_optim(model, config)


@pytest.mark.parametrize("network", ["robustresnet-a1", "wrn-a4"])
def test_advanced_recipe_is_the_authors_trainer(network):
    """adv-main_dist.py with the README's flags, item by item (docs/authors-code.md)."""
    config = load_config(f"cifar10/advanced/{network}")
    objective = config.objective
    assert (objective.name, objective.beta, objective.label_smoothing) == ("trades", 6.0, 0.1)
    assert objective.attack_bn == "train" and objective.bn_adversarial_only
    assert (objective.start, objective.clamp_start) == ("uniform", True)
    assert (config.model.bn_momentum_first_step, config.model.bn_momentum) == (1.0, 0.01)
    assert config.optim.momentum == (0.85, 0.95) and config.optim.nesterov
    assert (config.optim.lr, config.optim.weight_decay, config.optim.grad_clip) == (0.4, 5e-4, None)
    assert config.optim.no_decay == "bn_in_name"
    schedule = config.schedule
    assert (schedule.kind, schedule.interval, schedule.epochs, schedule.warmup_epochs) == (
        "onecycle",
        "epoch",
        400,
        10,
    )
    assert (config.ema.tau, config.ema.warmup_epochs) == (0.995, 10)
    assert (config.run.batch_size, config.data.epoch_images) == (1024, 50000)
    assert (config.data.val_size, config.data.extra_fraction) == (1024, 0.7)
    val = config.eval
    assert (val.val_loss, val.val_steps, val.val_step_size) == ("cw", 40, 2 / 255)
    assert val.ties == "latest"
    spec = setup.build_spec(config.model, 10, (3, 32, 32))
    assert {s.activation for s in spec.stages} == {"silu"} and spec.mean is None


@pytest.mark.parametrize("method", ["trades", "pgd_at", "mart"])
def test_baseline_starts_are_the_authors_losses(method):
    objective = load_config(f"cifar10/{method}/wrn-a4").objective
    assert objective.start == "normal" and not objective.clamp_start
    assert objective.start_std == (0.001 if method == "trades" else objective.step_size)
    assert objective.attack_bn == "eval" and not getattr(objective, "bn_adversarial_only", False)
