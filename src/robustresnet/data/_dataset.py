"""The in-memory dataset record and the checks every reader runs before returning one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """uint8 images (N, C, H, W) and int64 labels (N,), checked on construction."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str
    source: str = ""  # the file or folder read, named in errors

    def __post_init__(self) -> None:
        where = self.source or f"{self.name} ({self.split})"
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8:
            raise DataError(f"{where}: images must be a uint8 tensor, got {_kind(self.images)}")
        if self.images.dim() != 4:
            raise DataError(
                f"{where}: images must be N,C,H,W, got shape {tuple(self.images.shape)}"
            )
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64:
            raise DataError(f"{where}: labels must be an int64 tensor, got {_kind(self.labels)}")
        if self.labels.shape != (len(self.images),):
            raise DataError(
                f"{where}: {len(self.images)} images but labels of shape {tuple(self.labels.shape)}"
            )
        check_label_range(self.labels, len(self.classes), where)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        """Number of images of each class, in class order."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, index: slice | torch.Tensor, split: str | None = None) -> ImageDataset:
        """The images at `index` (a slice or index tensor), optionally under a new split name."""
        return dataclasses.replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            split=self.split if split is None else split,
        )


def _kind(value: Any) -> str:
    return f"{type(value).__name__} of {value.dtype}" if hasattr(value, "dtype") else repr(value)


def check_label_range(labels: torch.Tensor, num_classes: int, where: str) -> None:
    """Raise DataError naming `where` unless every label is in [0, num_classes)."""
    if len(labels) == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(f"{where}: label {bad} out of range for {num_classes} classes")


def require_array(
    value: Any, where: str, what: str, *, dtype: Any = None, shape: tuple[int | None, ...]
) -> np.ndarray:
    """`value` as a numpy array of `shape` (None = any size) and `dtype` (None = any integer)."""
    if value is None:
        raise DataError(f"{where}: {what} is missing")
    if not isinstance(value, np.ndarray | list):
        raise DataError(f"{where}: {what} must be an array, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:  # a ragged list of lists
        raise DataError(f"{where}: {what} is not a regular array ({err})") from None
    if dtype is not None and array.dtype != dtype:
        raise DataError(f"{where}: {what} must have dtype {np.dtype(dtype)}, got {array.dtype}")
    if dtype is None and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{where}: {what} must be integers, got dtype {array.dtype}")
    fits = array.ndim == len(shape) and all(
        s is None or s == n for s, n in zip(shape, array.shape, strict=True)
    )
    if not fits:
        expected = "x".join("N" if s is None else str(s) for s in shape)
        raise DataError(f"{where}: {what} must have shape {expected}, got {array.shape}")
    return array


def nhwc_images(array: np.ndarray) -> torch.Tensor:
    """An N,H,W,C uint8 array as an N,C,H,W tensor view (no copy of a large extra set)."""
    if not array.flags.writeable:  # torch cannot share a read-only buffer
        array = array.copy()
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def labels_tensor(labels: np.ndarray) -> torch.Tensor:
    """An int64 tensor of integer labels."""
    return torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))


def holdout(dataset: ImageDataset, n: int) -> tuple[ImageDataset, ImageDataset]:
    """(train, val): the first `n` images held out as `val`, the rest kept as `train`."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n < len(dataset):
        raise ConfigError("holdout", n, f"an int with 0 < n < {len(dataset)} (the dataset size)")
    return dataset.subset(slice(n, None), "train"), dataset.subset(slice(0, n), "val")
