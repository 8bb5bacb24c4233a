"""The baseline side, written the way the authors' code and tutorials do it: eager fp32 NCHW on
the network's definition, parameters frozen by a Python loop, every sample attacked."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


def trades_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    beta: float,
    generator: torch.Generator,
) -> float:
    """One TRADES training step as the authors' `trades_loss`: eval-mode attack from
    x + 0.001·N(0, 1), the clean softmax recomputed at every attack step; returns the loss."""
    model.eval()
    for param in model.parameters():
        param.requires_grad = False
    kl = nn.KLDivLoss(reduction="sum")
    noise = torch.randn(x.shape, generator=generator, device=x.device)
    x_adv = x.detach() + 0.001 * noise
    for _ in range(steps):
        x_adv.requires_grad_()
        loss = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        grad = torch.autograd.grad(loss, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    for param in model.parameters():
        param.requires_grad = True
    model.train()
    optimizer.zero_grad()
    logits = model(x)
    robust = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1)) / len(x)
    loss = F.cross_entropy(logits, y) + beta * robust
    loss.backward()
    optimizer.step()
    return loss.item()


def pgd_predictions(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float, steps: int
) -> torch.Tensor:
    """The straightforward PGD evaluation loop (no random start): `loss.backward()` with the
    parameters requiring gradients, every sample attacked; the adversarial predictions."""
    model.eval()
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        model.zero_grad()
        loss.backward()
        x_adv = x_adv.detach() + step_size * x_adv.grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    with torch.no_grad():
        return model(x_adv).argmax(1)


def autoattack_flags(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, targets: int
) -> torch.Tensor:
    """pyautoattack called directly, standard settings, APGD-CE then APGD-T on `targets` target
    classes; the per-sample robust flags."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, device=x.device, eps=eps, norm="Linf", seed=0, version="standard")
    adversary.attacks_to_run = ["apgd-ce", "apgd-t"]
    adversary.apgd_targeted.n_target_classes = targets
    adversary.logger.setLevel("ERROR")
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=len(x))
    return y_adv == y


class PerSampleCrop(Dataset):
    """torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor, written in
    torch and applied to one uint8 image at a time, as a DataLoader's workers run them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.pad(self.images[index], (4, 4, 4, 4))
        top = torch.randint(0, 9, size=(1,)).item()  # as RandomCrop.get_params draws them
        left = torch.randint(0, 9, size=(1,)).item()
        image = image[:, top : top + 32, left : left + 32]
        if torch.rand(1).item() < 0.5:
            image = image.flip(-1)
        return image.float().div(255.0), self.labels[index]
