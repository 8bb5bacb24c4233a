"""Step for step against the authors' trainer: one training step of each recipe on the same
weights, batch and start noise (tests/data/authors-steps, made there by generate.py with their
code).

The objectives come from the shipped recipes, so these vectors also pin the recipes.
float64: the adversarial batch exactly, loss, gradients and BatchNorm buffers within 1e-10.
float32: loss and gradients within a few times the floor the authors' own code shows between
memory layouts (rounding flips some attack signs; pixels are not compared).
"""

from __future__ import annotations

import json
import math
import types

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file

from robustresnet import build_model
from robustresnet.arch import ArchSpec
from robustresnet.train import setup
from robustresnet.train.config import load_config
from robustresnet.train.ema import ema_decay
from robustresnet.train.optim import no_weight_decay_parameters
from robustresnet.train.trainer import _schedule

VECTORS = REPO / "tests" / "data" / "authors-steps"
RECIPES = {  # case -> the recipe whose objective it checks
    "trades": "cifar10/trades/wrn-a4",
    "pgd_at": "cifar10/pgd_at/wrn-a4",
    "mart": "cifar10/mart/wrn-a4",
    "advanced_trades": "cifar10/advanced/wrn-a4",
}
# The baseline recipes run on ReLU networks, the advanced one on SiLU (as the recipes do).
CASES = [
    (f"{network}-{activation}-{dtype}", case)
    for network in ("robust", "basic")
    for activation, cases in (
        ("relu", ("trades", "pgd_at", "mart")),
        ("silu", ("advanced_trades",)),
    )
    for dtype in ("float64", "float32")
    for case in cases
]


def _load(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = json.loads((VECTORS / f"{name}.json").read_text())
    return meta, load_file(VECTORS / f"{name}.safetensors")


def _step(name: str, case: str, *, fuse: bool = True):
    """Our step: model, its loss, x_adv and the vectors, with the recipe's objective."""
    meta, tensors = _load(name)
    config = load_config(RECIPES[case])
    objective = config.objective
    settings = meta["cases"][case]
    assert (objective.eps, objective.step_size, objective.steps) == (
        settings["eps"],
        settings["step_size"],
        settings["steps"],
    )
    dtype = getattr(torch, meta["dtype"])
    model = build_model(ArchSpec.from_reference(meta["model"])).to(dtype).train()
    prefix = "weights/"
    model.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    setup.set_bn_momentum(model, config.model.bn_momentum or 0.1)
    assert settings["bn_momentum"] == (config.model.bn_momentum or 0.1)
    x, y = tensors["x"], tensors["y"]
    noise = tensors[f"{case}/noise"]
    x_adv = objective.attack(model, x, y, start_noise=noise, fuse=fuse)
    loss, _ = objective.loss(model, x, y, x_adv)
    loss.backward()
    return model, loss, x_adv, tensors, meta


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: torch.zeros_like(p) if p.grad is None else p.grad for k, p in model.named_parameters()
    }


def _unused_bn1(meta: dict) -> set[str]:
    """bn1 of an identity RobustResBlock: the authors' block computes it and discards it (its
    output only feeds a projection), so its running statistics move there and never matter."""
    return {k.rsplit(".", 1)[0] for k in meta["cases"][next(iter(meta["cases"]))].get(
        "params_without_grad", []
    )}  # fmt: skip


@pytest.mark.parametrize(("name", "case"), [c for c in CASES if c[0].endswith("float64")])
def test_float64_step_is_the_authors_exactly(name, case):
    model, loss, x_adv, tensors, meta = _step(name, case, fuse=False)
    assert torch.equal(x_adv, tensors[f"{case}/x_adv"])
    torch.testing.assert_close(loss.detach(), tensors[f"{case}/loss"], rtol=1e-10, atol=0)
    for key, grad in _grads(model).items():
        expected = tensors[f"{case}/grad/{key}"]
        scale = expected.abs().max().item() or 1.0
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-10 * scale, msg=key)
    unused = _unused_bn1(meta)
    for key, value in model.state_dict().items():
        if f"{case}/buffers/{key}" not in tensors or key.rsplit(".", 1)[0] in unused:
            continue
        torch.testing.assert_close(value, tensors[f"{case}/buffers/{key}"], rtol=1e-10, atol=0)


@pytest.mark.parametrize(("name", "case"), [c for c in CASES if c[0].endswith("float64")])
def test_float64_step_with_the_fused_attack_matches_too(name, case):
    """The attack on the fused copy (the default) gives the same step to rounding."""
    model, loss, x_adv, tensors, _ = _step(name, case, fuse=True)
    differing = (x_adv != tensors[f"{case}/x_adv"]).float().mean().item()
    assert differing < 1e-3
    torch.testing.assert_close(loss.detach(), tensors[f"{case}/loss"], rtol=1e-6, atol=0)


@pytest.mark.parametrize(("name", "case"), [c for c in CASES if c[0].endswith("float32")])
def test_float32_step_is_within_the_authors_own_noise_floor(name, case):
    """The floor: how far the authors' float32 step moves from itself in the other memory layout,
    or from their float64 step, whichever is larger (measured per case by generate.py)."""
    model, loss, _, tensors, meta = _step(name, case)
    measured = meta["cases"][case]["noise_floor"]
    pairs = ("channels_last_vs_contiguous", "float32_vs_float64")
    floor = {
        key: max(measured[pair][key] for pair in pairs)
        for key in ("loss_rel_diff", "grad_rel_l2_diff")
    }
    expected = tensors[f"{case}/loss"].double()
    loss_diff = abs(loss.item() - expected.item()) / expected.abs().item()
    assert loss_diff <= max(3 * floor["loss_rel_diff"], 1e-6)
    ours = torch.cat([g.flatten().double() for g in _grads(model).values()])
    theirs = torch.cat(
        [tensors[f"{case}/grad/{k}"].flatten().double() for k, _ in model.named_parameters()]
    )
    grad_diff = ((ours - theirs).norm() / theirs.norm()).item()
    assert grad_diff <= max(3 * floor["grad_rel_l2_diff"], 1e-5)


def test_schedule_is_the_authors_every_step():
    """lr, momentum, BatchNorm momentum and EMA decay of each step of their WATrainer loop."""
    vector = json.loads((VECTORS / "schedule.json").read_text())
    s = vector["settings"]
    overrides = [
        f"schedule.epochs={s['epochs']}",
        f"schedule.warmup_epochs={s['warmup_epochs']}",
        f"ema.warmup_epochs={s['warmup_epochs']}",
        f"optim.lr={s['lr']}",
    ]
    config = load_config(RECIPES["advanced_trades"], overrides)
    trainer = types.SimpleNamespace(config=config)
    per_epoch = s["update_steps"]
    warmup = round(config.ema.warmup_epochs * per_epoch)
    first, regular = config.model.bn_momentum_first_step, config.model.bn_momentum
    assert len(vector["rows"]) == s["epochs"] * per_epoch
    for row in vector["rows"]:
        step = row["step"]
        lr, momentum = _schedule(trainer, step, per_epoch)
        assert math.isclose(lr, row["lr"][0], rel_tol=1e-12), step
        assert math.isclose(momentum, row["momentum"][0], rel_tol=1e-12), step
        assert (first if step == 0 else regular) == row["bn_momentum"]
        decay = ema_decay(step + 1, config.ema.tau, warmup)
        assert math.isclose(decay, row["ema_decay"], rel_tol=1e-12, abs_tol=0), step


def test_weight_decay_exemption_by_name_is_the_authors():
    vector = json.loads((VECTORS / "schedule.json").read_text())
    model = build_model(ArchSpec.from_reference(vector["model"]))
    assert [n for n, _ in model.named_parameters()] == vector["parameter_names"]
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = [names[id(p)] for p in no_weight_decay_parameters(model, "bn_in_name")]
    assert exempt == vector["no_weight_decay"]
    assert not set(exempt) & set(vector["batchnorm_with_weight_decay"])
