"""Each reader on tiny files in the real format: exact pixels, labels, classes and splits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _data_fakes import (
    TINY_COLOURS,
    cifar10_archive,
    cifar10_files,
    cifar100_files,
    svhn_mat,
    tiny_imagenet,
    write_folder,
    write_targz,
)

from robustresnet.data import ImageDataset, data_root, holdout, load_dataset, load_extra
from robustresnet.errors import ConfigError


def _expected_cifar10(files: dict[str, bytes], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    records = [pickle.loads(files[n], encoding="bytes") for n in names]
    data = np.concatenate([r[b"data"] for r in records]).reshape(-1, 3, 32, 32)
    return data, np.concatenate([r[b"labels"] for r in records])


@pytest.mark.parametrize("layout", ["archive", "folder", "folder-itself", "archive-itself"])
def test_cifar10_reads_every_layout(tmp_path, layout):
    files = cifar10_files()
    archive = cifar10_archive(tmp_path / "cifar-10-python.tar.gz", files)
    folder = write_folder(tmp_path / "other" / "cifar-10-batches-py", files)
    root = {
        "archive": tmp_path,
        "folder": tmp_path / "other",
        "folder-itself": folder,
        "archive-itself": archive,
    }[layout]
    train = load_dataset("cifar10", root, split="train")
    test = load_dataset("cifar10", root, split="test")
    images, labels = _expected_cifar10(files, [f"data_batch_{i}" for i in range(1, 6)])
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.equal(train.images, torch.from_numpy(images))
    assert torch.equal(train.labels, torch.from_numpy(labels))
    assert (len(train), len(test), train.split, test.split) == (20, 6, "train", "test")
    assert train.classes == tuple(f"class{c}" for c in range(10))


def test_cifar100_fine_and_coarse(tmp_path):
    files = cifar100_files()
    write_targz(
        tmp_path / "cifar-100-python.tar.gz", {f"cifar-100-python/{k}": v for k, v in files.items()}
    )
    fine = load_dataset("cifar100", tmp_path)
    coarse = load_dataset("cifar100", tmp_path, labels="coarse", split="test")
    record = pickle.loads(files["train"])
    assert torch.equal(fine.images, torch.from_numpy(record["data"].reshape(-1, 3, 32, 32)))
    assert fine.labels.tolist() == record["fine_labels"]
    assert (fine.num_classes, coarse.num_classes, len(coarse)) == (100, 20, 5)
    assert coarse.labels.tolist() == pickle.loads(files["test"])["coarse_labels"]
    with pytest.raises(ConfigError, match="labels"):
        load_dataset("cifar100", tmp_path, labels="medium")


def test_svhn_transposes_and_maps_ten_to_zero(tmp_path):
    images, labels = svhn_mat(tmp_path / "test_32x32.mat")
    svhn = load_dataset("svhn", tmp_path, split="test")
    assert svhn.images.shape == (7, 3, 32, 32)
    assert torch.equal(svhn.images[3], torch.from_numpy(images[..., 3].transpose(2, 0, 1)))
    assert svhn.labels.tolist() == (labels[:, 0] % 10).tolist() and svhn.labels[0] == 0
    assert svhn.classes == tuple("0123456789")


def test_tiny_imagenet_train_and_val(tmp_path):
    tiny_imagenet(tmp_path)
    train = load_dataset("tiny-imagenet", tmp_path, split="train", quiet=True)
    val = load_dataset("tiny-imagenet", tmp_path, split="val")
    assert train.images.shape == (7, 3, 64, 64) and len(val) == 3
    assert train.class_counts() == [3, 2, 2]  # the greyscale JPEG belongs to class 0
    assert val.labels.tolist() == [0, 1, 2] and train.classes == ("name0", "name1", "name2")
    colours = val.images.float().mean(dim=(2, 3))
    assert torch.allclose(colours, torch.tensor(TINY_COLOURS).float(), atol=4)
    grey = train.images[(train.labels == 0)].float().mean(dim=(2, 3))
    assert (grey.max(dim=1).values - grey.min(dim=1).values).min() < 2  # converted to RGB
    assert torch.equal(load_dataset("tiny-imagenet", tmp_path, split="test").images, val.images)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_carmon_pickle(tmp_path, protocol):
    data = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "ti_500K_pseudo_labeled.pickle"
    record = {"data": data, "extrapolated_targets": np.array([0, 9, 3, 3, 1])}
    path.write_bytes(pickle.dumps(record, protocol=protocol))
    extra = load_extra(path)
    assert extra.images.shape == (5, 3, 32, 32) and extra.split == "extra"
    assert torch.equal(extra.images[2], torch.from_numpy(data[2]).permute(2, 0, 1))
    assert extra.labels.tolist() == [0, 9, 3, 3, 1]


def test_npz_extra(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "generated.npz", image=data, label=np.array([5, 50, 99, 0]))
    extra = load_extra(tmp_path / "generated.npz", num_classes=100)
    assert torch.equal(extra.images.permute(0, 2, 3, 1), torch.from_numpy(data))
    assert extra.labels.tolist() == [5, 50, 99, 0] and extra.num_classes == 100


def test_digits_split_is_stratified_fixed_and_complete():
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert (len(train), len(test)) == (1442, 355) and train.images.shape[1:] == (3, 32, 32)
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # grey copied to 3 channels
    total = torch.tensor(train.class_counts()) + torch.tensor(test.class_counts())
    share = torch.tensor(test.class_counts()) / total
    assert ((share - 0.2).abs() < 0.01).all()
    again = load_dataset("digits", split="test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    assert train.images.max() == 255 and train.images.min() == 0


def test_holdout_takes_the_first_images():
    digits = load_dataset("digits")
    train, val = holdout(digits, 100)
    assert torch.equal(val.images, digits.images[:100]) and val.split == "val"
    assert torch.equal(train.labels, digits.labels[100:]) and len(train) + len(val) == len(digits)
    with pytest.raises(ConfigError, match="holdout"):
        holdout(digits, len(digits))


def test_data_root_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("RRN_DATA", raising=False)
    assert str(data_root()) == "data"
    monkeypatch.setenv("RRN_DATA", str(tmp_path))
    assert data_root() == tmp_path and data_root("elsewhere").name == "elsewhere"


def test_dataset_record_validates_itself():
    with pytest.raises(Exception, match="uint8"):
        ImageDataset(
            torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), ("a",), "x", "train"
        )
