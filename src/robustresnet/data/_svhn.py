"""SVHN from the cropped-digits MATLAB files (`train_32x32.mat`, `test_32x32.mat`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ._dataset import ImageDataset, labels_tensor, require_array

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
SVHN_CLASSES = tuple(str(d) for d in range(10))


def find_svhn(root: Path, split: str) -> Path | None:
    """The split's .mat file in `root/svhn/` or `root` (or `root` itself); None if absent."""
    if root.is_file():
        return root
    for candidate in (root / "svhn" / SVHN_FILES[split], root / SVHN_FILES[split]):
        if candidate.is_file():
            return candidate
    return None


def read_svhn(path: Path, name: str, split: str) -> ImageDataset:
    """One SVHN split; the files store images as H, W, C, N and the digit 0 as label 10."""
    import scipy.io  # imported here: only this reader needs it

    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except Exception as err:  # scipy raises ValueError, TypeError, OSError... on bad files
        raise DataError(f"{path}: corrupt or not a MATLAB file ({err})") from err
    images = require_array(mat.get("X"), str(path), "'X'", dtype=np.uint8, shape=(32, 32, 3, None))
    labels = _integral(mat.get("y"), path)
    if len(labels) != images.shape[3]:
        raise DataError(f"{path}: {images.shape[3]} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        bad = labels.min() if labels.min() < 1 else labels.max()
        raise DataError(f"{path}: label {bad} out of range (SVHN labels are 1..10)")
    return ImageDataset(
        images=torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1))),
        labels=labels_tensor(labels % 10),
        classes=SVHN_CLASSES,
        name=name,
        split=split,
        source=str(path),
    )


def _integral(value: object, path: Path) -> np.ndarray:
    """The N x 1 label column as int64; whole-number floats are accepted (some writers use them)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        if not np.isfinite(value).all() or (value != np.round(value)).any():
            raise DataError(f"{path}: 'y' must hold whole numbers")
        value = value.astype(np.int64)
    return require_array(value, str(path), "'y'", dtype=None, shape=(None, 1))[:, 0].astype(
        np.int64
    )
