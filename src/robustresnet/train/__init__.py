"""Adversarial training: objectives, optimizer and schedules, EMA, configs, the trainer."""

from .config import ExperimentConfig, load_config
from .trainer import train

__all__ = ["ExperimentConfig", "load_config", "train"]
