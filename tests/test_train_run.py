"""The trainer end to end on tiny digits: run directory, metrics, bad input, a full disk, NaN."""

from __future__ import annotations

import errno
import json
import math

import pytest
import torch
import yaml
from _train_helpers import tiny_config, tiny_dict, write_config
from safetensors.torch import load_file

from robustresnet.cli import main
from robustresnet.errors import CheckpointError, ConfigError, DataError
from robustresnet.train import checkpoint as ckpt
from robustresnet.train.objectives import PGDAT, TRADES
from robustresnet.train.trainer import DivergedError, train


def test_run_directory_layout_and_metrics(tmp_path):
    run = train(tiny_config(ema={"tau": 0.9}), tmp_path / "run", quiet=True)
    for name in ("config.yaml", "arch.yaml", "checkpoint.json", "metrics.jsonl", "metrics.csv"):
        assert (run / name).is_file(), name
    for name in ("last", "best", "ema"):
        assert (run / "weights" / f"{name}.safetensors").is_file(), name
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_acc_clean", "train_acc_adv", "val_clean", "val_robust", "lr"):
        assert key in rows[0], key
    assert rows[-1]["lr"] < rows[0]["lr"]  # cosine
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    pointer = json.loads((run / "checkpoint.json").read_text())
    assert pointer["step"] == rows[-1]["step"] and pointer["epoch"] == 2
    assert list((run / "state").iterdir()) == [run / pointer["state"]]  # older states pruned
    assert (run / "report.json").is_file() and (run / "report.md").is_file()
    header = (run / "config.yaml").read_text().splitlines()[0]
    assert header.startswith("# robustresnet ") and "git " in header


def test_existing_run_needs_resume(tmp_path):
    config = tiny_config(schedule={"epochs": 1})
    train(config, tmp_path / "run", quiet=True)
    with pytest.raises(CheckpointError, match="--resume"):
        train(config, tmp_path / "run", quiet=True)


def test_resume_with_a_different_config_is_refused(tmp_path):
    train(tiny_config(schedule={"epochs": 1}), tmp_path / "run", quiet=True)
    changed = tiny_config(schedule={"epochs": 1}, optim={"lr": 0.2})
    with pytest.raises(ConfigError, match=r"optim\.lr.*--resume"):
        train(changed, tmp_path / "run", resume=True, quiet=True)


def test_a_hand_edited_config_yaml_is_refused_on_resume(tmp_path, capsys):
    """config.yaml edited after the run started: the checkpoint remembers the trained config."""
    run = tmp_path / "run"
    train(tiny_config(schedule={"epochs": 1}), run, quiet=True)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("lr: 0.05", "lr: 0.2"))
    assert main(["train", "--resume", str(run), "schedule.epochs=1", "--quiet"]) == 2
    assert "optim.lr" in capsys.readouterr().err


def test_a_run_moved_to_another_folder_resumes(tmp_path):
    """Saved evaluation states are bound to the weights, not to the folder's name."""
    config = tiny_config(schedule={"epochs": 1})
    train(config, tmp_path / "run", quiet=True)
    (tmp_path / "run").rename(tmp_path / "moved")
    train(config, tmp_path / "moved", resume=True, quiet=True)
    report = json.loads((tmp_path / "moved" / "report.json").read_text())
    assert report["model"] == "moved" and report["complete"]


def test_a_run_written_with_run_tensorboard_by_an_earlier_version_resumes(tmp_path, capsys):
    run = train(tiny_config(schedule={"epochs": 1}), tmp_path / "run", quiet=True)
    config = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("loggers", "wandb", "mlflow"):
        del config["run"][key]
    config["run"]["tensorboard"] = False  # as config.yaml and checkpoints used to say
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    state_path = run / json.loads((run / "checkpoint.json").read_text())["state"]
    state = torch.load(state_path, weights_only=True)
    state["config"] = config
    torch.save(state, state_path)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0, capsys.readouterr().err


def test_missing_dataset_writes_nothing(tmp_path):
    config = tiny_config(data={"name": "cifar10", "root": str(tmp_path / "nowhere"), "options": {}})
    with pytest.raises(DataError, match="download"):
        train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_class_count_mismatch_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        train(tiny_config(model={"num_classes": 100}), tmp_path / "run", quiet=True)
    assert err.value.field == "model.num_classes" and "10" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_full_disk_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(run={"checkpoint_every": 4})
    real = ckpt.atomic_write
    calls = {"n": 0}

    def flaky(path, write):
        calls["n"] += 1
        if calls["n"] > 1:  # the first state file is written, then the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(ckpt, "atomic_write", flaky)
    with pytest.raises(CheckpointError, match="disk is full.*--resume"):
        train(config, tmp_path / "run", quiet=True)
    state = ckpt.load_checkpoint(tmp_path / "run")
    assert state["step"] == 4 and state["mid_epoch"]
    assert not list((tmp_path / "run").rglob("*.tmp"))
    monkeypatch.setattr(ckpt, "atomic_write", real)
    run = train(config, tmp_path / "run", resume=True, quiet=True)  # space freed: it goes on
    assert ckpt.load_checkpoint(run)["epoch"] == 2


def test_non_finite_loss_stops_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    honest = PGDAT.loss
    counter = {"steps": 0}

    def poisoned(self, *args):
        loss, metrics = honest(self, *args)
        counter["steps"] += 1
        return (loss * float("nan") if counter["steps"] > 12 else loss), metrics

    monkeypatch.setattr(PGDAT, "loss", poisoned)
    with pytest.raises(DivergedError, match=r"the last checkpoint \(step 10\)"):
        train(tiny_config(), tmp_path / "run", quiet=True)
    state = ckpt.load_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1  # epoch 1 (10 steps) completed, epoch 2 never saved
    weights = load_file(tmp_path / "run" / "weights" / "last.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_overflowing_batchnorm_statistics_stop_the_run_before_a_save(tmp_path):
    """The loss stays finite while running variances overflow: no checkpoint may hold inf, and
    the message names the last checkpoint, which exists and is finite."""
    config = tiny_config(
        optim={"lr": 1000.0, "momentum": 0.0, "grad_clip": None}, run={"checkpoint_every": 3}
    )
    with pytest.raises(DivergedError, match="running_var became NaN or infinite") as err:
        train(config, tmp_path / "run", quiet=True)
    pointer = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert f"the last checkpoint (step {pointer['step']})" in str(err.value)
    for name in ("last", "best", "ema"):
        path = tmp_path / "run" / "weights" / f"{name}.safetensors"
        if path.is_file():
            assert all(torch.isfinite(w).all() for w in load_file(path).values()), name
    state = ckpt.load_checkpoint(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_run_diverging_before_its_first_checkpoint_says_there_is_none(tmp_path):
    config = tiny_config(optim={"lr": 1e9, "momentum": 0.0, "grad_clip": None})
    with pytest.raises(DivergedError, match="no checkpoint had been written"):
        train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "checkpoint.json").exists()


def test_bf16_autocast_and_channels_last(tmp_path):
    config = tiny_config(
        run={"precision": "bf16", "channels_last": True},
        schedule={"epochs": 1},
        eval={"final_attacks": ["clean"]},
    )
    run = train(config, tmp_path / "run", quiet=True)
    row = json.loads((run / "metrics.jsonl").read_text())
    assert math.isfinite(row["train_loss"]) and 0 <= row["val_robust"] <= row["val_clean"]


def test_fp16_needs_a_gpu(tmp_path):
    with pytest.raises(ConfigError, match="run.precision"):
        train(tiny_config(run={"precision": "fp16", "device": "cpu"}), tmp_path / "r", quiet=True)


def test_cli_rejects_an_unknown_key(tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", tiny_dict())
    assert main(["train", str(config), "optim.lr_max=0.2", "--out", str(tmp_path / "r")]) == 2
    assert "optim.lr_max" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_rrn_eval_of_a_run_directory_reads_the_runs_dataset_at_its_input_size(tmp_path, capsys):
    from robustresnet.cli import main

    run = train(tiny_config(schedule={"epochs": 1}), tmp_path / "run", quiet=True)  # 8x8 digits
    own = json.loads((run / "report.json").read_text())
    assert main(["eval", str(run), "-n", "64", "--attacks", "clean", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"]["data"] == "digits/test"
    assert report["flags"]["clean"] == own["flags"]["clean"]


def test_the_advanced_recipe_options_train_as_the_authors_trainer_runs(tmp_path, monkeypatch):
    """Every option of the advanced recipe in one short run: per-epoch one-cycle lr and cycled
    momentum, BN momentum 1.0 for the first step then 0.01, EMA copying during warm-up, batch
    statistics in the attack, an epoch of epoch_images, CW validation with ties kept late."""
    bn_momenta = []
    honest = TRADES.loss

    def recording(self, model, *args):
        bn_momenta.append(next(m.momentum for m in model.modules() if hasattr(m, "momentum")))
        return honest(self, model, *args)

    monkeypatch.setattr(TRADES, "loss", recording)
    config = tiny_config(
        model={"bn_momentum": 0.01, "bn_momentum_first_step": 1.0},
        data={"epoch_images": 256},
        objective={
            "name": "trades", "eps": 0.1, "step_size": 0.05, "steps": 2, "start": "uniform",
            "attack_bn": "train", "label_smoothing": 0.1, "bn_adversarial_only": True,
        },
        optim={"lr": 0.2, "momentum": [0.85, 0.95], "nesterov": True, "no_decay": "bn_in_name"},
        schedule={"kind": "onecycle", "epochs": 3, "warmup_epochs": 2, "interval": "epoch"},
        ema={"tau": 0.995, "warmup_epochs": 1},
        eval={"val_loss": "cw", "val_steps": 3, "val_step_size": 0.05, "ties": "latest",
              "final_attacks": ["clean", "fgsm"]},
    )  # fmt: skip
    run = train(config, tmp_path / "run", quiet=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6]  # 256 images at batch 128
    assert [row["lr"] for row in rows] == pytest.approx([0.2 / 25, 0.2, 0.2 / 25 / 1e4])
    assert [row["momentum"] for row in rows] == pytest.approx([0.95, 0.85, 0.95])
    assert bn_momenta == [1.0] + [0.01] * 5
    report = json.loads((run / "report.json").read_text())
    assert set(report["accuracy"]) >= {"clean", "fgsm"}
