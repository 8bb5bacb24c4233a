"""What a run costs on a device, from a measured training speed.

A run's work is counted in image passes (one image's forward and backward pass through its
network): training, epochs x images per epoch x (the objective's attack steps + 2: the clean and
the adversarial loss term, 12 for TRADES-10); validation, the held-out images x (attack steps +
two forwards) at every validated epoch; the final evaluation, the test images (or the configured
sample) x each attack's steps + a forward, and AutoAttack at its full budget for every image
(100 APGD-CE iterations, 9 x 100 APGD-T, 9 x 100 FAB-T, 5,000 Square queries as forwards): an
upper bound, since the cascade only attacks images still robust. A forward alone counts as a
third of a pass. Seconds = passes x the seconds of a pass at the run's MACs (`Throughput`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..attacks.spec import AttackSpec
from ..data.datasets import SPLIT_SIZES
from ..errors import ConfigError
from ..train.config import ExperimentConfig
from ..train.final import final_evaluations
from .throughput import Throughput

FORWARD = 1 / 3  # a forward alone, in passes
TARGETS = 9  # AutoAttack's standard target classes (APGD-T, FAB-T)
AUTOATTACK_PASSES = {
    "apgd-ce": 100,
    "apgd-dlr": 100,
    "apgd-t": TARGETS * 100,
    "fab": 100,
    "fab-t": TARGETS * 100,
    "square": 5000 * FORWARD,
}


@dataclass(frozen=True)
class RunCost:
    """Image passes of training, validation and the final evaluation, and the device seconds."""

    train_passes: float
    validation_passes: float
    evaluation_passes: float
    seconds: float

    @property
    def passes(self) -> float:
        return self.train_passes + self.validation_passes + self.evaluation_passes


def run_cost(config: ExperimentConfig, macs: int, throughput: Throughput) -> RunCost:
    """The cost of training and evaluating `config`'s run, whose network has `macs` MACs."""
    data, schedule, evaluation = config.data, config.schedule, config.eval
    if data.name not in SPLIT_SIZES:
        raise ConfigError("data.name", data.name, f"a dataset of known size {list(SPLIT_SIZES)}")
    train_size, test_size = SPLIT_SIZES[data.name]
    per_epoch = data.epoch_images or max(0, train_size - data.val_size)
    steps = getattr(config.objective, "steps", 0)
    train = schedule.epochs * per_epoch * (steps + 2)
    validated = sum(
        epoch % evaluation.every == 0 or epoch == schedule.epochs
        for epoch in range(1, schedule.epochs + 1)
    )
    validation = validated * data.val_size * (evaluation.val_steps + 2 * FORWARD)
    final = sum(
        min(samples or test_size, test_size) * sum(attack_passes(a) for a in attacks)
        for _, attacks, samples in final_evaluations(config)
    )
    seconds = (train + validation + final) * throughput.seconds_per_pass(macs)
    return RunCost(train, validation, final, seconds)


def attack_passes(attack: AttackSpec) -> float:
    """Image passes of one attack on one image, its final forward included."""
    if attack.kind == "clean":
        return FORWARD
    if attack.kind == "aa":
        return sum(AUTOATTACK_PASSES[name] for name in attack.autoattack) + FORWARD
    return max(attack.steps, 1) + FORWARD  # FGSM: one step
