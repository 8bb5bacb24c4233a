"""CIFAR-10 and CIFAR-100 from the official python-version archives or their extracted folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ._archive import read_members
from ._dataset import ImageDataset, labels_tensor, require_array
from ._pickle import load_pickle


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its batches, labels and class names."""

    folder: str  # the folder inside the archive, also the extracted folder's name
    archive: str
    splits: dict[str, tuple[str, ...]]
    meta: str
    class_keys: dict[str, tuple[str, str]]  # label kind -> (label key, class-name key)


CIFAR10 = CifarLayout(
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    splits={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    meta="batches.meta",
    class_keys={"fine": ("labels", "label_names")},
)
CIFAR100 = CifarLayout(
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    splits={"train": ("train",), "test": ("test",)},
    meta="meta",
    class_keys={
        "fine": ("fine_labels", "fine_label_names"),
        "coarse": ("coarse_labels", "coarse_label_names"),
    },
)


def find_cifar(layout: CifarLayout, root: Path) -> Path | None:
    """The extracted folder or the archive under `root` (or `root` itself); None if absent."""
    if root.is_file() or (root / layout.meta).is_file():
        return root
    for candidate in (root / layout.folder, root / layout.archive):
        if candidate.exists():
            return candidate
    return None


def read_cifar(
    layout: CifarLayout, source: Path, name: str, split: str, labels: str = "fine"
) -> ImageDataset:
    """One split of CIFAR read from `source` (the extracted folder or the .tar.gz)."""
    if labels not in layout.class_keys:
        raise ConfigError("labels", labels, " or ".join(repr(k) for k in layout.class_keys))
    label_key, names_key = layout.class_keys[labels]
    batches = layout.splits[split]
    files = read_members(source, layout.folder, [*batches, layout.meta])
    images, targets = [], []
    for batch in batches:
        where = f"{source}:{batch}" if source.is_file() else str(source / batch)
        record = _as_dict(load_pickle(files[batch], where), where)
        data = require_array(
            record.get("data"), where, "'data'", dtype=np.uint8, shape=(None, 3072)
        )
        target = require_array(record.get(label_key), where, f"'{label_key}'", shape=(len(data),))
        images.append(data.reshape(-1, 3, 32, 32))
        targets.append(target)
    meta_where = f"{source}:{layout.meta}" if source.is_file() else str(source / layout.meta)
    classes = _class_names(load_pickle(files[layout.meta], meta_where), names_key, meta_where)
    return ImageDataset(
        images=torch.from_numpy(np.concatenate(images)),
        labels=labels_tensor(np.concatenate(targets)),
        classes=classes,
        name=name,
        split=split,
        source=str(source),
    )


def _as_dict(record: object, where: str) -> dict:
    """A CIFAR record as a dict with str keys (Python 2 files may carry bytes keys)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a dict, got {type(record).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in record.items()}


def _class_names(meta: object, key: str, where: str) -> tuple[str, ...]:
    names = _as_dict(meta, where).get(key)
    if not isinstance(names, list) or not all(isinstance(n, str | bytes) for n in names):
        raise DataError(f"{where}: '{key}' must be a list of class names")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)
