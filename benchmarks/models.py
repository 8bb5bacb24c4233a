"""The networks the benchmark times: named sizes, random weights with realistic BatchNorm
statistics, the fixed model AutoAttack runs its whole budget on, and their FLOPs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from robustresnet import ArchSpec, StageSpec, build_model, get_spec
from robustresnet.attacks import predict

# size: a zoo preset, or (depths, widening) of a RobustResBlock network (the old "tiny")
SIZES: dict[str, str | tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ((2, 2, 1), (2, 2, 1)),
    "A1": "robustresnet-a1",
    "A4": "robustresnet-a4",
    "wrn-a4": "wrn-a4",
}
# CIFAR-sized images, floats in [0, 1]
IMAGE = (3, 32, 32)
MARGIN = 20.0  # logits: class 0 leads by this much more than anything seen on clean inputs


def spec_of(size: str) -> ArchSpec:
    """The architecture of a named size."""
    entry = SIZES[size]
    if isinstance(entry, str):
        return get_spec(entry)
    depths, widening = entry
    stages = tuple(
        StageSpec(depth=d, widening=w, stride=1 if i == 0 else 2, block="robust_res_block")
        for i, (d, w) in enumerate(zip(depths, widening, strict=True))
    )
    return ArchSpec(stages=stages, name=size)


def random_batch(
    n: int, device: torch.device, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` uniform random images in [0, 1] and labels of 10 classes, drawn on the CPU (the same
    on any device)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *IMAGE, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return x.to(device), y.to(device)


def build(
    size: str, device: torch.device, *, classes: int = 10, calibrate_on: int = 16
) -> nn.Module:
    """The size's network with seeded random weights, BatchNorm statistics measured on random
    images (so eval mode and the fused copy normalise as a trained network's would)."""
    torch.manual_seed(0)
    model = build_model(spec_of(size).replace(num_classes=classes), device=device)
    norms = {m: m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one batch gives its statistics
    with torch.no_grad():
        model.train()(random_batch(calibrate_on, device, seed=1)[0])
    for norm, momentum in norms.items():
        norm.momentum = momentum
    return model.eval()


@torch.no_grad()
def make_robust(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Raise the head's bias of class 0 to MARGIN past the largest lead of another class on `x`,
    far more than an 8/255 perturbation moves these logits (each run's check shows every sample
    robust): an attack cascade then runs its whole budget. Returns the labels (all 0)."""
    logits = predict(model, x)
    lead = (logits[:, 1:].amax(dim=1) - logits[:, 0]).amax()
    model.fc.bias[0] += lead + MARGIN
    return torch.zeros(len(x), dtype=torch.long, device=x.device)


@dataclass(frozen=True)
class PassFlops:
    """FLOPs of one image (convolutions and matrix products): an inference forward, an attack
    step (forward and input gradient) and a training forward and backward."""

    forward: float
    attack: float
    train: float


def pass_flops(size: str) -> PassFlops:
    """Counted by FlopCounterMode on the meta device: no memory, no time."""
    model = build_model(spec_of(size), device="meta").eval()
    x = torch.empty(1, *IMAGE, device="meta")
    y = torch.zeros(1, dtype=torch.long, device="meta")
    with torch.no_grad():
        forward = _count(lambda: model(x))
    model.requires_grad_(False)
    x_in = x.clone().requires_grad_()
    # `.backward(inputs=...)`: FlopCounterMode cannot follow `torch.autograd.grad`
    attack = _count(lambda: model(x_in).sum().backward(inputs=[x_in]))
    model.requires_grad_(True).train()
    train = _count(lambda: F.cross_entropy(model(x), y).backward())
    return PassFlops(forward, attack, train)


def _count(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())
