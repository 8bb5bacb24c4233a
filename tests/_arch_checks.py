"""Checks shared by the model-layer tests."""

from __future__ import annotations

import torch

from robustresnet.arch.blocks import RobustResBlock


def unused_parameters(model: torch.nn.Module) -> set[str]:
    """bn1 of a RobustResBlock without projection: the reference computes it but never uses it."""
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, RobustResBlock) and module.shortcut is None:
            names |= {f"{name}.bn1.{p}" for p, _ in module.bn1.named_parameters()}
    return names


def check_trains(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward + backward; the logits are finite and every used parameter gets a gradient."""
    logits = model(x)
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()}
    assert no_grad == unused_parameters(model)
    return logits


def randomise_batchnorms(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give every BatchNorm2d non-trivial affine parameters and running statistics (in place)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                if m.affine:
                    m.weight.uniform_(0.5, 1.5, generator=generator)
                    m.bias.normal_(0.0, 0.2, generator=generator)
                if m.running_mean is not None:
                    m.running_mean.normal_(0.0, 0.2, generator=generator)
                    m.running_var.uniform_(0.5, 1.5, generator=generator)
    return module
