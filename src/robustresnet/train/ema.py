"""Exponential moving average of the weights with the advanced recipe's warm-up decay."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


def ema_decay(update: int, tau: float, warmup: int = 0) -> float:
    """Decay of update number `update` (from 1), the authors' advanced trainer's: 0 (a plain
    copy) before update `warmup`, then min(tau, (1 + d) / (10 + d)) with d = update - warmup."""
    if update < warmup:
        return 0.0
    delta = update - warmup
    return min(tau, (1.0 + delta) / (10.0 + delta))


class ModelEMA:
    """An averaged deep copy of a model; `.module` is used for evaluation and the EMA checkpoint.

    Parameters are averaged with `ema_decay` (a plain copy for the first `warmup` updates).
    Buffers (BatchNorm running statistics) are copied from the live model by default, as the
    authors' advanced trainer does from its first epoch on; with
    `average_buffers=True` floating buffers are averaged like the parameters. Integer buffers
    (`num_batches_tracked`) are always copied.
    """

    def __init__(
        self, model: nn.Module, tau: float, *, warmup: int = 0, average_buffers: bool = False
    ) -> None:
        if not 0.0 <= tau <= 1.0:
            raise ConfigError("ema.tau", tau, "a number in [0, 1]")
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.tau = float(tau)
        self.warmup = int(warmup)
        self.average_buffers = average_buffers
        self.step = 0  # updates done

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the live model's current weights into the average (call after optimizer.step)."""
        decay = ema_decay(self.step + 1, self.tau, self.warmup)
        for avg, live in zip(self.module.parameters(), model.parameters(), strict=True):
            avg.lerp_(live.detach(), 1.0 - decay)
        for avg, live in zip(self.module.buffers(), model.buffers(), strict=True):
            if self.average_buffers and avg.is_floating_point():
                avg.lerp_(live, 1.0 - decay)
            else:
                avg.copy_(live)
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged module's tensors plus the update count and tau (for exact resume)."""
        return {"module": self.module.state_dict(), "step": self.step, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.module.load_state_dict(state["module"])
        self.step = int(state["step"])
        self.tau = float(state["tau"])
