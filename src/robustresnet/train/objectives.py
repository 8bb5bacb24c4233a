"""Adversarial training objectives: PGD-AT (Madry), TRADES and MART, each the loss of one batch.

An objective finds adversarial inputs with `attacks.perturb` (model frozen: eval mode, no
parameter gradients), then computes the training loss in train mode. It never touches the
optimizer. Each objective is written once; the recipes' variants are keyword options.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks import attack_model, frozen, perturb
from ..errors import ConfigError

Metrics = dict[str, Tensor]
LossFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Objective:
    """Shared settings: the inner maximisation (eps, steps, start) and the train-mode options.

    `label_smoothing` applies to the supervised cross-entropy term (TRADES: the clean term).
    `bn_adversarial_only`: BatchNorm running statistics are updated by adversarial inputs only.
    `fuse`: the inner maximisation runs the model's fused copy, made afresh from the current
    weights at every call (`robustresnet.fuse`: the same function in fewer kernels).
    """

    name: ClassVar[str] = ""
    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    norm: str = "inf"
    start: str = "uniform"
    start_std: float = 0.001
    label_smoothing: float = 0.0
    bn_adversarial_only: bool = False
    fuse: bool = True

    def __post_init__(self) -> None:
        _check(self.eps >= 0, "eps", self.eps, "a number >= 0")
        _check(self.step_size >= 0, "step_size", self.step_size, "a number >= 0")
        _check(isinstance(self.steps, int) and self.steps >= 0, "steps", self.steps, "int >= 0")
        _check(self.norm in ("inf", "2"), "norm", self.norm, "'inf' or '2'")
        _check(
            self.start in ("uniform", "normal", "none"),
            "start",
            self.start,
            "'uniform', 'normal' or 'none'",
        )
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "in [0, 1)")

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Metrics]:
        """The loss (with gradient to the parameters) and detached metrics of one batch."""
        x_adv = self.attack(model, x, y, generator=generator)
        return self.loss(model, x, y, x_adv)

    def attack(
        self, model: nn.Module, x: Tensor, y: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Inner maximisation of `inner_loss` by `attacks.perturb`, the model frozen (its fused
        copy with `fuse`: one per call, so never stale weights)."""
        attacked = attack_model(model, fuse=self.fuse)
        with frozen(attacked):
            loss_fn = self.inner_loss(attacked, x, y)
            return perturb(
                attacked,
                x,
                loss_fn,
                eps=self.eps,
                step_size=self.step_size,
                steps=self.steps,
                norm=self.norm,
                start=self.start,
                start_std=self.start_std,
                generator=generator,
                fuse=False,  # `attacked` is fused already
            ).detach()

    def inner_loss(self, model: nn.Module, x: Tensor, y: Tensor) -> LossFn:
        """Per-sample loss of adversarial logits to maximise (default: cross-entropy)."""
        return lambda logits: F.cross_entropy(logits.float(), y, reduction="none")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """The training loss for given adversarial inputs (model in train mode)."""
        raise NotImplementedError

    def clean_logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """Train-mode clean logits; BatchNorm running statistics left alone if adversarial-only."""
        guard = _bn_stats_untouched(model) if self.bn_adversarial_only else contextlib.nullcontext()
        with guard:
            return model(x).float()


@dataclass(frozen=True)
class PGDAT(Objective):
    """Madry et al.: cross-entropy on adversarial examples found by maximising cross-entropy."""

    name: ClassVar[str] = "pgd_at"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """CE(model(x_adv), y); clean accuracy from a no-grad eval-mode forward (metric only)."""
        with frozen(model), torch.no_grad():
            logits_clean = model(x).float()
        logits_adv = model(x_adv).float()
        loss = F.cross_entropy(logits_adv, y, label_smoothing=self.label_smoothing)
        return loss, _metrics(y, logits_clean, logits_adv, loss=loss, loss_adv=loss)


@dataclass(frozen=True)
class _KLRegularised(Objective):
    """An objective with a beta-weighted KL term, attacked from x + 0.001·N(0, 1) by default."""

    beta: float = 6.0
    start: str = "normal"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.beta >= 0, "beta", self.beta, "a number >= 0")


@dataclass(frozen=True)
class TRADES(_KLRegularised):
    """Zhang et al. 2019: CE(clean) + beta * KL(p_clean || p_adv), KL inner maximisation."""

    name: ClassVar[str] = "trades"

    def inner_loss(self, model: nn.Module, x: Tensor, y: Tensor) -> LossFn:
        """Per-sample KL(p_clean || p_adv), p_clean from the frozen (eval-mode) model."""
        with torch.no_grad():
            log_p_clean = F.log_softmax(model(x).float(), dim=1)
        return lambda logits: _kl_per_sample(log_p_clean, logits.float())

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """The authors' outer loss: KL summed over classes, averaged over the batch."""
        logits_clean = self.clean_logits(model, x)
        logits_adv = model(x_adv).float()
        loss_clean = F.cross_entropy(logits_clean, y, label_smoothing=self.label_smoothing)
        log_p_clean = F.log_softmax(logits_clean, dim=1)
        loss_robust = _kl_per_sample(log_p_clean, logits_adv).mean()
        loss = loss_clean + self.beta * loss_robust
        parts = {"loss": loss, "loss_clean": loss_clean, "loss_robust": loss_robust}
        return loss, _metrics(y, logits_clean, logits_adv, **parts)


@dataclass(frozen=True)
class MART(_KLRegularised):
    """Wang et al. 2020: boosted CE on adversarial + beta * KL weighted by 1 - p_y(clean)."""

    name: ClassVar[str] = "mart"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """BCE(adv) = CE(adv) - log(1 - max_{k != y} p_k(adv)); KL(p_clean || p_adv)(1 - p_y)."""
        logits_clean = self.clean_logits(model, x)
        logits_adv = model(x_adv).float()
        p_adv = logits_adv.softmax(dim=1)
        # The most likely wrong class; the small constants keep the logs finite, as in the
        # authors' code (1.0001 and 1e-12 for the margin term, 1.0000001 for the weight).
        wrong = p_adv.scatter(1, y[:, None], -1.0).argmax(dim=1)
        margin = -torch.log(1.0001 - p_adv.gather(1, wrong[:, None]).squeeze(1) + 1e-12)
        ce_adv = F.cross_entropy(logits_adv, y, label_smoothing=self.label_smoothing)
        loss_adv = ce_adv + margin.mean()
        log_p_clean = F.log_softmax(logits_clean, dim=1)
        p_true = log_p_clean.exp().gather(1, y[:, None]).squeeze(1)
        loss_robust = (_kl_per_sample(log_p_clean, logits_adv) * (1.0000001 - p_true)).mean()
        loss = loss_adv + self.beta * loss_robust
        parts = {"loss": loss, "loss_adv": loss_adv, "loss_robust": loss_robust}
        return loss, _metrics(y, logits_clean, logits_adv, **parts)


@dataclass(frozen=True)
class Standard(Objective):
    """Plain cross-entropy on clean inputs: the non-robust baseline, with no inner maximisation."""

    name: ClassVar[str] = "standard"

    def attack(
        self, model: nn.Module, x: Tensor, y: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """No adversary: the clean inputs themselves."""
        return x

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """CE(model(x), y)."""
        logits = model(x).float()
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        accuracy = (logits.argmax(1) == y).float().mean()
        return loss, {"loss": loss.detach(), "acc_clean": accuracy.detach()}


OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (PGDAT, TRADES, MART, Standard)}


def make_objective(name: str, **options: object) -> Objective:
    """The objective `name` (pgd_at, trades, mart, standard) with keyword options."""
    key = str(name).lower().replace("-", "_")
    if key not in OBJECTIVES:
        raise ConfigError("objective", name, f"one of {sorted(OBJECTIVES)}")
    cls = OBJECTIVES[key]
    known = {f.name for f in dataclasses.fields(cls)}
    for option in options:
        if option not in known:
            raise ConfigError(
                f"objective.{option}", options[option], f"an option of {sorted(known)}"
            )
    return cls(**options)


def _kl_per_sample(log_p: Tensor, logits_q: Tensor) -> Tensor:
    """KL(p || q) per sample, summed over classes (q given by logits)."""
    return F.kl_div(F.log_softmax(logits_q, dim=1), log_p, reduction="none", log_target=True).sum(1)


def _metrics(y: Tensor, logits_clean: Tensor, logits_adv: Tensor, **losses: Tensor) -> Metrics:
    """Detached loss parts and clean / adversarial accuracy (fractions of the batch)."""
    metrics = {key: value.detach() for key, value in losses.items()}
    metrics["acc_clean"] = (logits_clean.argmax(1) == y).float().mean().detach()
    metrics["acc_adv"] = (logits_adv.argmax(1) == y).float().mean().detach()
    return metrics


@contextlib.contextmanager
def _bn_stats_untouched(model: nn.Module) -> Iterator[None]:
    """Batch statistics are used as in train mode, but running statistics are not updated."""
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    try:
        for m in norms:
            m.track_running_stats = False
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def _check(ok: bool, field: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"objective.{field}", value, expected)
