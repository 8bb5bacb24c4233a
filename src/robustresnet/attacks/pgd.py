"""White-box attacks on images in [0, 1]: the one projected-gradient loop; FGSM, PGD, CW on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError

Norm = Literal["inf", "2"]
Start = Literal["uniform", "normal", "none"]
LossName = Literal["ce", "cw"]
LossFn = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def untracked_running_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Inside, no BatchNorm layer updates its running statistics (a train-mode one normalises by
    each batch); every flag restored after."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    try:
        for m in norms:
            m.track_running_stats = False
        yield model
    finally:
        for m in norms:
            m.track_running_stats = True


@contextmanager
def frozen(model: nn.Module, *, batch_stats: bool = False) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside; every module's mode and flag restored after.

    With `batch_stats`, BatchNorm layers run in train mode without updating their running
    statistics: every forward normalises by its own batch (the advanced recipe's attack)."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        model.eval()
        for param, _ in flags:
            param.requires_grad_(False)
        with untracked_running_stats(model) if batch_stats else nullcontext():
            for m in model.modules():
                if batch_stats and isinstance(m, _BatchNorm):
                    m.train()
            yield model
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
        for module, training in modes:
            module.training = training


def attack_model(model: nn.Module, *, fuse: bool = True) -> nn.Module:
    """The module attacks run: with `fuse`, `model.fused()` (a fused eval-mode copy of the current
    weights, `robustresnet.fuse`) when the model offers one, else the model itself. A compiled
    model runs as compiled (the compiler fuses on its own)."""
    fused = getattr(model, "fused", None)
    if not fuse or not callable(fused) or hasattr(model, "_orig_mod"):  # torch.compile's wrapper
        return model
    return fused()


def cross_entropy_loss(y: torch.Tensor) -> LossFn:
    """Per-sample cross-entropy of the logits against `y` (to maximise)."""
    return lambda logits: F.cross_entropy(logits, y, reduction="none")


def margin_loss(y: torch.Tensor) -> LossFn:
    """Per-sample CW margin max_{j != y} z_j - z_y (positive once misclassified)."""
    index = y[:, None]

    def loss(logits: torch.Tensor) -> torch.Tensor:
        true = logits.gather(1, index).squeeze(1)
        other = logits.scatter(1, index, float("-inf")).amax(dim=1)
        return other - true

    return loss


def memory_format_of(model: nn.Module) -> torch.memory_format:
    """channels_last when the model's first unambiguous 4-D weight is stored that way."""
    for param in model.parameters():
        if param.dim() != 4:
            continue
        nchw = param.is_contiguous()
        nhwc = param.is_contiguous(memory_format=torch.channels_last)
        if nchw != nhwc:
            return torch.channels_last if nhwc else torch.contiguous_format
    return torch.contiguous_format


def _check(eps: float, step_size: float, steps: int, norm: str, start: str) -> None:
    if norm not in ("inf", "2"):
        raise ConfigError("norm", norm, '"inf" or "2"')
    if start not in ("uniform", "normal", "none"):
        raise ConfigError("start", start, '"uniform", "normal" or "none"')
    if not eps >= 0 or (norm == "inf" and eps > 1):
        raise ConfigError("eps", eps, "a radius >= 0 in [0, 1] image units (e.g. 8/255)")
    if not step_size >= 0:
        raise ConfigError("step_size", step_size, "a number >= 0")
    if not isinstance(steps, int) or steps < 0:
        raise ConfigError("steps", steps, "an integer >= 0")


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample, shaped to broadcast over the image dimensions."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def random_start(
    like: torch.Tensor,
    *,
    eps: float,
    norm: Norm = "inf",
    start: Start = "uniform",
    std: float = 0.001,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A start displacement shaped and typed like `like`, drawn on `generator`'s device: zero
    (none), std * N(0, 1) (normal), or uniform in the eps-ball (L2: uniform radius)."""
    device = generator.device if generator is not None else like.device
    noise = torch.zeros_like(like, device=device)  # like's memory format: the draw's order
    if start == "normal":
        noise.normal_(0.0, std, generator=generator)
    elif start == "uniform" and norm == "inf":
        noise.uniform_(-eps, eps, generator=generator)
    elif start == "uniform":
        noise.normal_(generator=generator)
        radius = torch.rand(len(like), device=device, generator=generator, dtype=like.dtype)
        scale = radius.mul_(eps).view(-1, *([1] * (like.dim() - 1)))
        noise.mul_(scale / _per_sample_norm(noise).clamp_min(1e-12))
    return noise.to(like.device)


def _project_(x_adv: torch.Tensor, x: torch.Tensor, eps: float, lower, upper) -> None:
    """In place: onto the ball around x (L∞: bounds `lower`/`upper`; L2 when None), then [0, 1]."""
    if lower is not None:
        x_adv.clamp_(min=lower, max=upper)
        return
    delta = x_adv.sub_(x)
    delta.mul_((eps / _per_sample_norm(delta).clamp_min(1e-12)).clamp_(max=1.0))
    delta.add_(x).clamp_(0.0, 1.0)


def perturb(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: LossFn,
    /,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: Norm = "inf",
    start: Start = "uniform",
    start_std: float = 0.001,
    clamp_start: bool = True,
    start_noise: torch.Tensor | None = None,
    batch_stats: bool = False,
    generator: torch.Generator | None = None,
    fuse: bool = True,
) -> torch.Tensor:
    """Maximise the per-sample `loss_fn(model(x_adv))` by projected gradient ascent; returns x_adv.

    L∞ takes sign steps, L2 normalised-gradient steps; every iterate after a step lies in the
    eps-ball and in [0, 1]. The start is x plus a displacement (`start`, or `start_noise` given
    exactly, e.g. another code's draw), clamped to [0, 1] with `clamp_start`; without it the first
    gradient is taken at the displaced point as drawn (the authors' baseline losses and
    evaluation attacks). With no steps the start itself, projected, is returned.

    The model is frozen (eval mode, no parameter gradients) throughout; with `batch_stats` its
    BatchNorm layers normalise by each forward's batch (`frozen`). With `fuse` the steps run its
    fused copy (`attack_model`, not with `batch_stats`), the same function in fewer kernels.
    """
    _check(eps, step_size, steps, norm, start)
    model = attack_model(model, fuse=fuse and not batch_stats)
    x = x.detach().contiguous(memory_format=memory_format_of(model))
    # L∞ ball ∩ box is itself a box: computed once, one clamp per step.
    lower = (x - eps).clamp_(min=0.0) if norm == "inf" else None
    upper = (x + eps).clamp_(max=1.0) if norm == "inf" else None
    with frozen(model, batch_stats=batch_stats), torch.enable_grad():
        if start_noise is None:
            start_noise = random_start(
                x, eps=eps, norm=norm, start=start, std=start_std, generator=generator
            )
        elif start_noise.shape != x.shape:
            shape = tuple(start_noise.shape)
            raise ConfigError("start_noise", shape, f"the shape of x, {tuple(x.shape)}")
        x_adv = x + start_noise.to(x.device)
        if clamp_start:
            x_adv.clamp_(0.0, 1.0)
        if steps == 0:
            _project_(x_adv, x, eps, lower, upper)
        x_adv.requires_grad_(True)
        for _ in range(steps):
            loss = loss_fn(model(x_adv)).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                if norm == "inf":
                    x_adv.add_(grad.sign_(), alpha=step_size)
                else:
                    x_adv.add_(grad.div_(_per_sample_norm(grad).clamp_min_(1e-12)), alpha=step_size)
                _project_(x_adv, x, eps, lower, upper)
    return x_adv.detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    /,
    *,
    eps: float,
    step_size: float,
    steps: int,
    loss: LossName = "ce",
    norm: Norm = "inf",
    random_start: bool = True,
    start_noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    fuse: bool = True,
) -> torch.Tensor:
    """PGD on cross-entropy (`loss="ce"`) or on the CW margin (`loss="cw"`, CW-inf / CW-L2);
    `start_noise` gives the random start itself (evaluation draws it per sample)."""
    losses = {"ce": cross_entropy_loss, "cw": margin_loss}
    if loss not in losses:
        raise ConfigError("loss", loss, '"ce" or "cw"')
    return perturb(
        model,
        x,
        losses[loss](y),
        eps=eps,
        step_size=step_size,
        steps=steps,
        norm=norm,
        start="uniform" if random_start else "none",
        start_noise=start_noise,
        generator=generator,
        fuse=fuse,
    )


def fgsm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, /, *, eps: float, fuse: bool = True
) -> torch.Tensor:
    """FGSM: one L∞ sign step of size eps on cross-entropy, no random start."""
    loss = cross_entropy_loss(y)
    return perturb(model, x, loss, eps=eps, step_size=eps, steps=1, start="none", fuse=fuse)


def predict(model: nn.Module, x: torch.Tensor, /, *, batch_size: int = 500) -> torch.Tensor:
    """Logits of `x` in batches, model frozen, no autograd graph."""
    if len(x) == 0:
        raise ConfigError("x", "an empty batch", "at least one image")
    with frozen(model), torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
