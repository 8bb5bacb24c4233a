"""`rrn data info`: the table, the JSON report, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
from _data_fakes import cifar10_archive

from robustresnet.cli import main


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
