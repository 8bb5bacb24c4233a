"""Experiment trackers (`run.loggers`): TensorBoard, W&B (offline) and MLflow (a file store)
receive every epoch's metrics row and the final accuracies, read back here with each tracker's
own reader; a resumed run continues the same tracker runs; a missing package fails at once."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _train_helpers import tiny_config, tiny_dict, write_config
from conftest import REPO

from robustresnet.cli import main
from robustresnet.errors import ConfigError
from robustresnet.train.config import LOGGERS
from robustresnet.train.loggers import IDS, TRACKERS, open_loggers
from robustresnet.train.trainer import train

ALL = ["tensorboard", "wandb", "mlflow"]


def test_the_config_takes_the_names_of_the_trackers_there_are():
    assert list(TRACKERS) == list(LOGGERS) == ALL


def _tracker_env(tmp: Path) -> dict[str, str]:
    """W&B offline with its settings and caches in `tmp`; no tracker settings of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    return {
        **env,
        "WANDB_MODE": "offline",
        "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp / "wandb-data"),
    }


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`rrn train --json` of the tiny digits run with every tracker on."""
    tmp = tmp_path_factory.mktemp("tracked")
    config = write_config(tmp / "tiny.yaml", tiny_dict(run={"loggers": ALL}))
    env = {**_tracker_env(tmp), "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "robustresnet", "train", str(config), "--out", "run", "--json"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return tmp / "run", done


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _final(run: Path) -> dict[str, float]:
    return json.loads((run / "report.json").read_text())["accuracy"]


def test_rrn_train_json_is_one_object_on_stdout_and_epoch_lines_go_to_stderr(tracked):
    run, done = tracked
    printed = json.loads(done.stdout)  # nothing else on stdout, trackers' chatter included
    assert printed["run_dir"] == "run"
    assert printed["reports"] == [json.loads((run / "report.json").read_text())]
    assert "epoch   2/2  loss" in done.stderr


def test_tensorboard_holds_every_metric_of_every_epoch_and_the_final_accuracies(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = tracked
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = _rows(run)
    for key in ("train_loss", "val_robust", "lr"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in rows])
    for attack, accuracy in _final(run).items():
        assert events.Scalars(f"test_{attack}")[-1].value == pytest.approx(accuracy)


def _wandb_records(path: Path) -> list[Any]:
    """The records of a .wandb file: a 7-byte header, then LevelDB-log blocks of 32 KiB whose
    chunks (checksum, length, type: 1 full, 2 first, 3 middle, 4 last) hold protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data, block, position, chunks, records = path.read_bytes(), 32768, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (length == 0 and kind == 0):
            position += left  # the block's padding
            continue
        chunks += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def _wandb_run(run: Path) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """The offline W&B run in RUN_DIR/wandb: its run record, history rows and summary."""
    (path,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    info, history, summary = None, [], {}
    for record in _wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info = record.run
        elif kind == "history":
            row = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
            history.append({key: json.loads(value) for key, value in row.items()})
        elif kind == "summary":
            summary.update({i.key: json.loads(i.value_json) for i in record.summary.update})
    return info, history, summary


def test_wandb_offline_run_is_named_after_the_run_and_holds_the_rows_and_final_report(tracked):
    run, _ = tracked
    info, history, summary = _wandb_run(run)
    assert info.run_id == json.loads((run / IDS).read_text())["wandb"]
    assert info.display_name == "run" and info.project == "robustresnet"
    logged = [h for h in history if "train_loss" in h]
    assert [h["_step"] for h in logged] == [1, 2]
    for key in ("train_loss", "val_robust", "lr"):
        assert [h[key] for h in logged] == pytest.approx([r[key] for r in _rows(run)])
    for attack, accuracy in _final(run).items():
        assert summary[f"test_{attack}"] == pytest.approx(accuracy)


def _mlflow_client(run: Path, monkeypatch) -> Any:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient((run / "mlruns").resolve().as_uri())


def test_mlflow_file_store_in_the_run_holds_the_config_rows_and_final_report(tracked, monkeypatch):
    run, _ = tracked
    client = _mlflow_client(run, monkeypatch)
    found = client.get_run(json.loads((run / IDS).read_text())["mlflow"])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert client.get_experiment(found.info.experiment_id).name == "robustresnet"
    assert found.data.params["optim.lr"] == "0.05"
    assert found.data.params["run.loggers"] == str(ALL)
    for key in ("train_loss", "val_robust", "lr"):
        history = client.get_metric_history(found.info.run_id, key)
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx([r[key] for r in _rows(run)])
    for attack, accuracy in _final(run).items():
        assert found.data.metrics[f"test_{attack}"] == pytest.approx(accuracy)


def test_a_resumed_run_continues_its_tracker_runs(tmp_path, monkeypatch, request):
    """A process killed after logging epoch 2 but before its checkpoint: the resume from epoch 1
    logs epoch 2 again, into the same W&B and MLflow runs; TensorBoard drops the first copy."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for key, value in _tracker_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # leave pytest's capture of stdout alone
    import wandb

    request.addfinalizer(wandb.teardown)  # W&B's service process ends with the test, not pytest
    run = tmp_path / "run"
    run.mkdir()
    config = tiny_config(run={"loggers": ALL})
    first = open_loggers(config, run, epoch=0)
    first.log_epoch({"epoch": 1, "train_loss": 2.0})
    first.log_epoch({"epoch": 2, "train_loss": 9.0})
    first.close(finished=False)
    ids = json.loads((run / IDS).read_text())
    with open_loggers(config, run, epoch=1) as again:
        again.log_epoch({"epoch": 2, "train_loss": 1.0})
        again.log_final([{"accuracy": {"clean": 0.5, "aa:attacks=apgd-ce": 0.25}}], 2)
    assert json.loads((run / IDS).read_text()) == ids
    assert len(list((run / "wandb").glob(f"offline-run-*-{ids['wandb']}"))) == 2
    client = _mlflow_client(run, monkeypatch)
    found = client.get_run(ids["mlflow"])
    assert found.info.status == "FINISHED"
    assert found.data.metrics["test_aa_attacks_apgd-ce"] == 0.25
    losses = [(m.step, m.value) for m in client.get_metric_history(ids["mlflow"], "train_loss")]
    assert sorted(losses) == [(1, 2.0), (2, 1.0), (2, 9.0)]  # MLflow keeps both copies
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("train_loss")] == [(1, 2.0), (2, 1.0)]


@pytest.mark.parametrize("tracker", ALL)
def test_a_missing_tracker_package_fails_before_any_work_naming_the_extra(
    tracker, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, tracker, None)  # `import tracker` now raises ImportError
    run = tmp_path / "run"
    extra = f"pip install 'robustresnet\\[{tracker}\\]'"
    with pytest.raises(ConfigError, match=rf"^run\.loggers: got '{tracker}', .*{extra}$"):
        train(tiny_config(run={"loggers": [tracker]}), run, quiet=True)
    assert not run.exists()
    config = write_config(tmp_path / "tiny.yaml", tiny_dict())
    argv = ["train", str(config), f"run.loggers=[{tracker}]", "--out", str(run), "--quiet"]
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback


def test_a_tracker_store_that_cannot_be_used_is_named(tmp_path):
    config = tiny_config(run={"loggers": ["mlflow"], "mlflow": {"tracking_uri": "nowhere://x"}})
    with pytest.raises(ConfigError, match=r"^run\.mlflow\.tracking_uri: got 'nowhere://x'"):
        open_loggers(config, tmp_path, epoch=0)
