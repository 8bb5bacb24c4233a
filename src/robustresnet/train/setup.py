"""Build the pieces of a run from its config: data, network, objective, optimizer, EMA."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._units import format_count
from ..arch import ArchSpec, build_model
from ..arch.profile import profile
from ..data import (
    DeviceLoader,
    ImageDataset,
    StreamedExtra,
    holdout,
    load_dataset,
    load_extra,
    open_extra,
)
from ..errors import ConfigError
from .config import ExperimentConfig, ModelConfig, check_device_name
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


def pick_device(name: str, local_rank: int = 0, *, field: str = "run.device") -> torch.device:
    """`auto`: this rank's GPU when CUDA is available, else the CPU. A device this machine does
    not have (cuda without a GPU, cuda:3 of two) is a ConfigError naming `field`."""
    check_device_name(name, field)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:  # torch asserts when built without CUDA
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(field, name, f"a device this machine has ({reason})") from None
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
    extra = open_training_extra(cfg.extra, train_set, run.seed) if cfg.extra else None
    if run.batch_size % world.world_size:
        expected = f"a multiple of the {world.world_size} ranks"
        raise ConfigError("run.batch_size", run.batch_size, expected)
    if run.batch_size > len(train_set.labels):  # an epoch would have no full batch
        expected = f"at most {len(train_set.labels)}, the training images (after data.val_size)"
        raise ConfigError("run.batch_size", run.batch_size, expected)
    side = train_set.images.shape[-1]
    if cfg.crop_padding > side:
        raise ConfigError("data.crop_padding", cfg.crop_padding, f"at most {side}, the image side")
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


def open_training_extra(
    path: str, train_set: ImageDataset, seed: int = 0
) -> StreamedExtra | ImageDataset:
    """`data.extra`: Carmon's pickle read into memory (it cannot be mapped); an .npz, a folder of
    .npz shards or of image.npy + label.npy streamed from disk, checked against the dataset's
    classes and image size before training starts."""
    path = Path(path).expanduser()
    num_classes = len(train_set.classes)
    if path.suffix in (".pickle", ".pkl"):
        return load_extra(path, num_classes=num_classes)
    image_shape = tuple(train_set.images.shape[1:])
    return open_extra(path, num_classes=num_classes, image_shape=image_shape, seed=seed)


def build_spec(cfg: ModelConfig, num_classes: int, image_shape: tuple[int, ...]) -> ArchSpec:
    """The network's ArchSpec, checked against the dataset's classes and image shape."""
    spec = cfg.arch_spec(num_classes)
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
    check_fits(spec, device)
    model = build_model(spec, device=device)
    if config.model.sync_bn:
        if device.type == "cpu":
            raise ConfigError("model.sync_bn", True, "false on CPU (SyncBatchNorm needs GPUs)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if config.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def check_fits(spec: ArchSpec, device: torch.device, field: str = "model") -> None:
    """ConfigError when the network's float32 weights alone exceed the device's memory: counted
    (exactly, without building it) before anything is allocated."""
    params = profile(spec).params
    memory = device_memory(device)
    if memory is not None and 4 * params > memory:
        raise ConfigError(
            field, f"a network of {format_count(params)} parameters",
            f"one whose weights fit in the {format_count(memory)}B of memory of {device}",
        )  # fmt: skip


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory of `device` (the machine's RAM for the CPU); None when unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return None
    return None


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
