"""White-box attacks (the one projected-gradient loop, FGSM, PGD, CW) and the AutoAttack adapter."""

from .autoattack import AutoAttackResult, autoattack
from .pgd import (
    attack_model,
    cross_entropy_loss,
    fgsm,
    frozen,
    margin_loss,
    perturb,
    pgd,
    predict,
)

__all__ = [
    "AutoAttackResult",
    "attack_model",
    "autoattack",
    "cross_entropy_loss",
    "fgsm",
    "frozen",
    "margin_loss",
    "perturb",
    "pgd",
    "predict",
]
