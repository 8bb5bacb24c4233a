"""Tiny dataset files in each real format, written by the tests (no real data is ever committed)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import scipy.io


def cifar_records(n: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (n, 3072) uint8 rows and labels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, num_classes, n)


def cifar10_files(per_batch: int = 4, test: int = 6) -> dict[str, bytes]:
    """The files of `cifar-10-batches-py`, pickled as Python 2 did (protocol 2, byte keys)."""
    files = {}
    for i in range(1, 6):
        data, labels = cifar_records(per_batch, 10, seed=i)
        record = {b"batch_label": b"training batch", b"labels": labels.tolist(), b"data": data}
        files[f"data_batch_{i}"] = pickle.dumps(record, protocol=2)
    data, labels = cifar_records(test, 10, seed=0)
    files["test_batch"] = pickle.dumps({b"labels": labels.tolist(), b"data": data}, protocol=2)
    names = [f"class{c}".encode() for c in range(10)]
    files["batches.meta"] = pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2)
    return files


def cifar100_files(train: int = 10, test: int = 5) -> dict[str, bytes]:
    """The files of `cifar-100-python` (str keys, protocol 4)."""
    files = {}
    for split, n, seed in (("train", train, 1), ("test", test, 2)):
        data, fine = cifar_records(n, 100, seed)
        record = {"data": data, "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist()}
        files[split] = pickle.dumps(record, protocol=4)
    meta = {
        "fine_label_names": [f"fine{c}" for c in range(100)],
        "coarse_label_names": [f"coarse{c}" for c in range(20)],
    }
    files["meta"] = pickle.dumps(meta, protocol=4)
    return files


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    """Write `files` into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_targz(path: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz holding `members` (name -> bytes) as regular files."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def cifar10_archive(path: Path, files: dict[str, bytes] | None = None) -> Path:
    """`cifar-10-python.tar.gz` with the folder layout of the official archive."""
    files = cifar10_files() if files is None else files
    return write_targz(path, {f"cifar-10-batches-py/{k}": v for k, v in files.items()})


def svhn_mat(path: Path, n: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A `*_32x32.mat` file (X: 32x32x3xN uint8, y: Nx1 with 10 for the digit 0)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    labels = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    labels[0, 0] = 10
    scipy.io.savemat(path, {"X": images, "y": labels})
    return images, labels


TINY_WNIDS = ("n01443537", "n01629819", "n01641577")
TINY_COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


def tiny_imagenet(root: Path, per_class: int = 2) -> Path:
    """`tiny-imagenet-200/` with 3 classes of solid-colour 64x64 JPEGs (one greyscale)."""
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    words = "".join(f"{w}\tname{i}, other\n" for i, w in enumerate(TINY_WNIDS))
    (folder / "words.txt").write_text(words + "n99999999\tunused\n")
    annotations = []
    for wnid, colour in zip(TINY_WNIDS, TINY_COLOURS, strict=True):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (64, 64), colour).save(images / f"{wnid}_{i}.JPEG")
        name = f"val_{len(annotations)}.JPEG"
        Image.new("RGB", (64, 64), colour).save(folder / "val" / "images" / name)
        annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    Image.new("L", (64, 64), 128).save(folder / "train" / TINY_WNIDS[0] / "images" / "grey.JPEG")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return folder


class Payload:
    """Unpickling this runs `os.system(command)`: the hostile file the unpickler must refuse."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


class EvalPayload:
    """Unpickling this runs `builtins.eval(source)`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self):
        return (eval, (self.source,))
