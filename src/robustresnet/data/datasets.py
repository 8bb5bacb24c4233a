"""`load_dataset(name, root)`: every dataset of the paper as uint8 images and int64 labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ._cifar import CIFAR10, CIFAR100, find_cifar, read_cifar
from ._dataset import ImageDataset, holdout
from ._digits import check_size, read_digits
from ._svhn import SVHN_FILES, find_svhn, read_svhn
from ._tiny import TINY_FOLDER, find_tiny, read_tiny
from .extra import load_extra

DATA_ENV = "RRN_DATA"  # the environment variable naming the default data root
SPLITS = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "svhn": ("train", "test", "extra"),
    "tiny-imagenet": ("train", "val", "test"),  # "test" reads val: the test labels are unpublished
    "digits": ("train", "test"),
}
DATASETS = tuple(SPLITS)
# Images of the train and test split of each dataset as read here (tiny-imagenet's test: its val
# split; digits: the 80/20 split at any size), so that sizes are known without reading the data.
SPLIT_SIZES = {
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "svhn": (73_257, 26_032),
    "tiny-imagenet": (100_000, 10_000),
    "digits": (1_442, 355),
}
_OPTIONS = {
    "cifar10": {"url", "md5"},
    "cifar100": {"labels", "url", "md5"},
    "svhn": set(),
    "tiny-imagenet": set(),
    "digits": {"size"},
}
_EXPECTED = {
    "cifar10": f"{CIFAR10.folder}/ or {CIFAR10.archive}",
    "cifar100": f"{CIFAR100.folder}/ or {CIFAR100.archive}",
    "tiny-imagenet": f"{TINY_FOLDER}/ with wnids.txt",
}

__all__ = [
    "DATASETS",
    "SPLIT_SIZES",
    "ImageDataset",
    "data_root",
    "holdout",
    "load_dataset",
    "load_extra",
]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """`root` if given, else `$RRN_DATA`, else `./data`."""
    return Path(root if root is not None else os.environ.get(DATA_ENV) or "data")


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    split: str = "train",
    download: bool = False,
    **opts: Any,
) -> ImageDataset:
    """One split of `name` (see DATASETS) read from under `root` (see `data_root`).

    Options: `labels="coarse"` (cifar100), `size=32` (digits), `url`/`md5` with `download=True`
    (a cifar10/100 mirror), `quiet=True` (no progress bar) for all.
    """
    quiet = bool(opts.pop("quiet", False))
    key = check_options(name, opts)
    if split not in SPLITS[key]:
        raise ConfigError("split", split, f"one of {', '.join(SPLITS[key])} for {key}")
    if download and not key.startswith("cifar"):
        raise ConfigError("download", True, "only cifar10 and cifar100 can be downloaded")
    if key == "digits":
        return read_digits(key, split, **opts)
    base = data_root(root)
    if key == "svhn":
        expected = f"{SVHN_FILES[split]} (or svhn/{SVHN_FILES[split]})"
        return read_svhn(_found(find_svhn(base, split), key, base, expected), key, split)
    if key == "tiny-imagenet":
        return read_tiny(_found(find_tiny(base), key, base), key, split, quiet=quiet)
    layout = CIFAR10 if key == "cifar10" else CIFAR100
    if download and find_cifar(layout, base) is None:
        from .download import download_cifar  # only --download needs the network code

        download_cifar(key, base, url=opts.get("url"), md5=opts.get("md5"), quiet=quiet)
    source = _found(find_cifar(layout, base), key, base)
    return read_cifar(layout, source, key, split, opts.get("labels", "fine"))


def check_options(name: str, options: dict[str, Any], *, field: str | None = None) -> str:
    """The dataset key of `name`, after checking that its reader knows every option and that
    sizes are within limits; errors name `field`.name / `field`.options (a config section)."""
    where = f"{field}." if field else ""
    key = str(name).lower().replace("_", "-")
    if key not in SPLITS:
        name_field = f"{field}.name" if field else "dataset"
        raise ConfigError(name_field, name, f"one of {', '.join(DATASETS)}")
    unknown = sorted(str(option) for option in set(options) - _OPTIONS[key])
    if unknown:
        raise ConfigError(f"{where}options", unknown, f"options of {key}: {sorted(_OPTIONS[key])}")
    if key == "digits" and "size" in options:
        check_size(options["size"], f"{where}options.size")
    return key


def _found(path: Path | None, name: str, root: Path, expected: str | None = None) -> Path:
    if path is None:
        hint = " (or pass download=True / --download)" if name.startswith("cifar") else ""
        expected = expected or _EXPECTED[name]
        raise DataError(f"{root}: no {name} found; expected {expected} there{hint}")
    return path
