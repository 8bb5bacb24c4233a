"""The loader passes: augmented training batches on the device. loader: DeviceLoader (the dataset
on the device, crop and flip as batched tensor ops) against a DataLoader running per-sample
transforms in worker processes; both get the same number of CPU workers. stream: DeviceLoader
mixing extra images streamed from an .npz on disk against the same file read into memory."""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from robustresnet.data import DeviceLoader, load_extra, open_extra

from .baselines import PerSampleCrop
from .models import IMAGE
from .passes import Comparison

DATASET = 50_000  # CIFAR-10's training split
EXTRA_FRACTION = 0.7  # the advanced recipe's share of extra images


def random_dataset(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """DATASET random uint8 CIFAR-sized images (N, C, H, W) and labels of 10 classes."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (DATASET, *IMAGE), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (DATASET,), generator=generator)


def loader(
    device: torch.device, *, batch_size: int, batches: int, workers: int, seed: int = 0
) -> Comparison:
    """Each call delivers `batches` batches on `device`. DeviceLoader runs in this process (its
    torch threads); the DataLoader in `workers` processes (0: in this one), pinned on CUDA."""
    images, labels = random_dataset(seed)
    ours = _endless(
        DeviceLoader(images, labels, batch_size=batch_size, train=True, seed=seed, device=device)
    )
    baseline = _endless(
        DataLoader(
            PerSampleCrop(images, labels),
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
        )
    )

    def take(stream: Iterator, to_device: bool) -> tuple[torch.Size, torch.dtype]:
        for _ in range(batches):
            x, y = next(stream)
            if to_device:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return x.shape, x.dtype

    return Comparison(
        ours=lambda: take(ours, False),
        baseline=lambda: take(baseline, True),
        images=batches * batch_size,
        flops=None,
        check=lambda a, b: "same batches (shape, dtype)" if a == b else f"batches differ: {a}, {b}",
    )


def streamed(device: torch.device, *, batch_size: int, batches: int, seed: int = 0) -> Comparison:
    """Each call delivers `batches` batches on `device`, EXTRA_FRACTION of each from DATASET
    extra images: ours streams them from an .npz in a temporary folder (`open_extra`: windows
    read by a background thread), the baseline holds the same file in memory (`load_extra`)."""
    images, labels = random_dataset(seed)
    folder = Path(tempfile.mkdtemp(prefix="rrn-stream-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # read until the run ends
    path = folder / "extra.npz"
    with path.open("wb") as file:  # the same images, N x H x W x C as generated sets are
        np.savez(file, image=images.permute(0, 2, 3, 1).numpy(), label=labels.numpy())
    options = {"batch_size": batch_size, "train": True, "seed": seed, "device": device}
    options["extra_fraction"] = EXTRA_FRACTION
    on_disk = open_extra(path, num_classes=10)
    ours = _endless(DeviceLoader(images, labels, extra=on_disk, **options))
    baseline = _endless(DeviceLoader(images, labels, extra=load_extra(path), **options))

    def take(stream: Iterator) -> tuple[torch.Size, torch.dtype]:
        for _ in range(batches):
            x, _ = next(stream)
        return x.shape, x.dtype

    return Comparison(
        ours=lambda: take(ours),
        baseline=lambda: take(baseline),
        images=batches * batch_size,
        flops=None,
        check=lambda a, b: "same batches (shape, dtype)" if a == b else f"batches differ: {a}, {b}",
    )


def _endless(batches: Iterable) -> Iterator:
    """Epoch after epoch of `batches`."""
    return itertools.chain.from_iterable(itertools.repeat(batches))
