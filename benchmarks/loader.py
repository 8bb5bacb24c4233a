"""The loader pass: augmented training batches on the device, DeviceLoader (the dataset on the
device, crop and flip as batched tensor ops) against a DataLoader running per-sample transforms in
worker processes; both get the same number of CPU workers."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader

from robustresnet.data import DeviceLoader

from .baselines import PerSampleCrop
from .models import IMAGE
from .passes import Comparison

DATASET = 50_000  # CIFAR-10's training split


def loader(
    device: torch.device, *, batch_size: int, batches: int, workers: int, seed: int = 0
) -> Comparison:
    """Each call delivers `batches` batches on `device`. DeviceLoader runs in this process (its
    torch threads); the DataLoader in `workers` processes (0: in this one), pinned on CUDA."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (DATASET, *IMAGE), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (DATASET,), generator=generator)
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


def _endless(batches: Iterable) -> Iterator:
    """Epoch after epoch of `batches`."""
    return itertools.chain.from_iterable(itertools.repeat(batches))
