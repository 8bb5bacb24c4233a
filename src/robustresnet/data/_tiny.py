"""Tiny-ImageNet-200 in its official folder layout (200 classes of 64x64 JPEG images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._progress import progress
from ..errors import DataError
from ._dataset import ImageDataset, labels_tensor

TINY_FOLDER = "tiny-imagenet-200"
TINY_SIZE = 64


def find_tiny(root: Path) -> Path | None:
    """`root/tiny-imagenet-200` or `root` itself when it holds `wnids.txt`; None if absent."""
    for candidate in (root / TINY_FOLDER, root):
        if (candidate / "wnids.txt").is_file():
            return candidate
    return None


def read_tiny(folder: Path, name: str, split: str, quiet: bool = False) -> ImageDataset:
    """The train split from `train/<wnid>/images`, or the labelled `val` split (also `test`)."""
    wnids = _lines(folder / "wnids.txt")
    if len(set(wnids)) != len(wnids) or not wnids:
        raise DataError(f"{folder / 'wnids.txt'}: expected distinct class ids, got {len(wnids)}")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    files = _train_files(folder, wnids) if split == "train" else _val_files(folder, index)
    images = np.empty((len(files), 3, TINY_SIZE, TINY_SIZE), dtype=np.uint8)
    for i, (path, _) in enumerate(progress(files, quiet=quiet, desc=f"{name} {split}")):
        images[i] = _read_image(path).transpose(2, 0, 1)
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=labels_tensor(np.array([label for _, label in files], dtype=np.int64)),
        classes=_class_names(folder, wnids),
        name=name,
        split=split,
        source=str(folder),
    )


def _train_files(folder: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    files = []
    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        if not images.is_dir():
            raise DataError(f"{images}: class folder missing (class {wnid} of wnids.txt)")
        found = sorted(images.glob("*.JPEG"))
        if not found:
            raise DataError(f"{images}: no .JPEG images for class {wnid}")
        files += [(path, label) for path in found]
    return files


def _val_files(folder: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    annotations = folder / "val" / "val_annotations.txt"
    files = []
    for number, line in enumerate(_lines(annotations), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"{annotations}: line {number}: unknown class or bad format: {line!r}")
        files.append((folder / "val" / "images" / fields[0], index[fields[1]]))
    return files


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # imported here: only this reader needs it

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))  # a few Tiny-ImageNet images are greyscale
    except FileNotFoundError as err:
        raise DataError(f"{path}: image file not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: corrupt or unreadable image ({err})") from err
    if pixels.shape != (TINY_SIZE, TINY_SIZE, 3):
        raise DataError(f"{path}: expected a 64x64 image, got {pixels.shape[1]}x{pixels.shape[0]}")
    return pixels


def _class_names(folder: Path, wnids: list[str]) -> tuple[str, ...]:
    """Readable names from `words.txt` when present (first synonym), else the wnids."""
    words = folder / "words.txt"
    if not words.is_file():
        return tuple(wnids)
    table = dict(line.split("\t", 1) for line in _lines(words) if "\t" in line)
    return tuple(table.get(wnid, wnid).split(",")[0].strip() for wnid in wnids)


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    return [line.strip() for line in text.splitlines() if line.strip()]
