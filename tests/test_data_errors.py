"""Hostile, missing, truncated and malformed files: a DataError naming the file, never data."""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest
import scipy.io
from _data_fakes import (
    EvalPayload,
    Payload,
    cifar10_archive,
    cifar10_files,
    svhn_mat,
    tiny_imagenet,
    write_folder,
)

from robustresnet.data import load_dataset, load_extra
from robustresnet.data._pickle import load_pickle
from robustresnet.errors import ConfigError, DataError


def test_code_execution_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "ti_500K_pseudo_labeled.pickle"
    path.write_bytes(pickle.dumps({"data": Payload(f"touch {marker}")}))
    with pytest.raises(DataError, match=r"ti_500K_pseudo_labeled.pickle.*(posix|os)\.system"):
        load_extra(path)
    assert not marker.exists()
    # The payload is real: plain pickle would have run it.
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_payload_inside_a_cifar_archive_is_refused(tmp_path):
    files = cifar10_files()
    files["data_batch_3"] = pickle.dumps({"data": EvalPayload("__import__('os').getcwd()")})
    cifar10_archive(tmp_path / "cifar-10-python.tar.gz", files)
    with pytest.raises(DataError, match=r"data_batch_3.*builtins\.eval"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize(
    "blob",
    [pickle.dumps({"a": np.arange(10)})[:-7], b"not a pickle", b""],
    ids=["cut", "junk", "empty"],
)
def test_truncated_or_corrupt_pickle(blob):
    with pytest.raises(DataError, match="x.pickle: corrupt or truncated pickle"):
        load_pickle(blob, "x.pickle")


def test_truncated_archive(tmp_path):
    archive = cifar10_archive(tmp_path / "cifar-10-python.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: corrupt or truncated"):
        load_dataset("cifar10", tmp_path)


def test_archive_missing_a_batch(tmp_path):
    files = cifar10_files()
    del files["data_batch_4"]
    cifar10_archive(tmp_path / "cifar-10-python.tar.gz", files)
    with pytest.raises(DataError, match="no member cifar-10-batches-py/data_batch_4"):
        load_dataset("cifar10", tmp_path)
    assert len(load_dataset("cifar10", tmp_path, split="test")) == 6  # the test split is whole


def test_missing_dataset_names_root_and_expected_files(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py/ or cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DataError, match="train_32x32.mat"):
        load_dataset("svhn", tmp_path)
    with pytest.raises(DataError, match="tiny-imagenet-200"):
        load_dataset("tiny-imagenet", tmp_path)


def test_missing_file_in_extracted_folder(tmp_path):
    files = cifar10_files()
    del files["test_batch"]
    write_folder(tmp_path / "cifar-10-batches-py", files)
    with pytest.raises(DataError, match="test_batch: file not found"):
        load_dataset("cifar10", tmp_path, split="test")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({b"data": np.zeros((4, 3071), np.uint8)}, "shape Nx3072"),
        ({b"data": np.zeros((4, 3072), np.float32)}, "dtype uint8"),
        ({b"labels": [0, 1, 2]}, "shape 4"),
        ({b"labels": [0, 1, 2, 10]}, "label 10 out of range for 10 classes"),
        ({b"labels": [0, 1, -1, 2]}, "label -1 out of range"),
        ({b"data": None}, "'data' is missing"),
    ],
)
def test_malformed_cifar_batch(tmp_path, change, message):
    files = cifar10_files()
    record = pickle.loads(files["data_batch_2"], encoding="bytes")
    files["data_batch_2"] = pickle.dumps({**record, **change})
    cifar10_archive(tmp_path / "cifar-10-python.tar.gz", files)
    where = "data_batch_2" if "range" not in message else "cifar-10-python.tar.gz"
    with pytest.raises(DataError, match=f"{where}.*{message}"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [11]])}, "label 11"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [1]])}, "label 0"),
        ({"X": np.zeros((32, 32, 3, 2), np.float64), "y": np.array([[1], [2]])}, "dtype uint8"),
        ({"X": np.zeros((3, 32, 32, 2), np.uint8), "y": np.array([[1], [2]])}, "shape 32x32x3xN"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1]])}, "2 images but 1"),
    ],
)
def test_malformed_svhn(tmp_path, contents, message):
    scipy.io.savemat(tmp_path / "train_32x32.mat", contents)
    with pytest.raises(DataError, match=f"train_32x32.mat.*{message}"):
        load_dataset("svhn", tmp_path)


def test_corrupt_svhn(tmp_path):
    svhn_mat(tmp_path / "train_32x32.mat")
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="train_32x32.mat: corrupt"):
        load_dataset("svhn", tmp_path)


def test_tiny_imagenet_missing_class_folder(tmp_path):
    folder = tiny_imagenet(tmp_path)
    for path in sorted((folder / "train" / "n01629819").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    with pytest.raises(DataError, match="n01629819/images: class folder missing"):
        load_dataset("tiny-imagenet", tmp_path)


def test_tiny_imagenet_bad_image_and_annotation(tmp_path):
    folder = tiny_imagenet(tmp_path)
    (folder / "val" / "images" / "val_1.JPEG").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataError, match="val_1.JPEG: corrupt"):
        load_dataset("tiny-imagenet", tmp_path, split="val")
    with open(folder / "val" / "val_annotations.txt", "a") as f:
        f.write("val_9.JPEG\tn00000000\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="val_annotations.txt: line 4"):
        load_dataset("tiny-imagenet", tmp_path, split="val")


def test_tiny_imagenet_wrong_size(tmp_path):
    from PIL import Image

    folder = tiny_imagenet(tmp_path)
    Image.new("RGB", (32, 32)).save(folder / "val" / "images" / "val_0.JPEG")
    with pytest.raises(DataError, match="val_0.JPEG: expected a 64x64 image, got 32x32"):
        load_dataset("tiny-imagenet", tmp_path, split="val")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"data": np.zeros((2, 32, 32, 3), np.uint8), "extrapolated_targets": [0, 10]}, "label 10"),
        ({"data": np.zeros((2, 3, 32, 32), np.uint8), "extrapolated_targets": [0, 1]}, "Nx32x32x3"),
        ({"data": np.zeros((2, 32, 32, 3), np.uint8)}, "'extrapolated_targets' is missing"),
        ([1, 2], "expected a dict"),
    ],
)
def test_malformed_carmon_pickle(tmp_path, record, message):
    path = tmp_path / "ti.pickle"
    path.write_bytes(pickle.dumps(record))
    with pytest.raises(DataError, match=f"ti.pickle.*{message}"):
        load_extra(path)


def test_bad_npz_and_unknown_extra_format(tmp_path):
    (tmp_path / "g.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="g.npz: corrupt"):
        load_extra(tmp_path / "g.npz")
    with pytest.raises(DataError, match="missing.npz: file not found"):
        load_extra(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="unknown extra-data format"):
        load_extra(tmp_path / "x.h5")


def test_bad_names_splits_and_options():
    with pytest.raises(ConfigError, match="dataset"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="split"):
        load_dataset("digits", split="val")
    with pytest.raises(ConfigError, match="options"):
        load_dataset("digits", labels="coarse")
    with pytest.raises(ConfigError, match="download"):
        load_dataset("svhn", download=True)


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


# Issue 16: tiny files that asked for gigabytes. Each is refused before anything is allocated:
# the size a file asks for is checked against the file's own size.
HOSTILE_PICKLES = {
    # builtins.bytearray(200_000_000) through REDUCE, 37 bytes
    "bytearray(n)": b"\x80\x04\x8c\x08builtins\x94\x8c\tbytearray\x94\x93\x94J\x00\xc2\xeb\x0b"
    b"\x85\x94R\x94.",
    # BYTEARRAY8 / BINBYTES8 / FRAME whose length is 1.5 GB: the C unpickler allocated it first
    "bytearray8": b"\x80\x05\x96" + (1_500_000_000).to_bytes(8, "little") + b".",
    "binbytes8": b"\x80\x05\x8e" + (1_500_000_000).to_bytes(8, "little") + b".",
    "frame": b"\x80\x04\x95" + (1_500_000_000).to_bytes(8, "little") + b"N.",
    # a memo index of 2^28: the C unpickler zero-filled a 4 GB memo table
    "memo": b"\x80\x02Nr\xff\xff\xff\x0f.",
    # numpy.ndarray((200_000_000,), "u1") and _reconstruct(ndarray, (200_000_000,), "b")
    "ndarray(shape)": b"\x80\x02" + _global("numpy", "ndarray") + b"J\x00\xc2\xeb\x0b\x85"
    b"X\x02\x00\x00\x00u1\x86R.",
    "_reconstruct": b"\x80\x02" + _global("numpy.core.multiarray", "_reconstruct")
    + _global("numpy", "ndarray") + b"J\x00\xc2\xeb\x0b\x85C\x01b\x87R.",
    # codecs.encode(..., "hex") nested: each level doubles, 2^31 bytes from 1
    "codecs": b"\x80\x02" + _global("_codecs", "encode") * 31 + b"C\x01x"
    + b"X\x03\x00\x00\x00hex\x86R" * 31 + b".",
    # an object-dtype array, which numpy fills from a too-short list by reading past it
    "object dtype": b"\x80\x02" + _global("numpy", "dtype") + b"X\x02\x00\x00\x00O8\x85R.",
}  # fmt: skip


@pytest.mark.parametrize("name", list(HOSTILE_PICKLES))
def test_a_small_pickle_cannot_ask_for_more_memory_than_it_holds(name):
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="x.pickle: (refused|corrupt)"):
            load_pickle(HOSTILE_PICKLES[name], "x.pickle")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


def test_a_hostile_cifar_batch_is_refused_naming_the_file(tmp_path):
    files = cifar10_files()
    files["data_batch_2"] = HOSTILE_PICKLES["bytearray(n)"]
    folder = write_folder(tmp_path / "cifar-10-batches-py", files)
    with pytest.raises(DataError, match=r"data_batch_2: refused to make a bytearray"):
        load_dataset("cifar10", folder)


def test_every_pickle_protocol_of_plain_data_still_loads():
    record = {"data": np.arange(12, dtype=np.uint8).reshape(2, 6), "labels": [3, 1], "x": 0.5}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        loaded = load_pickle(pickle.dumps(record, protocol=protocol), "x.pickle")
        assert np.array_equal(loaded["data"], record["data"]) and loaded["labels"] == [3, 1]


def test_ragged_labels_are_a_data_error(tmp_path):
    files = cifar10_files()
    files["test_batch"] = pickle.dumps(
        {"data": np.zeros((2, 3072), np.uint8), "labels": [[0], [1, 2]]}
    )
    folder = write_folder(tmp_path / "cifar-10-batches-py", files)
    with pytest.raises(DataError, match="test_batch: 'labels' is not a regular array"):
        load_dataset("cifar10", folder, split="test")


def test_digits_size_is_bounded_before_anything_is_made():
    with pytest.raises(
        ConfigError, match=r"options.size: got 100000, expected an int in \[8, 256\]"
    ):
        load_dataset("digits", split="test", size=100_000)  # asked for 72 TB
