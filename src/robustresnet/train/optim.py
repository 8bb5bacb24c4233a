"""SGD with optional weight-decay exclusions, and learning-rate schedules as pure functions.

Schedules (`lr_at`), with T = total_steps and W = warmup_steps:
- "step": base_lr * gamma**k after k milestones, milestone m at step round(m * T) (the paper:
  x0.1 from 75% and x0.01 from 90% of training); linear warm-up base_lr * (s + 1) / W if W > 0.
- "cosine": the same linear warm-up, then final_lr + (base_lr - final_lr) * (1 + cos(pi p)) / 2,
  p = (s - W) / (T - W).
- "onecycle": `torch.optim.lr_scheduler.OneCycleLR` with cosine annealing (the advanced recipe's
  one-cycle): cosine rise from base_lr / div_factor to base_lr over steps 0..W-1, then cosine
  fall to base_lr / (div_factor * final_div_factor) at step T-1. `momentum_at` cycles momentum
  the opposite way, as OneCycleLR does: high to low while the rate rises, back while it falls.
A "step" is whatever the caller counts: optimizer steps, or epochs for a per-epoch schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError

SCHEDULES = ("step", "cosine", "onecycle")
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def no_weight_decay_parameters(model: nn.Module, rule: str) -> list[nn.Parameter]:
    """The parameters that `rule` exempts from weight decay, each once.

    "norm_and_bias": every normalisation parameter and every bias. "norm": every normalisation
    parameter, biases of other layers decayed (the Rebuffi et al. lineage, e.g. Wang et al. 2023,
    whose `group_weight` exempts the names holding "batchnorm", which are all of its BatchNorms).
    "bn_in_name": parameters whose name contains "bn" or "batchnorm", the authors' advanced
    trainer (so the head's `norm1` and the classifier's bias are decayed). "none": nothing."""
    if rule == "bn_in_name":
        return [p for n, p in model.named_parameters() if "bn" in n or "batchnorm" in n]
    if rule == "none":
        return []
    if rule not in ("norm_and_bias", "norm"):
        raise ConfigError("optim.no_decay", rule, "none, norm, norm_and_bias or bn_in_name")
    chosen: dict[int, nn.Parameter] = {}
    for module in model.modules():
        is_norm = isinstance(module, _NORMS) or type(module).__name__ == "RMSNorm"
        for name, param in module.named_parameters(recurse=False):
            if is_norm or (name == "bias" and rule == "norm_and_bias"):
                chosen[id(param)] = param
    return list(chosen.values())


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float,
    no_decay: str = "none",
) -> torch.optim.SGD:
    """SGD over the trainable parameters; those `no_decay` names get no weight decay."""
    if nesterov and momentum <= 0:
        raise ConfigError("optim.nesterov", nesterov, "momentum > 0 (Nesterov needs momentum)")
    for field, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if value < 0:
            raise ConfigError(f"optim.{field}", value, "a number >= 0")
    trainable = [p for p in model.parameters() if p.requires_grad]
    excluded = {id(p) for p in no_weight_decay_parameters(model, no_decay)}
    groups = [
        {"params": [p for p in trainable if id(p) not in excluded], "weight_decay": weight_decay},
        {"params": [p for p in trainable if id(p) in excluded], "weight_decay": 0.0},
    ]
    groups = [group for group in groups if group["params"]]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, momentum: float | None = None) -> None:
    """Set the learning rate (and momentum, when given) of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if momentum is not None:
            group["momentum"] = momentum


def lr_at(
    step: int,
    *,
    total_steps: int,
    base_lr: float,
    schedule: str = "step",
    warmup_steps: int = 0,
    milestones: tuple[float, ...] = (0.75, 0.9),
    gamma: float = 0.1,
    final_lr: float = 0.0,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """Learning rate of optimizer step `step` (from 0); see the module docstring for shapes."""
    if schedule not in SCHEDULES:
        raise ConfigError("optim.schedule", schedule, f"one of {list(SCHEDULES)}")
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ConfigError("optim.warmup_steps", warmup_steps, f"in [0, total_steps={total_steps}]")
    step = min(max(int(step), 0), total_steps - 1)
    if schedule == "onecycle":
        return _one_cycle(step, total_steps, base_lr, warmup_steps, div_factor, final_div_factor)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "step":
        passed = sum(step >= round(m * total_steps) for m in milestones)
        return base_lr * gamma**passed
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def momentum_at(
    step: int, *, total_steps: int, warmup_steps: int, momentum: float | tuple[float, ...]
) -> float:
    """Momentum of step `step`: a number as it is; (low, high) cycled as OneCycleLR does it."""
    if not isinstance(momentum, tuple):
        return momentum
    low, high = momentum
    phase, progress = _one_cycle_phase(step, total_steps, warmup_steps)
    return _cos_between(high, low, progress) if phase == 0 else _cos_between(low, high, progress)


def _one_cycle(
    step: int, total: int, base_lr: float, warmup: int, div_factor: float, final_div: float
) -> float:
    """OneCycleLR's learning rate (cos, two phases)."""
    initial = base_lr / div_factor
    phase, progress = _one_cycle_phase(step, total, warmup)
    if phase == 0:
        return _cos_between(initial, base_lr, progress)
    return _cos_between(base_lr, initial / final_div, progress)


def _one_cycle_phase(step: int, total: int, warmup: int) -> tuple[int, float]:
    """(0 rising or 1 falling, progress in [0, 1]) with the boundary at step warmup - 1."""
    step = min(max(int(step), 0), total - 1)
    peak_step = max(warmup - 1, 0)
    if step <= peak_step:
        return 0, step / peak_step if peak_step else 1.0
    return 1, (step - peak_step) / max(1, total - 1 - peak_step)


def _cos_between(start: float, end: float, progress: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
