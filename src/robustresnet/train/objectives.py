"""Training objectives: PGD-AT (Madry), TRADES, MART and plain training, each the loss of one batch.

An adversarial objective finds adversarial inputs with `attacks.perturb` (model frozen, no
parameter gradients), then computes the training loss in train mode. It never touches the
optimizer. Each objective is written once; the recipes' variants are its fields, which are also
the config's `objective` section.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.pgd import attack_model, frozen, perturb, untracked_running_stats
from ..attacks.spec import PAPER_EPS
from ..errors import ConfigError

Metrics = dict[str, Tensor]
LossFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True, kw_only=True)
class Objective:
    """A training loss of one batch; its fields are its settings, the config's `objective`
    section (one definition, no second copy of the defaults).

    `label_smoothing` applies to the supervised cross-entropy term (TRADES: the clean term).
    """

    name: ClassVar[str] = ""
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "in [0, 1)")

    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        generator: torch.Generator | None = None,
        start_noise: Tensor | None = None,
        fuse: bool = True,
    ) -> tuple[Tensor, Metrics]:
        """The loss (with gradient to the parameters) and detached metrics of one batch.

        `start_noise` replaces the random start of the inner maximisation (`attacks.perturb`):
        the hook that replays another code's draw step for step. `fuse`: the inner maximisation
        runs the model's fused copy, made afresh from the current weights at every call.
        """
        x_adv = self.attack(model, x, y, generator=generator, start_noise=start_noise, fuse=fuse)
        return self.loss(model, x, y, x_adv)

    def attack(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        generator: torch.Generator | None = None,
        start_noise: Tensor | None = None,
        fuse: bool = True,
    ) -> Tensor:
        """The inputs the loss is taken at (plain training: the clean inputs)."""
        return x

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """The training loss for given adversarial inputs (model in train mode)."""
        raise NotImplementedError

    def settings(self) -> dict[str, object]:
        """`name` and every field: the config's `objective` section."""
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclass(frozen=True, kw_only=True)
class Standard(Objective):
    """Plain cross-entropy on clean inputs: the non-robust baseline, with no inner maximisation."""

    name: ClassVar[str] = "standard"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """CE(model(x), y)."""
        logits = _wide(model(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        accuracy = (logits.argmax(1) == y).float().mean()
        return loss, {"loss": loss.detach(), "acc_clean": accuracy.detach()}


@dataclass(frozen=True, kw_only=True)
class Adversarial(Objective):
    """An objective with an inner maximisation (`attacks.perturb`) before the loss.

    The start is x plus `start` noise (uniform in the ball, or `start_std` * N(0, 1)), clamped
    to [0, 1] when `clamp_start`. `attack_bn`: "eval" attacks the model in eval mode (running
    statistics); "train" normalises every attack forward by its own batch, running statistics
    untouched (the authors' advanced trainer).
    """

    eps: float = PAPER_EPS
    step_size: float = 2 / 255
    steps: int = 10
    norm: str = "inf"
    start: str = "uniform"
    start_std: float = 0.001
    clamp_start: bool = True
    attack_bn: str = "eval"

    def __post_init__(self) -> None:
        super().__post_init__()
        limit = 1.0 if self.norm == "inf" else math.inf
        radius = 'a radius in [0, 1] image units, "8/255"'
        _check(math.isfinite(self.eps) and 0 <= self.eps <= limit, "eps", self.eps, radius)
        _check_non_negative("step_size", self.step_size)
        _check(isinstance(self.steps, int) and 0 <= self.steps < 2**31, "steps", self.steps,
               "an int in [0, 2^31)")  # fmt: skip
        _check(self.norm in ("inf", "2"), "norm", self.norm, "'inf' or '2'")
        starts = ("uniform", "normal", "none")
        _check(self.start in starts, "start", self.start, f"one of {list(starts)}")
        _check_non_negative("start_std", self.start_std)
        _check(self.attack_bn in ("eval", "train"), "attack_bn", self.attack_bn, "eval or train")

    def attack(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        generator: torch.Generator | None = None,
        start_noise: Tensor | None = None,
        fuse: bool = True,
    ) -> Tensor:
        """Inner maximisation of `inner_loss` by `attacks.perturb`, the model frozen (its fused
        copy with `fuse` and eval-mode BatchNorm: one per call, so never stale weights)."""
        batch_stats = self.attack_bn == "train"
        attacked = attack_model(model, fuse=fuse and not batch_stats)
        with frozen(attacked, batch_stats=batch_stats):
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
                clamp_start=self.clamp_start,
                start_noise=start_noise,
                batch_stats=batch_stats,
                generator=generator,
                fuse=False,  # `attacked` is the module to run already
            ).detach()

    def inner_loss(self, model: nn.Module, x: Tensor, y: Tensor) -> LossFn:
        """Per-sample loss of adversarial logits to maximise (default: cross-entropy)."""
        return lambda logits: F.cross_entropy(_wide(logits), y, reduction="none")


@dataclass(frozen=True, kw_only=True)
class PGDAT(Adversarial):
    """Madry et al.: cross-entropy on adversarial examples found by maximising cross-entropy."""

    name: ClassVar[str] = "pgd_at"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """CE(model(x_adv), y); clean accuracy from a no-grad eval-mode forward (metric only)."""
        with frozen(model), torch.no_grad():
            logits_clean = _wide(model(x))
        logits_adv = _wide(model(x_adv))
        loss = F.cross_entropy(logits_adv, y, label_smoothing=self.label_smoothing)
        return loss, _metrics(y, logits_clean, logits_adv, loss=loss, loss_adv=loss)


@dataclass(frozen=True, kw_only=True)
class _KLRegularised(Adversarial):
    """A beta-weighted KL term between clean and adversarial predictions, both in train mode.

    `bn_adversarial_only`: the clean forward leaves BatchNorm running statistics alone, so only
    adversarial inputs update them (the authors' advanced trainer, `--advnorm`).
    """

    beta: float = 6.0
    start: str = "normal"
    bn_adversarial_only: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_non_negative("beta", self.beta)

    def clean_logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """Train-mode clean logits; BatchNorm running statistics left alone if adversarial-only."""
        with untracked_running_stats(model) if self.bn_adversarial_only else nullcontext():
            return _wide(model(x))


@dataclass(frozen=True, kw_only=True)
class TRADES(_KLRegularised):
    """Zhang et al. 2019: CE(clean) + beta * KL(p_clean || p_adv), KL inner maximisation."""

    name: ClassVar[str] = "trades"

    def inner_loss(self, model: nn.Module, x: Tensor, y: Tensor) -> LossFn:
        """Per-sample KL(p_clean || p_adv), p_clean from the model as it is attacked."""
        with torch.no_grad():
            log_p_clean = F.log_softmax(_wide(model(x)), dim=1)
        return lambda logits: _kl_per_sample(log_p_clean, F.log_softmax(_wide(logits), dim=1))

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """The authors' outer loss: KL summed over classes, averaged over the batch."""
        logits_clean = self.clean_logits(model, x)
        logits_adv = _wide(model(x_adv))
        loss_clean = F.cross_entropy(logits_clean, y, label_smoothing=self.label_smoothing)
        log_p_clean = F.log_softmax(logits_clean, dim=1)
        loss_robust = _kl_per_sample(log_p_clean, F.log_softmax(logits_adv, dim=1)).mean()
        loss = loss_clean + self.beta * loss_robust
        parts = {"loss": loss, "loss_clean": loss_clean, "loss_robust": loss_robust}
        return loss, _metrics(y, logits_clean, logits_adv, **parts)


@dataclass(frozen=True, kw_only=True)
class MART(_KLRegularised):
    """Wang et al. 2020: boosted CE on adversarial + beta * KL weighted by 1 - p_y(clean)."""

    name: ClassVar[str] = "mart"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[Tensor, Metrics]:
        """BCE(adv) = CE(adv) - log(1 - max_{k != y} p_k(adv)); KL(p_clean || p_adv)(1 - p_y).

        The small constants are MART's own (the authors' code): 1.0001 and 1e-12 in the margin
        term, 1e-12 inside the KL's log p_adv, 1.0000001 in the weight."""
        logits_clean = self.clean_logits(model, x)
        logits_adv = _wide(model(x_adv))
        p_adv = logits_adv.softmax(dim=1)
        wrong = p_adv.scatter(1, y[:, None], -1.0).argmax(dim=1)  # the most likely wrong class
        margin = -torch.log(1.0001 - p_adv.gather(1, wrong[:, None]).squeeze(1) + 1e-12)
        ce_adv = F.cross_entropy(logits_adv, y, label_smoothing=self.label_smoothing)
        loss_adv = ce_adv + margin.mean()
        log_p_clean = F.log_softmax(logits_clean, dim=1)
        p_true = log_p_clean.exp().gather(1, y[:, None]).squeeze(1)
        kl = _kl_per_sample(log_p_clean, torch.log(p_adv + 1e-12))
        loss_robust = (kl * (1.0000001 - p_true)).mean()
        loss = loss_adv + self.beta * loss_robust
        parts = {"loss": loss, "loss_adv": loss_adv, "loss_robust": loss_robust}
        return loss, _metrics(y, logits_clean, logits_adv, **parts)


OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (PGDAT, TRADES, MART, Standard)}


def objective_class(name: str) -> type[Objective]:
    """The objective class called `name` (pgd_at, trades, mart, standard; "-" for "_" too)."""
    key = str(name).lower().replace("-", "_")
    if key not in OBJECTIVES:
        raise ConfigError("objective.name", name, f"one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[key]


def check_settings(cls: type[Objective], settings: Mapping[str, object]) -> None:
    """ConfigError naming the first of `settings` that objective `cls` does not use."""
    known = sorted(f.name for f in dataclasses.fields(cls))
    for key, value in settings.items():
        if key not in known:
            raise ConfigError(
                f"objective.{key}", value, f"nothing: {cls.name} does not use {key} (remove it, "
                f"on the command line with ~objective.{key}; {cls.name}'s settings: {known})",
            )  # fmt: skip


def make_objective(name: str, **settings: object) -> Objective:
    """The objective `name` (pgd_at, trades, mart, standard) with keyword settings; a setting it
    does not use (beta for pgd_at) is an error naming it."""
    cls = objective_class(name)
    check_settings(cls, settings)
    return cls(**settings)


def _wide(logits: Tensor) -> Tensor:
    """Logits of a half-precision forward in float32 for the loss; float32 and float64 as they
    are (a float64 run stays float64 throughout)."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _kl_per_sample(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per sample, summed over classes, from log-probabilities."""
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(1)


def _metrics(y: Tensor, logits_clean: Tensor, logits_adv: Tensor, **losses: Tensor) -> Metrics:
    """Detached loss parts and clean / adversarial accuracy (fractions of the batch)."""
    metrics = {key: value.detach() for key, value in losses.items()}
    metrics["acc_clean"] = (logits_clean.argmax(1) == y).float().mean().detach()
    metrics["acc_adv"] = (logits_adv.argmax(1) == y).float().mean().detach()
    return metrics


def _check_non_negative(field: str, value: float) -> None:
    """A finite number >= 0: infinity would pass a plain `>= 0` test and poison the attack."""
    _check(math.isfinite(value) and value >= 0, field, value, "a finite number >= 0")


def _check(ok: bool, field: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"objective.{field}", value, expected)
