"""Optimizer groups and learning-rate schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustresnet.errors import ConfigError
from robustresnet.train.optim import build_optimizer, lr_at, no_weight_decay_parameters, set_lr


def model_with_every_kind() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 1),
        nn.GroupNorm(2, 4),
        nn.Flatten(),
        nn.LayerNorm(4 * 5 * 5),
        nn.Linear(4 * 5 * 5, 2),
    )


def test_no_decay_group_is_exactly_norm_parameters_and_biases():
    model = model_with_every_kind()
    expected = {
        "1.weight", "1.bias", "2.bias", "3.weight", "3.bias", "5.weight", "5.bias", "6.bias"
    }  # fmt: skip
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_weight_decay_parameters(model, "norm_and_bias")} == expected
    optimizer = build_optimizer(model, lr=0.4, weight_decay=5e-4, no_decay="norm_and_bias")
    decay, no_decay = optimizer.param_groups
    assert {names[id(p)] for p in decay["params"]} == {"0.weight", "2.weight", "6.weight"}
    assert {names[id(p)] for p in no_decay["params"]} == expected
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (5e-4, 0.0)


def test_norm_rule_exempts_normalisation_only_as_wang_2023_group_weight():
    """DM-Improves-AT gowal21uncovering/utils/watrain.py `group_weight`: no decay for names
    holding "batchnorm" (every BatchNorm of its WRN: batchnorm_0, batchnorm_1, batchnorm); the
    classifier's bias (`logits.bias`) is decayed."""
    model = nn.Sequential()
    model.add_module("init_conv", nn.Conv2d(3, 4, 3, bias=False))
    model.add_module("batchnorm_0", nn.BatchNorm2d(4))
    model.add_module("conv_0", nn.Conv2d(4, 4, 1))
    model.add_module("batchnorm", nn.BatchNorm2d(4))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("logits", nn.Linear(4, 2))
    names = {id(p): n for n, p in model.named_parameters()}
    authors = {n for n in names.values() if "batchnorm" in n}
    assert {names[id(p)] for p in no_weight_decay_parameters(model, "norm")} == authors
    assert "logits.bias" not in authors and "conv_0.bias" not in authors
    every_kind = model_with_every_kind()
    names = {id(p): n for n, p in every_kind.named_parameters()}
    exempt = {names[id(p)] for p in no_weight_decay_parameters(every_kind, "norm")}
    assert exempt == {"1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"}


def test_plain_optimizer_decays_every_trainable_parameter():
    model = model_with_every_kind()
    model[0].weight.requires_grad_(False)
    optimizer = build_optimizer(model, lr=0.1, nesterov=True, weight_decay=2e-4)
    (group,) = optimizer.param_groups
    assert len(group["params"]) == len(list(model.parameters())) - 1
    assert group["nesterov"] and group["momentum"] == 0.9 and group["weight_decay"] == 2e-4
    set_lr(optimizer, 0.01)
    assert group["lr"] == 0.01
    with pytest.raises(ConfigError, match="optim.nesterov"):
        build_optimizer(model, lr=0.1, momentum=0.0, nesterov=True, weight_decay=0.0)


def test_step_schedule_drops_at_75_and_90_percent():
    lr = [lr_at(s, total_steps=100, base_lr=0.1) for s in range(100)]
    assert lr[0] == lr[74] == 0.1
    assert lr[75] == lr[89] == pytest.approx(0.01)
    assert lr[90] == lr[99] == pytest.approx(0.001)
    assert lr_at(500, total_steps=100, base_lr=0.1) == lr[99]


def test_cosine_schedule_warms_up_linearly_then_decays_to_final():
    kw = {"total_steps": 110, "base_lr": 0.2, "schedule": "cosine", "warmup_steps": 10}
    assert lr_at(0, **kw) == pytest.approx(0.02)
    assert lr_at(9, **kw) == lr_at(10, **kw) == pytest.approx(0.2)
    assert lr_at(60, **kw) == pytest.approx(0.1)
    assert lr_at(109, **kw) < 1e-4


def test_onecycle_equals_torch_one_cycle_lr():
    total, warmup = 400, 10
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.4, total_steps=total, pct_start=warmup / total, cycle_momentum=False
    )
    for step in range(total):
        ours = lr_at(step, total_steps=total, base_lr=0.4, schedule="onecycle", warmup_steps=warmup)
        assert ours == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-6), step
        optimizer.step()
        torch_schedule.step()
    assert lr_at(warmup - 1, total_steps=total, base_lr=0.4, schedule="onecycle",
                 warmup_steps=warmup) == pytest.approx(0.4)  # fmt: skip


def test_bad_schedule_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="optim.schedule"):
        lr_at(0, total_steps=10, base_lr=0.1, schedule="linear")
    with pytest.raises(ConfigError, match="optim.warmup_steps"):
        lr_at(0, total_steps=10, base_lr=0.1, warmup_steps=20)
