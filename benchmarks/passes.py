"""One comparison per pass: our call (the library, as `Settings` says) and the baseline's (the
definition, written the authors' way) on the same network and batch, with the work they do and a
cheap check that they compute the same thing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustresnet.attacks import autoattack, frozen, predict
from robustresnet.attacks.pgd import attack_model, pgd
from robustresnet.attacks.spec import parse_attack
from robustresnet.train.objectives import make_objective
from robustresnet.train.optim import build_optimizer

from . import baselines
from .models import PassFlops, build, make_robust, random_batch
from .settings import Settings

TRADES = make_objective("trades")  # the paper's TRADES-10: 10 steps of 2/255 at 8/255, beta 6
PGD20 = parse_attack("pgd20:random_start=0")  # deterministic, so both sides can be compared
APGD_ITERATIONS = 100  # per APGD run in AutoAttack's standard version
REFERENCE_IMAGES = 8  # the attack step's fp64 check: enough to see, cheap even for A4 on a GPU


@dataclass
class Comparison:
    """Two calls doing the same work on `images` images (`flops` counted once, for both), the
    check of their first results, and optional cheaper warm-ups."""

    ours: Callable[[], object]
    baseline: Callable[[], object]
    images: int
    flops: float | None
    check: Callable[[object, object], str]
    warmups: dict[str, Callable[[], object]] | None = None


@dataclass
class Case:
    """What every pass of one size shares: the network (eval mode), a batch, its FLOPs."""

    size: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    flops: PassFlops
    settings: Settings
    aa_samples: int
    aa_targets: int


def forward(case: Case) -> Comparison:
    """Inference: logits of the batch, no autograd graph."""
    s = case.settings
    ours = attack_model(s.prepare(case.model), fuse=s.fuse)
    x_ours = s.layout(case.x)

    def ours_call():
        with s.autocast():
            return predict(ours, x_ours, batch_size=len(x_ours))

    return Comparison(
        ours=ours_call,
        baseline=lambda: predict(case.model, case.x, batch_size=len(case.x)),
        images=len(case.x),
        flops=case.flops.forward * len(case.x),
        check=lambda a, b: f"logits max rel. diff {_relative(a, b):.1e}",
    )


def attack(case: Case) -> Comparison:
    """One attack step: the input gradient of the cross-entropy, the model frozen."""
    s = case.settings
    ours = attack_model(s.prepare(case.model), fuse=s.fuse)
    x_ours = s.layout(case.x)

    def ours_call():
        with s.autocast():
            return input_gradient(ours, x_ours, case.y)

    def check(ours_grad: torch.Tensor, baseline_grad: torch.Tensor) -> str:
        # fp32's own error is large here (cancellation): both against fp64, on a few images
        n = min(len(case.x), REFERENCE_IMAGES)
        reference = copy.deepcopy(case.model).double()
        exact = input_gradient(reference, case.x[:n].double(), case.y[:n])
        errors = [_relative(g[:n], exact, norm=True) for g in (ours_grad, baseline_grad)]
        return "gradient rel. error vs fp64 {:.1e} vs {:.1e}".format(*errors)

    return Comparison(
        ours=ours_call,
        baseline=lambda: input_gradient(case.model, case.x, case.y),
        images=len(case.x),
        flops=case.flops.attack * len(case.x),
        check=check,
    )


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d CE(model(x), y) / dx with the model frozen: the work of one attack step."""
    with frozen(model), torch.enable_grad():
        x_adv = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv).float(), y, reduction="sum")
        return torch.autograd.grad(loss, x_adv)[0]


def trades(case: Case) -> Comparison:
    """One TRADES-10 training step: the library's objective and an SGD step, against the
    authors'-style step; each side trains its own copy from the same weights and noise seed."""
    s = case.settings
    ours = s.prepare(case.model).train()
    baseline = copy.deepcopy(case.model).train()
    optimizers = [build_optimizer(m, lr=0.01, weight_decay=5e-4) for m in (ours, baseline)]
    generators = [torch.Generator(case.x.device).manual_seed(0) for _ in range(2)]
    scaler = torch.amp.GradScaler(s.device.type, enabled=s.dtype == "fp16")
    x_ours = s.layout(case.x)

    def ours_call() -> float:
        optimizers[0].zero_grad(set_to_none=True)
        with s.autocast():
            loss, _ = TRADES(ours, x_ours, case.y, generator=generators[0], fuse=s.fuse)
        scaler.scale(loss).backward()
        scaler.step(optimizers[0])
        scaler.update()
        return loss.item()

    settings = {"eps": TRADES.eps, "step_size": TRADES.step_size, "steps": TRADES.steps}
    settings.update(beta=TRADES.beta, generator=generators[1])

    def baseline_call() -> float:
        return baselines.trades_step(baseline, optimizers[1], case.x, case.y, **settings)

    f = case.flops
    work = TRADES.steps * f.attack + f.forward + 2 * f.train  # attack, clean softmax, loss
    return Comparison(
        ours=ours_call,
        baseline=baseline_call,
        images=len(case.x),
        flops=work * len(case.x),
        check=lambda a, b: f"first-step loss {a:.4f} vs {b:.4f}",
    )


def pgd20(case: Case) -> Comparison:
    """PGD-20 evaluation of the batch (labels: the clean predictions, so every sample counts):
    `pgd` and `predict` on the model attacks run, against the straightforward loop. Warm-up: the
    same with one step."""
    s = case.settings
    ours = s.prepare(case.model)
    x_ours = s.layout(case.x)
    y = predict(case.model, case.x).argmax(1)

    def ours_call(steps: int = PGD20.steps) -> torch.Tensor:
        with s.autocast():
            net = attack_model(ours, fuse=s.fuse)  # fused once per evaluation, as `evaluate`
            x_adv = pgd(net, x_ours, y, eps=PGD20.eps, step_size=PGD20.step_size, steps=steps,
                        random_start=False)  # fmt: skip
            return predict(net, x_adv, batch_size=len(x_adv)).argmax(1)

    def baseline_call(steps: int = PGD20.steps) -> torch.Tensor:
        return baselines.pgd_predictions(
            case.model, case.x, y, eps=PGD20.eps, step_size=PGD20.step_size, steps=steps
        )

    f = case.flops
    return Comparison(
        ours=ours_call,
        baseline=baseline_call,
        images=len(case.x),
        flops=(PGD20.steps * f.attack + f.forward) * len(case.x),
        check=lambda a, b: (
            f"{_robust_check(a == y, b == y)}; adv. predictions differ on "
            f"{int((a != b).sum())}/{len(y)}"
        ),
        warmups={"ours": lambda: ours_call(1), "baseline": lambda: baseline_call(1)},
    )


def autoattack_pass(case: Case) -> Comparison:
    """APGD-CE + APGD-T through our adapter on the model attacks run, against pyautoattack on
    the definition; a fixed model every sample stays robust on, so both run the whole budget."""
    s = case.settings
    model = build(case.size, s.device, classes=case.aa_targets + 1)
    x = random_batch(case.aa_samples, s.device, seed=2)[0]
    y = make_robust(model, x)
    ours = s.prepare(model)

    def ours_call() -> torch.Tensor:
        with s.autocast():
            net = attack_model(ours, fuse=s.fuse)  # the adapter receives the fused model
            result = autoattack(
                net, x, y, eps=PGD20.eps, attacks="apgd-ce,apgd-t", seed=0, batch_size=len(x)
            )
        return result.flags

    def baseline_call() -> torch.Tensor:
        return baselines.autoattack_flags(model, x, y, eps=PGD20.eps, targets=case.aa_targets)

    def ours_warmup():  # the same kernels at the same batch: 1/100 of an APGD run
        with s.autocast():
            return input_gradient(attack_model(ours, fuse=s.fuse), s.layout(x), y)

    runs = 1 + case.aa_targets  # APGD-CE, then APGD-T once per target class
    return Comparison(
        ours=ours_call,
        baseline=baseline_call,
        images=len(x),
        flops=runs * APGD_ITERATIONS * case.flops.attack * len(x),
        check=_robust_check,
        warmups={"ours": ours_warmup, "baseline": lambda: input_gradient(model, x, y)},
    )


PASSES: dict[str, Callable[[Case], Comparison]] = {
    "forward": forward,
    "attack": attack,
    "trades": trades,
    "pgd20": pgd20,
    "autoattack": autoattack_pass,
}


def _relative(a: torch.Tensor, b: torch.Tensor, *, norm: bool = False) -> float:
    """|a - b| relative to |b|: largest elements, or Euclidean norms with `norm`."""
    diff, ref = a.double() - b.double(), b.double()
    if norm:
        return (diff.norm() / ref.norm().clamp_min(1e-30)).item()
    return (diff.abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def _robust_check(ours: torch.Tensor, baseline: torch.Tensor) -> str:
    """Robust accuracy from each side's per-sample flags, and how many flags differ."""
    accuracy = [f"{flags.float().mean().item():.1%}" for flags in (ours, baseline)]
    differ = int((ours != baseline).sum())
    return f"robust acc. {accuracy[0]} vs {accuracy[1]}, {differ}/{len(ours)} flags differ"
