"""Adapter over the authors' AutoAttack (`pyautoattack`): standard or custom attack lists, seeded,
per-attack robust accuracy and per-sample robust flags."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from .pgd import frozen, predict

AttackName = Literal["apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square"]
ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
# The authors' standard version, in its order.
STANDARD: tuple[str, ...] = ("apgd-ce", "apgd-t", "fab-t", "square")
_COUNT = re.compile(r"\d+")
_NORMS = {"inf": "Linf", "2": "L2", "1": "L1"}


@dataclass(frozen=True)
class AutoAttackResult:
    """Robust flags after each attack of the cascade (cumulative) and the final flags."""

    flags: torch.Tensor
    flags_after: dict[str, torch.Tensor]
    warnings: tuple[str, ...] = ()

    def accuracy(self) -> dict[str, float]:
        """Robust accuracy after each attack, in order (cumulative, as AutoAttack reports it)."""
        n = max(self.flags.numel(), 1)
        return {name: f.sum().item() / n for name, f in self.flags_after.items()}


class _Collect(logging.Handler):
    """Keeps the warnings pyautoattack logs (zero gradients, randomised defence, ...)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class _ContiguousGradient(torch.autograd.Function):
    """Identity whose backward returns an NCHW-contiguous gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class _NCHWInput(nn.Module):
    """The model with NCHW input gradients: pyautoattack `.view()`s them (channels_last fails)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_ContiguousGradient.apply(x))


def parse_attacks(attacks: str | Sequence[str] = "standard") -> tuple[str, ...]:
    """The names in `"standard"` or in a comma- or plus-separated list ("apgd-ce,apgd-t")."""
    if isinstance(attacks, str):
        if attacks == "standard":
            return STANDARD
        attacks = attacks.replace("+", ",").split(",")
    names = tuple(a.strip().lower() for a in attacks if a.strip())
    bad = [a for a in names if a not in ATTACKS]
    if bad or not names:
        raise ConfigError("autoattack.attacks", bad or attacks, f"'standard' or some of {ATTACKS}")
    return names


def _autoattack(model: nn.Module, name: str, *, eps, norm, seed, num_classes, device):
    """pyautoattack's standard-version object that runs the single attack `name`."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(
        model, device=device, eps=eps, norm=_NORMS[norm], seed=seed, version="standard"
    )
    # Standard settings (APGD 1 restart, 9 targets, Square 5000 queries), one attack of the list.
    adversary.attacks_to_run = [name]
    targets = min(9, num_classes - 1)
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = targets
    return adversary


def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    /,
    *,
    eps: float,
    norm: Literal["inf", "2", "1"] = "inf",
    attacks: str | Sequence[str] = "standard",
    seed: int = 0,
    batch_size: int = 500,
    verbose: bool = False,
) -> AutoAttackResult:
    """Run AutoAttack on (x, y) as a cascade: each attack only on samples still robust.

    Quiet unless `verbose` (its logged warnings are returned); the model is frozen throughout;
    torch's global RNG, which pyautoattack reseeds, is restored afterwards.
    """
    names = parse_attacks(attacks)
    if norm not in _NORMS:
        raise ConfigError("norm", norm, '"inf", "2" or "1"')
    logger = logging.getLogger("auto-attack")
    level, propagate, collect = logger.level, logger.propagate, _Collect()
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = verbose
    logger.addHandler(collect)
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with frozen(model), torch.random.fork_rng(devices=devices):
            x = x.detach().contiguous()
            logits = predict(model, x, batch_size=batch_size)
            flags = logits.argmax(1) == y
            flags_after: dict[str, torch.Tensor] = {}
            for name in names:
                idx = flags.nonzero().squeeze(1)
                if idx.numel():
                    adversary = _autoattack(
                        _NCHWInput(model),
                        name,
                        eps=eps,
                        norm=norm,
                        seed=seed,
                        num_classes=logits.shape[1],
                        device=x.device,
                    )
                    _, y_adv = adversary.run_standard_evaluation(
                        x[idx], y[idx], batch_size=batch_size
                    )
                    flags = flags.clone()
                    flags[idx] = y_adv == y[idx]
                flags_after[name] = flags
    finally:
        logger.setLevel(level)
        logger.propagate = propagate
        logger.removeHandler(collect)
    # One line per kind of warning: per-batch counts become N.
    messages = tuple(dict.fromkeys("AutoAttack: " + _COUNT.sub("N", m) for m in collect.messages))
    return AutoAttackResult(flags=flags, flags_after=flags_after, warnings=messages)
