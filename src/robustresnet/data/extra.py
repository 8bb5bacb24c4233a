"""Extra training data of the advanced recipe: Carmon et al.'s pseudo-labelled pickle or an .npz."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from ._dataset import ImageDataset, labels_tensor, nhwc_images, require_array
from ._pickle import load_pickle

# (images key, labels key) of each format; images are N x 32 x 32 x 3 uint8 in both.
_KEYS = {".pickle": ("data", "extrapolated_targets"), ".npz": ("image", "label")}
_KEYS[".pkl"] = _KEYS[".pickle"]


def load_extra(
    path: str | os.PathLike, *, num_classes: int = 10, classes: tuple[str, ...] | None = None
) -> ImageDataset:
    """Images and labels of Carmon's `ti_500K_pseudo_labeled.pickle` or a generated `.npz`."""
    path = Path(path)
    if path.suffix not in _KEYS:
        raise DataError(f"{path}: unknown extra-data format (expected one of {sorted(_KEYS)})")
    image_key, label_key = _KEYS[path.suffix]
    record = _read_npz(path) if path.suffix == ".npz" else load_pickle(path)
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected a dict of arrays, got {type(record).__name__}")
    where = str(path)
    images = require_array(
        record.get(image_key), where, f"'{image_key}'", dtype=np.uint8, shape=(None, 32, 32, 3)
    )
    labels = require_array(record.get(label_key), where, f"'{label_key}'", shape=(len(images),))
    return ImageDataset(
        images=nhwc_images(images),
        labels=labels_tensor(labels),
        classes=classes if classes is not None else tuple(str(c) for c in range(num_classes)),
        name=path.stem,
        split="extra",
        source=where,
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: corrupt or truncated .npz ({err})") from err
