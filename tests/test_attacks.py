"""FGSM / PGD / CW: ball and box, agreement with a straightforward loop, monotonicity, frozen()."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from _digits_model import held_out, trained_mlp
from torch import nn

from robustresnet import ConfigError
from robustresnet.attacks import autoattack, fgsm, frozen, perturb, pgd, predict
from robustresnet.attacks.pgd import cross_entropy_loss, margin_loss


def accuracy(model, x, y) -> float:
    return (predict(model, x).argmax(1) == y).float().mean().item()


def reference_pgd(model, x, y, *, eps, step_size, steps, norm, loss, generator):
    """A straightforward PGD written independently: uniform start, full-batch steps, projection."""
    if norm == "inf":
        x_adv = x + torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    else:
        noise = torch.empty_like(x).normal_(generator=generator)
        radius = torch.rand(len(x), generator=generator) * eps
        scale = radius / noise.flatten(1).norm(dim=1).clamp_min(1e-12)
        x_adv = x + noise * scale.view(-1, 1, 1, 1)
    x_adv = project(x_adv, x, eps, norm)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        if loss == "ce":
            objective = F.cross_entropy(logits, y, reduction="sum")
        else:
            top2 = logits.topk(2, dim=1)
            other = torch.where(top2.indices[:, 0] == y, top2.values[:, 1], top2.values[:, 0])
            objective = (other - logits[torch.arange(len(y)), y]).sum()
        (grad,) = torch.autograd.grad(objective, x_adv)
        if norm == "inf":
            step = grad.sign()
        else:
            step = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        x_adv = project(x_adv.detach() + step_size * step, x, eps, norm)
    return x_adv


def project(x_adv, x, eps, norm):
    if norm == "inf":
        return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    delta = x_adv - x
    factor = (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1)
    return (x + delta * factor.view(-1, 1, 1, 1)).clamp(0, 1)


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_pgd_matches_a_straightforward_implementation(norm, loss):
    model = trained_mlp()
    x, y = held_out(100)
    eps = 0.1 if norm == "inf" else 0.5
    settings = {"eps": eps, "step_size": eps / 4, "steps": 10, "norm": norm, "loss": loss}
    ours = pgd(model, x, y, **settings, generator=torch.Generator().manual_seed(3))
    theirs = reference_pgd(model, x, y, **settings, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_fgsm_is_one_signed_step_of_eps():
    model = trained_mlp()
    x, y = held_out(50)
    x_req = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_req), y, reduction="sum"), x_req)
    expected = (x + 0.1 * grad.sign()).clamp(0, 1)
    torch.testing.assert_close(fgsm(model, x, y, eps=0.1), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("start", ["uniform", "normal", "none"])
@pytest.mark.parametrize("eps", [0.05, 0.6])
def test_every_perturbation_stays_in_the_ball_and_the_box(norm, start, eps):
    model = trained_mlp()
    x, y = held_out(64)
    x_adv = perturb(
        model, x, margin_loss(y), eps=eps, step_size=eps / 2, steps=5, norm=norm, start=start,
        start_std=0.3, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "inf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad


def test_eps_zero_gives_clean_accuracy():
    model = trained_mlp()
    x, y = held_out()
    assert torch.equal(pgd(model, x, y, eps=0.0, step_size=0.01, steps=5), x)
    assert accuracy(model, fgsm(model, x, y, eps=0.0), y) == accuracy(model, x, y)


def test_robust_accuracy_is_non_increasing_in_eps_and_in_steps():
    model = trained_mlp()
    x, y = held_out()
    by_eps = [
        accuracy(model, pgd(model, x, y, eps=e, step_size=e / 10, steps=20), y)
        for e in (0.0, 0.03, 0.06, 0.1, 0.2)
    ]
    assert by_eps == sorted(by_eps, reverse=True)
    assert by_eps[0] > 0.85 and by_eps[-1] < 0.5
    by_steps = [
        accuracy(model, pgd(model, x, y, eps=0.1, step_size=0.01, steps=s), y)
        for s in (1, 3, 10, 40)
    ]
    assert by_steps == sorted(by_steps, reverse=True)
    assert by_steps[0] > by_steps[-1]


def test_same_generator_seed_same_result_and_global_rng_untouched():
    model = trained_mlp()
    x, y = held_out(32)
    state = torch.get_rng_state()
    runs = [
        pgd(
            model,
            x,
            y,
            eps=0.1,
            step_size=0.01,
            steps=3,
            generator=torch.Generator().manual_seed(s),
        )
        for s in (1, 1, 2)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    autoattack(model, x, y, eps=0.1, attacks="apgd-ce")
    assert torch.equal(torch.get_rng_state(), state)


def test_channels_last_model_gets_the_same_attack():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10)
    )
    x, y = held_out(16)
    plain = pgd(
        model, x, y, eps=0.1, step_size=0.02, steps=3, generator=torch.Generator().manual_seed(0)
    )
    model.to(memory_format=torch.channels_last)
    fast = pgd(
        model, x, y, eps=0.1, step_size=0.02, steps=3, generator=torch.Generator().manual_seed(0)
    )
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-6)
    # pyautoattack .view()s input gradients, which channels_last convolutions return strided
    assert autoattack(model, x, y, eps=0.1, attacks="apgd-ce").flags.shape == (16,)


def test_frozen_sets_eval_and_no_grad_and_restores_both_even_on_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.train()
    model[1].eval()  # a mixed state must come back as it was
    model[2].weight.requires_grad_(False)
    with pytest.raises(RuntimeError, match="boom"), frozen(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [True, True, False, True]
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, False, True]


def test_attack_leaves_the_model_as_it_was_and_computes_no_parameter_gradients():
    model = trained_mlp()
    model.train()
    model.zero_grad(set_to_none=True)
    x, y = held_out(16)
    pgd(model, x, y, eps=0.1, step_size=0.01, steps=2)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    model.eval()


def test_cross_entropy_and_margin_losses_are_per_sample():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 2])
    torch.testing.assert_close(margin_loss(y)(logits), torch.tensor([-1.0, 2.0]))
    assert cross_entropy_loss(y)(logits).shape == (2,)


@pytest.mark.parametrize(
    "settings",
    [{"norm": "1"}, {"eps": -0.1}, {"eps": 8.0}, {"steps": -1}, {"start": "zero"}],
)
def test_invalid_settings_raise_config_error(settings):
    model = trained_mlp()
    x, y = held_out(4)
    options = {"eps": 0.1, "step_size": 0.01, "steps": 1, **settings}
    with pytest.raises(ConfigError):
        perturb(model, x, cross_entropy_loss(y), **options)


def _bn_model() -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5)
    )
    model(torch.rand(2, 3, 4, 4))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    return model.eval()


def test_start_noise_is_the_start_itself_unclamped_unless_asked():
    """The hook: the first gradient is taken at exactly x + noise (clamped with clamp_start)."""
    model = _bn_model()
    x = torch.rand(4, 3, 4, 4)
    x[0, 0] = 0.0  # saturated pixels: the noise leaves the box there
    noise = 0.01 * torch.randn_like(x)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    loss = cross_entropy_loss(torch.arange(4))
    for clamp in (False, True):
        seen.clear()
        perturb(model, x, loss, eps=0.1, step_size=0.01, steps=1, start_noise=noise,
                clamp_start=clamp, fuse=False)  # fmt: skip
        assert torch.equal(seen[0], (x + noise).clamp(0, 1) if clamp else x + noise)
    assert seen[0].min() >= 0 and (x + noise).min() < 0
    start_only = perturb(model, x, loss, eps=0.005, step_size=0.0, steps=0, start_noise=noise,
                         clamp_start=False)  # fmt: skip
    assert (start_only - x).abs().max() <= 0.005 + 1e-7 and start_only.min() >= 0  # projected
    with pytest.raises(ConfigError, match="start_noise"):
        perturb(model, x, loss, eps=0.1, step_size=0.01, steps=1, start_noise=noise[:2])


def test_batch_stats_attack_normalises_by_each_batch_and_leaves_running_statistics():
    model = _bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(6, 3, 4, 4), torch.arange(6) % 5
    with frozen(model, batch_stats=True):
        assert model[1].training and not model[0].training and not model[1].track_running_stats
        assert not any(p.requires_grad for p in model.parameters())
        batch_logits = model(x)
    assert not model[1].training and model[1].track_running_stats
    reference = copy.deepcopy(model).train()
    reference[1].track_running_stats = False
    torch.testing.assert_close(batch_logits, reference(x))  # batch statistics
    x_adv = perturb(model, x, cross_entropy_loss(y), eps=0.1, step_size=0.02, steps=3,
                    batch_stats=True, generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
