"""Datasets as uint8 tensors, extra data, safe download, and the device-resident loader."""

from .datasets import DATASETS, ImageDataset, data_root, holdout, load_dataset, load_extra
from .loader import DeviceLoader

__all__ = [
    "DATASETS",
    "DeviceLoader",
    "ImageDataset",
    "data_root",
    "holdout",
    "load_dataset",
    "load_extra",
]
