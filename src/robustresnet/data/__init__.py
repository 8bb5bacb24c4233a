"""Datasets as uint8 tensors, extra data (in memory or streamed from disk), safe download, and
the device-resident loader."""

from .datasets import DATASETS, ImageDataset, data_root, holdout, load_dataset, load_extra
from .loader import DeviceLoader
from .stream import StreamedExtra, open_extra

__all__ = [
    "DATASETS",
    "DeviceLoader",
    "ImageDataset",
    "StreamedExtra",
    "data_root",
    "holdout",
    "load_dataset",
    "load_extra",
    "open_extra",
]
