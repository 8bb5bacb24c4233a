"""scikit-learn's bundled 8x8 digits as 3 x 32 x 32 uint8 images: data that needs no download."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ._dataset import ImageDataset, labels_tensor

DIGITS_CLASSES = tuple(str(d) for d in range(10))
TEST_EVERY = 5  # every 5th image of each class (in file order) is a test image: a 80/20 split
# 1797 images of MAX_SIZE² pixels: 350 MB as uint8, 470 MB while interpolated as one-channel floats.
MAX_SIZE = 256


def check_size(size: object, field: str = "size") -> None:
    """ConfigError unless `size` is an int in [8, MAX_SIZE] (checked before anything is made)."""
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_SIZE:
        raise ConfigError(field, size, f"an int in [8, {MAX_SIZE}] (digits are 8x8 at source)")


def read_digits(name: str, split: str, size: int = 32) -> ImageDataset:
    """Digits upsampled bilinearly to `size`, grey copied to 3 channels, split 80/20 by class."""
    from sklearn.datasets import load_digits  # imported here: only this reader needs it

    check_size(size)
    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1)  # values 0..16
    # Bilinear keeps strokes smooth, so random crops and rotations see image-like edges.
    pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    images = pixels.mul(255.0).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)
    labels = np.asarray(bunch.target, dtype=np.int64)
    mask = torch.from_numpy(_test_mask(labels))
    keep = mask if split == "test" else ~mask
    return ImageDataset(
        images=images[keep].contiguous(),
        labels=labels_tensor(labels)[keep],
        classes=DIGITS_CLASSES,
        name=name,
        split=split,
        source="sklearn.datasets.load_digits",
    )


def _test_mask(labels: np.ndarray) -> np.ndarray:
    """True for every TEST_EVERY-th image of each class: stratified, fixed, no random state."""
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        mask[where[TEST_EVERY - 1 :: TEST_EVERY]] = True
    return mask
