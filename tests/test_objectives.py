"""Objectives: losses equal the published formulas, the inner maximisation works, state restored."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustresnet.errors import ConfigError
from robustresnet.train.objectives import make_objective

EPS = 8 / 255


def tiny_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).train()


@pytest.fixture
def batch():
    x = torch.rand(16, 3, 8, 8)
    y = torch.randint(0, 10, (16,))
    x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    return x, y, x_adv


def kl_rows(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sum_k p_k (log p_k - log q_k), one value per row."""
    return (p * (p.log() - q.log())).sum(1)


def test_trades_loss_is_ce_plus_beta_batchmean_kl(batch):
    x, y, x_adv = batch
    model = tiny_model()
    loss, metrics = make_objective("trades", beta=6.0).loss(model, x, y, x_adv)
    clean, adv = model(x), model(x_adv)
    p, q = clean.softmax(1), adv.softmax(1)
    expected = F.cross_entropy(clean, y) + 6.0 * kl_rows(p, q).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(metrics["loss_clean"], F.cross_entropy(clean, y).detach())
    assert metrics["acc_adv"] == (adv.argmax(1) == y).float().mean()


def test_mart_loss_is_boosted_ce_plus_weighted_kl(batch):
    x, y, x_adv = batch
    model = tiny_model()
    loss, _ = make_objective("mart", beta=5.0).loss(model, x, y, x_adv)
    p, q = model(x).softmax(1), model(x_adv).softmax(1)
    rows = torch.arange(len(y))
    best_wrong = q.clone()
    best_wrong[rows, y] = 0.0
    bce = -q[rows, y].log() - (1 - best_wrong.max(1).values).log()
    expected = bce.mean() + 5.0 * (kl_rows(p, q) * (1 - p[rows, y])).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-3, atol=1e-4)


def test_pgd_at_loss_is_ce_on_adversarial(batch):
    x, y, x_adv = batch
    model = tiny_model()
    loss, metrics = make_objective("pgd_at").loss(model, x, y, x_adv)
    torch.testing.assert_close(loss, F.cross_entropy(model(x_adv), y), rtol=1e-5, atol=1e-6)
    assert set(metrics) >= {"loss", "acc_clean", "acc_adv"}


def test_label_smoothing_changes_only_the_clean_term(batch):
    x, y, x_adv = batch
    model = tiny_model()
    _, plain = make_objective("trades").loss(model, x, y, x_adv)
    _, smooth = make_objective("trades", label_smoothing=0.1).loss(model, x, y, x_adv)
    torch.testing.assert_close(plain["loss_robust"], smooth["loss_robust"])
    expected = F.cross_entropy(model(x), y, label_smoothing=0.1).detach()
    torch.testing.assert_close(smooth["loss_clean"], expected)
    assert not torch.allclose(plain["loss_clean"], smooth["loss_clean"])


@pytest.mark.parametrize("name", ["pgd_at", "trades", "mart"])
def test_inner_maximisation_increases_the_inner_loss(name, batch):
    x, y, _ = batch
    model = tiny_model()
    with torch.no_grad():
        model[-1].weight.mul_(20)  # confident logits, so the losses respond visibly
    objective = make_objective(name, steps=5)  # TRADES: from x + 0.001 N(0, 1), KL is 0 at x
    x_adv = objective.attack(model, x, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    model.eval()
    with torch.no_grad():
        inner = objective.inner_loss(model, x, y)
        before, after = inner(model(x)).mean(), inner(model(x_adv)).mean()
    assert after > before + 1e-4


@pytest.mark.parametrize("name", ["pgd_at", "trades", "mart"])
def test_mode_and_requires_grad_restored_and_every_parameter_gets_a_gradient(name, batch):
    x, y, _ = batch
    model = tiny_model()
    model[4].eval()
    model[0].weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    loss, _ = make_objective(name, steps=2)(model, x, y)
    loss.backward()
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model[0].weight.grad is None


@pytest.mark.parametrize("name", ["trades", "mart"])
def test_bn_adversarial_only_updates_statistics_from_adversarial_inputs_alone(name, batch):
    x, y, x_adv = batch
    model, reference, both = tiny_model(), tiny_model(), tiny_model()
    reference.load_state_dict(model.state_dict())
    both.load_state_dict(model.state_dict())
    make_objective(name, bn_adversarial_only=True).loss(model, x, y, x_adv)
    reference(x_adv)
    make_objective(name).loss(both, x, y, x_adv)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    assert not torch.allclose(both[1].running_mean, reference[1].running_mean)
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_same_generator_seed_gives_the_same_loss(batch):
    x, y, _ = batch
    model = tiny_model().eval()  # eval: BN stats do not move between the two calls
    objective = make_objective("trades", steps=2)
    first, _ = objective(model, x, y, generator=torch.Generator().manual_seed(3))
    second, _ = objective(model, x, y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_defaults_and_bad_options():
    assert make_objective("trades").start == "normal"
    assert make_objective("TRADES").beta == 6.0
    assert make_objective("pgd-at").start == "uniform"
    assert make_objective("mart", norm="2", eps=0.5).norm == "2"
    with pytest.raises(ConfigError, match="objective"):
        make_objective("fgsm_at")
    with pytest.raises(ConfigError, match="objective.beta"):
        make_objective("pgd_at", beta=6.0)
    with pytest.raises(ConfigError, match="objective.norm"):
        make_objective("trades", norm="1")


def test_objective_never_changes_the_weights(batch):
    x, y, _ = batch
    model = tiny_model().eval()
    before = copy.deepcopy(model.state_dict())
    make_objective("pgd_at", steps=1)(model, x, y)
    for key, value in model.state_dict().items():
        assert torch.equal(before[key], value), key


@pytest.mark.parametrize("name", ["trades", "mart"])
def test_bf16_autocast_step_gives_an_fp32_loss_close_to_fp32(name, batch):
    x, y, x_adv = batch
    model = tiny_model()
    objective = make_objective(name)
    expected, _ = objective.loss(model, x, y, x_adv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = objective.loss(model, x, y, x_adv)
    loss.backward()
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=0.05, atol=0.05)


def test_attack_bn_train_uses_batch_statistics_and_leaves_running_ones(batch):
    """The advanced recipe's attack: train-mode BatchNorm, running statistics untouched, so the
    fused copy (eval-mode BatchNorm) is not used even when asked for."""
    x, y, _ = batch
    model = tiny_model()
    with torch.no_grad():
        model[1].running_var.fill_(4.0)  # eval and batch statistics now differ
    before = copy.deepcopy(model.state_dict())
    objective = make_objective("trades", attack_bn="train", steps=3)
    generator = torch.Generator().manual_seed(0)
    x_adv = objective.attack(model, x, y, generator=generator, fuse=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.training and all(m.track_running_stats for m in (model[1], model[4]))
    evaluated = make_objective("trades", steps=3).attack(
        model, x, y, generator=torch.Generator().manual_seed(0)
    )
    assert not torch.equal(x_adv, evaluated)
