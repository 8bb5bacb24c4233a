"""Issue 16 on the training side: inputs a run meets once it starts (the machine, the dataset, the
run directory, a damaged checkpoint, a full disk) fail with an error naming what to fix."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from _train_helpers import TINY_SPEC, tiny_config, tiny_dict, write_config

from robustresnet.cli import main
from robustresnet.errors import CheckpointError, ConfigError
from robustresnet.train import checkpoint as ckpt
from robustresnet.train.trainer import train


def _missing_device() -> str:
    """A device name torch knows that this machine does not have."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"run": {"device": _missing_device()}}, "run.device"),
        ({"run": {"batch_size": 100_000}}, "run.batch_size"),  # ended in KeyError: 'images'
        ({"data": {"crop_padding": 100_000_000}}, "data.crop_padding"),  # overflowed in torch
        # 10^6 channels: 9 * 10^12 float32 weights in one conv, more than any machine's memory
        ({"model": {"spec": {**TINY_SPEC, "stages": [{"depth": 1, "channels": 10**6}]}}}, "model"),
    ],
)
def test_what_the_machine_or_data_cannot_take_is_refused_before_anything_is_written(
    tmp_path, sections, key
):
    with pytest.raises(ConfigError) as err:
        train(tiny_config(**sections), tmp_path / "run", quiet=True)
    assert err.value.field == key
    assert not (tmp_path / "run").exists()


def test_an_out_path_that_is_a_file_is_named(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"run is a file, not a run directory"):
        train(tiny_config(), tmp_path / "run", quiet=True)


def _state(**changes) -> dict:
    """A state file's entries, as `_checkpoint` writes them, with some changed."""
    state = {
        "step": 1, "epoch": 0, "mid_epoch": True, "model": {}, "optimizer": {}, "scaler": {},
        "ema": None, "history": [], "best": {}, "sums": {}, "ranks": [{}],
    }  # fmt: skip
    return {**state, **changes}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory with its config, as a new run leaves it before the first checkpoint."""
    run = tmp_path / "run"
    ckpt.prepare_run_dir(run, tiny_config(), resume=False)
    return run


GOOD_POINTER = json.dumps({"state": "state/step-000000001.pt", "step": 1, "epoch": 0}).encode()


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("state_bytes", "pointer", "message"),
    [
        (_saved(_state()), b"\xff{}", "checkpoint.json: got .* UTF-8"),
        (_saved(_state()), b"[1]", "names no state file"),
        (_saved(_state()), b'{"state": 5}', "names no state file"),
        (_saved(_state()), b'{"state": "../../etc/passwd"}', "names no state file"),
        (None, GOOD_POINTER, "step-000000001.pt: missing"),
        (b"garbage", GOOD_POINTER, "step-000000001.pt: corrupt or not a torch checkpoint"),
        (b"", GOOD_POINTER, "step-000000001.pt: corrupt or not a torch checkpoint"),
        (_saved(_state())[:300], GOOD_POINTER, "step-000000001.pt: corrupt or not a torch"),
        (_saved([1, 2]), GOOD_POINTER, "not a training state"),
        (_saved({"a": 1}), GOOD_POINTER, "'step' is missing"),
        (_saved(_state(ranks=5)), GOOD_POINTER, "'ranks' is missing or not of type list"),
        (_saved(_state(step="x")), GOOD_POINTER, "'step' is missing or not of type int"),
    ],
)
def test_a_damaged_checkpoint_is_a_checkpoint_error_naming_the_file(
    run_dir, state_bytes, pointer, message
):
    (run_dir / "state").mkdir()
    if state_bytes is not None:
        (run_dir / "state" / "step-000000001.pt").write_bytes(state_bytes)
    (run_dir / ckpt.POINTER).write_bytes(pointer)
    with pytest.raises(CheckpointError, match=message) as err:
        ckpt.load_checkpoint(run_dir)
    assert "--out" in str(err.value)  # says what to do


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One tiny epoch, trained once for the tests that resume it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    config = tiny_config(schedule={"epochs": 1}, eval={"final_attacks": ["clean"]})
    return train(config, run, quiet=True)


def test_a_state_that_does_not_fit_the_network_fails_the_resume_in_one_line(
    finished_run, tmp_path, capsys
):
    run = shutil.copytree(finished_run, tmp_path / "run")
    name = json.loads((run / ckpt.POINTER).read_text())["state"]
    state = torch.load(run / name, weights_only=True)
    state["model"] = {"fc.weight": torch.zeros(1)}
    torch.save(state, run / name)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit this run" in err and "Traceback" not in err


def test_stale_temp_files_are_removed_when_a_run_resumes(run_dir):
    stale = run_dir / "state" / ".step-000000002.pt.x1y2z3w4.tmp"
    other = run_dir / "notes.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half a checkpoint")
    other.write_text("not ours")
    ckpt.prepare_run_dir(run_dir, tiny_config(), resume=True)
    assert not stale.exists() and other.exists()


def _has_dev_full() -> bool:
    return Path("/dev/full").exists() and stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.skipif(not _has_dev_full(), reason="needs the /dev/full device")
def test_a_full_disk_during_torch_save_says_the_disk_is_full(run_dir, monkeypatch):
    """torch.save to a path reports a full disk as a bare RuntimeError ("unexpected pos")."""
    real = ckpt.atomic_write

    def onto_full_disk(path, write):
        if path.suffix != ".pt":
            return real(path, write)
        write(Path("/dev/full"))  # the temp file's disk is full
        return path

    monkeypatch.setattr(ckpt, "atomic_write", onto_full_disk)
    state = _state(model={"w": torch.zeros(100_000)})
    with pytest.raises(CheckpointError, match=r"the disk is full.*checkpoint.* is kept.*--resume"):
        ckpt.save_checkpoint(run_dir, state, {})


def test_a_non_utf8_config_is_named(tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", tiny_dict())
    config.write_bytes(config.read_bytes() + "# caf\xe9\n".encode("latin-1"))
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "tiny.yaml" in err and "UTF-8" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
