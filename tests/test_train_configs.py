"""Every shipped training recipe loads, resolves its network and objective, builds on the meta
device; the generated ones are what tools/generate_recipes.py writes."""

from __future__ import annotations

import filecmp
import functools
import math
import runpy

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO

from robustresnet.arch import build_model
from robustresnet.recipes import RECIPES_DIR, recipes
from robustresnet.train import setup
from robustresnet.train.config import load_config
from robustresnet.train.ema import ema_decay
from robustresnet.train.optim import lr_at, momentum_at

NAMES = [recipe.name for recipe in recipes("train")]
CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10}


def test_the_paper_recipes_are_all_there():
    # baseline, its TRADES runs of the three NAS baselines, advanced, generated data (2 networks x
    # 3 sizes), the digits demo and study base
    assert len(NAMES) == 2 * 3 * 14 + 2 * 3 + 2 + 6 + 2
    assert "cifar100/mart/wrn-70-16" in NAMES and "cifar100/trades/robnet-large-v2" in NAMES
    assert "cifar10/advanced/robustresnet-a1" in NAMES and "digits-demo" in NAMES


def test_generated_files_match_the_script(tmp_path):
    runpy.run_path(str(REPO / "tools" / "generate_recipes.py"))["main"](tmp_path)
    written = sorted(tmp_path.rglob("*.yaml"))
    assert len(written) == 2 * 3 * 14 + 2 * 3 + 2 + 6
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


# Wang et al. 2023 (wzekai99/DM-Improves-AT, train-wa.py): per size, (batch, lr, epochs, generated
# share). 1M: the README's command; 20M: a third-party copy of their 20m.npz command; 50M: none
# published, 20M's assumed (docs/recipes.md).
GENERATED = {
    "1m": (512, 0.2, 400, 0.7),
    "20m": (2048, 0.2, 2400, 0.8),
    "50m": (2048, 0.2, 2400, 0.8),
}
GENERATED_NAMES = [
    f"cifar10/generated/{network}-{size}"
    for network in ("wrn-28-10", "robustresnet-a1")
    for size in GENERATED
]


@pytest.mark.parametrize("name", GENERATED_NAMES)
def test_generated_recipe_is_wang_2023_train_wa(name):
    """Each value against its source in DM-Improves-AT: the README command, core/utils/parser.py
    defaults, gowal21uncovering/utils/{watrain,trades}.py, core/data/{semisup,cifar10s}.py."""
    config = load_config(name)
    size = name.rsplit("-", 1)[1]
    batch, lr, epochs, fraction = GENERATED[size]
    assert (config.run.batch_size, config.optim.lr, config.schedule.epochs) == (batch, lr, epochs)
    assert config.data.extra_fraction == fraction  # --unsup-fraction
    assert config.data.extra == f"data/generated/{size}.npz"  # the placeholder to replace
    # README --beta 5.0 --ls 0.1; parser --attack-eps 8/255 --attack-step 2/255 --attack-iter 10
    objective = config.objective
    assert (objective.name, objective.beta, objective.label_smoothing) == ("trades", 5.0, 0.1)
    assert (objective.eps, objective.step_size, objective.steps) == (8 / 255, 2 / 255, 10)
    # trades.py: uniform start clamped to [0, 1]; the attack in train mode without BatchNorm
    # statistics; both loss forwards update them
    assert (objective.start, objective.clamp_start, objective.attack_bn) == (
        "uniform",
        True,
        "train",
    )
    assert not objective.bn_adversarial_only
    # parser: --nesterov True --weight-decay 5e-4 --clip-grad None; watrain.py group_weight
    optim = config.optim
    assert (optim.nesterov, optim.weight_decay, optim.grad_clip) == (True, 5e-4, None)
    assert optim.no_decay == "norm" and optim.momentum == (0.85, 0.95)  # OneCycleLR's cycle
    # cosinew: OneCycleLR(pct_start=0.025, total_steps=epochs) stepped per epoch; WA warm-up
    schedule = config.schedule
    assert (schedule.kind, schedule.interval) == ("onecycle", "epoch")
    assert schedule.warmup_epochs == config.ema.warmup_epochs == 0.025 * epochs
    assert config.ema.tau == 0.995  # train-wa.py --tau
    # watrain.py: BatchNorm momentum 1.0 at step 0, then 0.01 (as the model's BatchNorm2d)
    assert (config.model.bn_momentum_first_step, config.model.bn_momentum) == (1.0, 0.01)
    # semisup.py: ceil(50,000 / batch) batches an epoch, the first 1,024 images held out
    assert (config.data.epoch_images, config.data.val_size) == (50000, 1024)
    assert (config.data.crop_padding, config.data.flip, config.data.rotation) == (4, True, 0.0)
    # watrain.py eval_attack: 4 x 10 steps of 2/255 on the CW loss, the latest best kept
    val = config.eval
    assert (val.val_loss, val.val_steps, val.val_step_size, val.ties) == (
        "cw",
        40,
        2 / 255,
        "latest",
    )
    assert tuple(val.autoattack) == ("apgd-ce", "apgd-t", "fab-t", "square")  # eval-aa.py
    spec = setup.build_spec(config.model, 10, (3, 32, 32))
    assert {s.activation for s in spec.stages} == {"silu"}  # wrn-28-10-swish
    assert spec.mean == (0.4914, 0.4822, 0.4465) and spec.std == (0.2471, 0.2435, 0.2616)


@pytest.mark.parametrize("size", list(GENERATED))
def test_generated_schedule_and_averaging_are_their_code(size):
    """Our per-epoch lr / momentum are torch's OneCycleLR(pct_start=0.025) as train.py's
    `cosinew` builds it, and our EMA warm-up in steps is watrain.py's warmup_steps."""
    config = load_config(f"cifar10/generated/wrn-28-10-{size}")
    batch, lr, epochs, _ = GENERATED[size]
    sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9, nesterov=True)
    theirs = torch.optim.lr_scheduler.OneCycleLR(
        sgd, max_lr=lr, pct_start=0.025, total_steps=epochs
    )
    warmup = round(config.schedule.warmup_epochs)
    for epoch in range(epochs):
        group = sgd.param_groups[0]
        ours_lr = lr_at(epoch, total_steps=epochs, base_lr=lr, schedule="onecycle",
                        warmup_steps=warmup)  # fmt: skip
        ours_momentum = momentum_at(epoch, total_steps=epochs, warmup_steps=warmup,
                                    momentum=config.optim.momentum)  # fmt: skip
        assert ours_lr == pytest.approx(group["lr"], rel=1e-9, abs=1e-12), epoch
        assert ours_momentum == pytest.approx(group["momentum"], rel=1e-9), epoch
        sgd.step()
        theirs.step()
    # watrain.py: update_steps = floor(50000 / batch) + 1, the sampler's ceil(50000 / batch)
    update_steps = math.floor(50000 / batch) + 1
    assert update_steps == math.ceil(config.data.epoch_images / batch)
    their_warmup = 0.025 * epochs * update_steps
    ours = round(config.ema.warmup_epochs * update_steps)  # train.setup.build_ema
    assert ours == their_warmup
    for step in (1, ours - 1, ours, ours + 1, ours + 500):  # ema_update(dynamic_decay=True)
        delta = step - their_warmup
        decay = min(0.995, (1.0 + delta) / (10.0 + delta)) * (step >= their_warmup)
        assert ema_decay(step, config.ema.tau, ours) == pytest.approx(decay)


def test_generated_label_smoothing_is_their_smooth_cross_entropy():
    """core/utils/utils.py SmoothCrossEntropyLoss: (1 - s) * NLL + s * mean over classes of
    -log p, the clean term of their TRADES, is the recipe objective's clean term."""
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10)).double()
    x = torch.rand(16, 3, 2, 2, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (16,), generator=generator)
    objective = load_config("cifar10/generated/wrn-28-10-1m").objective
    _, metrics = objective.loss(model, x, y, x)
    log_p = F.log_softmax(model(x), dim=-1)
    nll = -log_p.gather(1, y[:, None]).squeeze(1)
    smoothing = objective.label_smoothing
    theirs = ((1 - smoothing) * nll + smoothing * (-log_p.mean(dim=-1))).mean()
    assert torch.allclose(metrics["loss_clean"], theirs)
