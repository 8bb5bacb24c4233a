"""A small classifier of sklearn's 8x8 digits, trained once per test session (about a second)."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from robustresnet.attacks import fgsm


@lru_cache(maxsize=1)
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as float images in [0, 1] (N, 1, 8, 8) and int64 labels."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).div_(16).unsqueeze(1)
    return images, torch.tensor(data.target, dtype=torch.int64)


def _train(model: nn.Module, steps: int = 150) -> nn.Module:
    """Full-batch Adam on the first 1400 digits, with FGSM (eps 0.1) examples after a warm-up."""
    images, labels = digits()
    x, y = images[:1400], labels[:1400]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        x_adv = fgsm(model, x, y, eps=0.1) if step >= 20 else x
        model.train()
        loss = F.cross_entropy(model(torch.cat([x, x_adv])), torch.cat([y, y]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@lru_cache(maxsize=1)
def trained_mlp() -> nn.Module:
    """An MLP 64-64-10 with some robustness at eps 0.1 (about 93% clean on the held-out digits)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        return _train(model)


def held_out(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out digits (index 1400 onwards), the first `n` of them."""
    images, labels = digits()
    return images[1400:][:n], labels[1400:][:n]
