"""`rrn export` on a run that `train` wrote (EMA, best checkpoint, AutoAttack in the final report),
and its errors."""

from __future__ import annotations

import json

import pytest
from _export_runs import EPS
from _train_helpers import tiny_config

from robustresnet import train
from robustresnet.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One epoch on the digits; the final report has standard AutoAttack on all 355 test digits."""
    config = tiny_config(
        ema={"tau": 0.9},
        schedule={"epochs": 1},
        eval={"eps": EPS, "final_attacks": ["clean"], "final_samples": None,
              "autoattack": ["apgd-ce", "apgd-t", "fab-t", "square"]},
    )  # fmt: skip
    return train(config, tmp_path_factory.mktemp("trained") / "run", quiet=True)


def test_export_of_a_trained_run(trained_run, tmp_path, capsys):
    outputs = ["--robustbench", str(tmp_path / "rb"), "--card", str(tmp_path / "card")]
    assert (
        main(["export", str(trained_run), *outputs, "--model-id", "Tiny2025Digits", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    submission, card = out["robustbench"], out["card"]
    report = json.loads((trained_run / "report.json").read_text())
    # the EMA model's best checkpoint is what the final report evaluated
    assert submission["weights"] == card["weights"] == str(trained_run / "weights/best.safetensors")
    assert submission["model_info"]["clean_acc"] == f"{100 * report['accuracy']['clean']:.2f}"
    assert submission["model_info"]["autoattack_acc"] == f"{100 * report['accuracy']['aa']:.2f}"
    assert submission["logits_difference"] == 0.0
    assert submission["placeholders"] == ["name", "authors", "venue", "link"]
    assert (tmp_path / "rb" / "model_info/digits/Linf/Tiny2025Digits.json").is_file()
    assert (tmp_path / "rb" / "Tiny2025Digits.pt").is_file()
    assert (tmp_path / "card" / "model.safetensors").is_file()
    assert card["front_matter"]["training"]["ema"]["tau"] == 0.9


def test_text_output_lists_files_and_placeholders(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run), "--robustbench", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "RobustBench: clean" in out and "architecture.py" in out
    assert "placeholders left: name, authors, venue, link, model_id" in err
    assert "--model-id" in err


def test_errors_are_one_line_and_exit_code_2(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run)]) == 2
    assert "--robustbench OUT and/or --card OUT" in capsys.readouterr().err
    report = tmp_path / "report.json"
    data = json.loads((trained_run / "report.json").read_text())
    report.write_text(json.dumps({**data, "complete": False}))
    args = ["export", str(trained_run), "--card", str(tmp_path / "c"), "--report", str(report)]
    assert main(args) == 2
    assert "rrn export: error: report: got" in capsys.readouterr().err
