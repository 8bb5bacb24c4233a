"""Build the pieces of a run from its config: data, network, objective, optimizer, EMA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..arch import ArchSpec, build_model
from ..arch.zoo import apply_overrides, resolve_spec
from ..data import DeviceLoader, holdout, load_dataset, load_extra
from ..errors import ConfigError
from .config import ExperimentConfig, ModelConfig
from .distributed import World
from .ema import ModelEMA
from .optim import build_optimizer


@dataclass
class Data:
    """Training loader and the held-out validation and test tensors (uint8 at rest)."""

    loader: Any
    val: Any | None
    test: Any
    num_classes: int


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def build_data(config: ExperimentConfig, world: World, device: torch.device) -> Data:
    """Datasets, the validation hold-out and the sharded training loader."""
    cfg, run = config.data, config.run
    root = None if cfg.root is None else Path(cfg.root).expanduser()
    read = {"root": root, "download": cfg.download, **cfg.options}
    train_set = load_dataset(cfg.name, split="train", **read)
    test_set = load_dataset(cfg.name, split="test", **read)
    val_set = None
    if cfg.val_size > 0:
        if cfg.val_size >= len(train_set.labels):
            raise ConfigError("data.val_size", cfg.val_size, f"< {len(train_set.labels)} images")
        train_set, val_set = holdout(train_set, cfg.val_size)
    extra = load_extra(Path(cfg.extra).expanduser()) if cfg.extra else None
    if run.batch_size % world.world_size:
        expected = f"a multiple of the {world.world_size} ranks"
        raise ConfigError("run.batch_size", run.batch_size, expected)
    loader = DeviceLoader(
        train_set.images,
        train_set.labels,
        batch_size=run.batch_size // world.world_size,  # per rank
        train=True,
        seed=run.seed,
        device=device,
        crop_padding=cfg.crop_padding,
        flip=cfg.flip,
        rotation=cfg.rotation,
        rotation_mode=cfg.rotation_mode,
        epoch_images=cfg.epoch_images,
        extra=extra,
        extra_fraction=cfg.extra_fraction,
        rank=world.rank,
        world_size=world.world_size,
    )
    return Data(loader, val_set, test_set, len(train_set.classes))


def resolve_model_spec(cfg: ModelConfig, num_classes: int | None = None) -> ArchSpec:
    """The `model` section's ArchSpec with its overrides; a preset named without
    `model.num_classes` takes `num_classes` (the dataset's) when given."""
    if cfg.name is not None:
        spec = resolve_spec(cfg.name)
        if num_classes is not None and cfg.num_classes is None and not Path(cfg.name).exists():
            spec = spec.replace(num_classes=num_classes)  # a preset takes the dataset's classes
    elif cfg.spec is not None:
        spec = ArchSpec.from_dict(cfg.spec)
    else:
        spec = ArchSpec.from_reference(cfg.reference)
    return apply_overrides(
        spec, num_classes=cfg.num_classes, activation=cfg.activation, mean=cfg.mean, std=cfg.std
    )


def build_spec(cfg: ModelConfig, num_classes: int, image_shape: tuple[int, ...]) -> ArchSpec:
    """The network's ArchSpec, checked against the dataset's classes and image shape."""
    spec = resolve_model_spec(cfg, num_classes)
    if spec.num_classes != num_classes:
        raise ConfigError(
            "model.num_classes",
            spec.num_classes,
            f"{num_classes}, the number of classes of the dataset (set model.num_classes)",
        )
    if spec.in_channels != image_shape[0]:
        raise ConfigError("model.in_channels", spec.in_channels, f"{image_shape[0]} (the data's)")
    return spec


def build_model_on(spec: ArchSpec, config: ExperimentConfig, device: torch.device) -> nn.Module:
    """The network on `device`, SyncBatchNorm and channels_last as configured."""
    model = build_model(spec, device=device)
    if config.model.sync_bn:
        if device.type == "cpu":
            raise ConfigError("model.sync_bn", True, "false on CPU (SyncBatchNorm needs GPUs)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if config.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optim(model: nn.Module, config: ExperimentConfig) -> torch.optim.Optimizer:
    """SGD as configured (a cycled momentum starts high; the trainer sets it every step)."""
    cfg = config.optim
    momentum = cfg.momentum
    return build_optimizer(
        model,
        lr=cfg.lr,
        momentum=max(momentum) if isinstance(momentum, tuple) else momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        no_decay=cfg.no_decay,
    )


def build_ema(model: nn.Module, config: ExperimentConfig, steps_per_epoch: int) -> ModelEMA | None:
    """The weight average, or None when ema.tau is off."""
    cfg = config.ema
    if cfg.tau is None:
        return None
    return ModelEMA(model, cfg.tau, warmup=round(cfg.warmup_epochs * steps_per_epoch))


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """The running-statistics momentum of every BatchNorm layer."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum
