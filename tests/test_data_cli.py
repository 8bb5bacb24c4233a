"""`rrn data info`: the table, the JSON report, and one-line errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from _data_fakes import cifar10_archive

from robustresnet.cli import data as data_cli
from robustresnet.cli import main
from robustresnet.data import StreamedExtra, stream


def test_info_digits_table(capsys):
    assert main(["data", "info", "digits"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:5] for line in out.splitlines()[2:]}
    assert rows == {
        "train": ["1442", "3x32x32", "10", "140..147"],
        "test": ["355", "3x32x32", "10", "34..36"],
    }


def test_info_json_on_fake_cifar(tmp_path, capsys):
    cifar10_archive(tmp_path / "cifar-10-python.tar.gz")
    assert main(["data", "info", "cifar10", "--root", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and set(report["splits"]) == {"train", "test"}
    train = report["splits"]["train"]
    assert (
        train["images"] == 20 and train["shape"] == [3, 32, 32] and sum(train["class_counts"]) == 20
    )


def test_info_extra_file(tmp_path, capsys):
    np.savez(
        tmp_path / "g.npz", image=np.zeros((3, 32, 32, 3), np.uint8), label=np.array([1, 1, 2])
    )
    assert main(["data", "info", str(tmp_path / "g.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["extra"]["class_counts"][:3] == [0, 2, 1]


def test_info_missing_dataset_is_one_line_exit_2(tmp_path, capsys):
    assert main(["data", "info", "svhn", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rrn data: error:") and "train_32x32.mat" in err and "\n" not in err


# Extra data: streamed sets (.npz, folders of shards, .npy pairs) and the pickle --------------


def _images(n: int, shape=(6, 5, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _expected(images: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> dict:
    """What the report must say of N,H,W,C `images`, computed with numpy on the whole arrays."""
    return {
        "images": len(labels),
        "shape": [images.shape[3], images.shape[1], images.shape[2]],
        "dtype": "uint8",
        "num_classes": num_classes,
        "class_counts": np.bincount(labels, minlength=num_classes).tolist(),
        "channel_mean": np.round(images.mean(axis=(0, 1, 2)) / 255, 4).tolist(),
    }


def _report(capsys, path, *options) -> dict:
    assert main(["data", "info", str(path), "--json", *options]) == 0
    return json.loads(capsys.readouterr().out)["splits"]["extra"]


def test_info_streams_a_folder_of_npz_shards(tmp_path, capsys):
    images, labels = _images(30), np.random.default_rng(1).integers(0, 10, 30)
    (tmp_path / "gen").mkdir()
    np.savez(tmp_path / "gen" / "0.npz", image=images[:20], label=labels[:20])
    np.savez(tmp_path / "gen" / "1.npz", image=images[20:], label=labels[20:])
    report = _report(capsys, tmp_path / "gen")
    assert report == {
        **_expected(images, labels),
        "source": str(tmp_path / "gen"),
        "shards": 2,
    }


def test_info_streams_an_npy_pair_of_one_channel(tmp_path, capsys):
    images, labels = _images(9, (4, 7, 1)), np.arange(9) % 3
    np.save(tmp_path / "image.npy", images)
    np.save(tmp_path / "label.npy", labels)
    assert _expected(images, labels).items() <= _report(capsys, tmp_path).items()


def test_info_reads_a_streamed_set_in_chunks_and_never_whole(tmp_path, capsys, monkeypatch):
    images, labels = _images(10), np.arange(10)
    np.savez(tmp_path / "g.npz", image=images, label=labels)
    whole = _report(capsys, tmp_path / "g.npz")
    reads = []
    read = StreamedExtra.read
    monkeypatch.setattr(data_cli, "READ_CHUNK", 4)
    monkeypatch.setattr(
        StreamedExtra, "read", lambda self, *a: reads.append(a[:2]) or read(self, *a)
    )
    monkeypatch.setattr(data_cli, "load_extra", None)  # an .npz is never read whole
    assert _report(capsys, tmp_path / "g.npz") == whole
    assert reads == [(0, 4), (4, 8), (8, 10)]


def test_info_num_classes_for_streamed_and_pickled_extra_data(tmp_path, capsys):
    images, labels = _images(4, (32, 32, 3)), np.array([0, 42, 99, 99])
    np.savez(tmp_path / "g.npz", image=images, label=labels)
    (tmp_path / "g.pickle").write_bytes(
        pickle.dumps({"data": images, "extrapolated_targets": labels})
    )
    for path in (tmp_path / "g.npz", tmp_path / "g.pickle"):
        report = _report(capsys, path, "--num-classes", "100")
        assert _expected(images, labels, 100).items() <= report.items()
        assert main(["data", "info", str(path)]) == 2  # 10 classes by default
        assert "out of range for 10 classes" in capsys.readouterr().err


def test_info_checks_every_label_not_only_the_spot_checked_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(stream, "LABEL_SAMPLE", 0)  # open_extra checks the first and last only
    np.savez(tmp_path / "g.npz", image=_images(5), label=[0, 1, 10, 3, 4])
    assert main(["data", "info", str(tmp_path / "g.npz")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'g.npz'}: label 10 of image 2 out of range for 10 classes" in err


@pytest.mark.parametrize(
    ("save", "expected"),
    [
        (lambda p: np.savez(p / "1.npz", image=_images(5), label=[0, 1, 2, 3, 10]), "image 4"),
        (lambda p: np.savez_compressed(p / "1.npz", image=_images(2), label=[0, 1]), "np.savez"),
        (lambda p: np.savez(p / "1.npz", image=_images(2, (0, 5, 3)), label=[0, 1]), "H, W > 0"),
    ],
    ids=["label-out-of-range", "compressed", "empty-images"],
)
def test_info_a_bad_shard_is_one_line_naming_it(tmp_path, capsys, save, expected):
    np.savez(tmp_path / "0.npz", image=_images(3), label=[0, 1, 2])
    save(tmp_path)
    code = main(["data", "info", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"rrn data: error: {tmp_path / '1.npz'}: ") and expected in err
