"""Stops and locks of training: SIGTERM / SIGINT stop at a step with a checkpoint from which
--resume continues exactly; a run directory is used by one process at a time."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _processes import wait_for
from _train_helpers import tiny_dict, write_config
from safetensors.torch import load_file

from robustresnet import _stop
from robustresnet.errors import Stopped
from robustresnet.train import trainer as trainer_module
from robustresnet.train.checkpoint import load_checkpoint
from robustresnet.train.config import ExperimentConfig
from robustresnet.train.trainer import train

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
RRN_TRAIN = [sys.executable, "-m", "robustresnet", "train", "--quiet"]
DATA = tiny_dict(schedule={"epochs": 3}, eval={"final_attacks": ["clean"]})  # 10 steps an epoch


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "weights" / "last.safetensors")


def _assert_same_run(run: Path, reference: Path) -> None:
    resumed, straight = _weights(run), _weights(reference)
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key
    rows = [(run / "metrics.jsonl").read_text(), (reference / "metrics.jsonl").read_text()]
    losses = [[json.loads(line)["train_loss"] for line in r.splitlines()] for r in rows]
    assert losses[0] == losses[1]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """DATA trained without a stop."""
    return train(ExperimentConfig.from_dict(DATA), tmp_path_factory.mktemp("s") / "run", quiet=True)


def _signal_at_step(monkeypatch, step: int, signum: int) -> None:
    """Raise `signum` in this process during optimizer step `step` (1-based)."""
    honest, calls = trainer_module.train_step, {"n": 0}

    def signalling(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            signal.raise_signal(signum)
        return honest(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_step", signalling)


def test_a_signal_stops_training_at_the_step_with_a_checkpoint_and_resume_is_exact(
    tmp_path, monkeypatch, straight
):
    handlers = {s: signal.getsignal(s) for s in _stop.SIGNALS}
    _signal_at_step(monkeypatch, 13, signal.SIGTERM)
    run = tmp_path / "run"
    with pytest.raises(Stopped) as stop:
        train(ExperimentConfig.from_dict(DATA), run, quiet=True, stop_on_signals=True)
    assert stop.value.exit_code == 143
    assert str(stop.value) == (
        f"stopped by SIGTERM at step 13 (epoch 2); resume with: rrn train --resume {run}"
    )
    assert {s: signal.getsignal(s) for s in _stop.SIGNALS} == handlers  # a library call restores
    state = load_checkpoint(run)
    assert state["step"] == 13 and state["mid_epoch"]
    assert not (run / "report.json").exists()
    monkeypatch.undo()
    train(ExperimentConfig.from_dict(DATA), run, resume=True, quiet=True)
    _assert_same_run(run, straight)


def test_a_second_signal_while_stopping_stops_at_once_keeping_the_last_checkpoint(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(_stop, "ECHO_SECONDS", 0.0)
    _signal_at_step(monkeypatch, 13, signal.SIGINT)
    honest = trainer_module._checkpoint

    def impatient(t, **kwargs):
        if t.step == 13:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C again while the checkpoint is written
        honest(t, **kwargs)

    monkeypatch.setattr(trainer_module, "_checkpoint", impatient)
    run = tmp_path / "run"
    with pytest.raises(Stopped) as stop:
        train(ExperimentConfig.from_dict(DATA), run, quiet=True, stop_on_signals=True)
    assert stop.value.exit_code == 130
    assert str(stop.value) == (
        "stopped by a second SIGINT at once; the last complete checkpoint is kept; "
        f"resume with: rrn train --resume {run}"
    )
    assert load_checkpoint(run)["step"] == 10  # the end of epoch 1


def _lock_holder(run: Path) -> int | None:
    try:
        return json.loads((run / ".lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*RRN_TRAIN, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _stop_after_first_checkpoint(run: Path, sig: int, *args: str) -> tuple[int, str, str]:
    """`rrn train ARGS` sent `sig` once `run` has a checkpoint: (exit code, stdout, stderr)."""
    proc = subprocess.Popen(
        [*RRN_TRAIN, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: (run / "checkpoint.json").exists(), proc, "first checkpoint")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, out, err


def test_rrn_train_on_sigterm_checkpoints_exits_143_and_resumes_exactly(tmp_path, straight):
    config = write_config(tmp_path / "tiny.yaml", DATA)
    run = tmp_path / "run"
    code, _, err = _stop_after_first_checkpoint(run, signal.SIGTERM, str(config), "--out", str(run))
    assert code == 143, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    found = re.fullmatch(
        rf"rrn train: stopped by SIGTERM at step (\d+) \((end of )?epoch \d\); "
        rf"resume with: rrn train --resume {re.escape(str(run))}",
        line,
    )
    assert found, line
    assert load_checkpoint(run)["step"] == int(found.group(1))
    subprocess.run([*RRN_TRAIN, "--resume", str(run)], env=ENV, check=True, capture_output=True)
    _assert_same_run(run, straight)


def test_rrn_train_json_on_ctrl_c_prints_nothing_on_stdout_exits_130_and_the_resume_command(
    tmp_path,
):
    """The resume command is printed ready to paste: a folder with a space is quoted."""
    config = write_config(tmp_path / "tiny.yaml", DATA)
    run = tmp_path / "my runs" / "a1"
    code, out, err = _stop_after_first_checkpoint(
        run, signal.SIGINT, str(config), "--out", str(run), "--json"
    )
    assert code == 130, err
    assert out == "" and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    stopped = r"rrn train: stopped by SIGINT at step (\d+) \((end of )?epoch \d\)"
    found = re.fullmatch(stopped + "; resume with: (.*)", line)
    assert found, line
    assert int(found.group(1)) == load_checkpoint(run)["step"]
    assert shlex.split(found.group(3)) == ["rrn", "train", "--resume", str(run)]


def test_a_run_directory_is_used_by_one_process_at_a_time(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_dict(schedule={"epochs": 200}))
    run = tmp_path / "run"
    first = _start(str(config), "--out", str(run))
    processes = [first]
    try:
        wait_for(lambda: (run / "config.yaml").exists(), first, "config.yaml")
        first.send_signal(signal.SIGSTOP)  # it holds the directory, however slow the others are
        for args in ([str(config), "--out", str(run)], ["--resume", str(run)]):
            second = subprocess.run([*RRN_TRAIN, *args], env=ENV, capture_output=True, text=True)
            assert second.returncode == 2, second.stderr
            assert second.stderr.startswith(
                f"rrn train: error: {run} is in use by process {first.pid} on host "
            ), second.stderr
            assert second.stderr.strip().endswith("wait for it or stop it")
        first.send_signal(signal.SIGINT)
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=60) == 130
        assert first.stderr.read().startswith("rrn train: stopped by SIGINT ")

        resumed = _start("--resume", str(run))
        processes.append(resumed)
        wait_for(lambda: _lock_holder(run) == resumed.pid, resumed, "the resumed run's lock")
        resumed.send_signal(signal.SIGSTOP)
        again = subprocess.run(
            [*RRN_TRAIN, "--resume", str(run)], env=ENV, capture_output=True, text=True
        )
        assert again.returncode == 2
        assert f"is in use by process {resumed.pid} on host " in again.stderr
        resumed.send_signal(signal.SIGTERM)
        resumed.send_signal(signal.SIGCONT)
        assert resumed.wait(timeout=60) == 143
    finally:
        for proc in processes:
            proc.kill()
            proc.wait()


def _ranks(agent: int) -> dict[int, int]:
    """{rank: pid} of the workers that the torchrun process `agent` started."""
    ranks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        rank = [item[5:] for item in environ if item.startswith(b"RANK=")]
        if parent == agent and rank:
            ranks[int(rank[0])] = int(stat.parent.name)
    return ranks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks in /proc")
def test_ddp_ranks_stop_at_the_same_step_when_one_is_signalled_and_resume(tmp_path):
    config = write_config(tmp_path / "ddp.yaml", DATA)
    run = tmp_path / "ddp"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    rrn = [*launch, "-m", "robustresnet", "train", "--quiet"]
    proc = subprocess.Popen(
        [*rrn, str(config), "--out", str(run)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ranks = {}
    try:
        wait_for(lambda: (run / "checkpoint.json").exists(), proc, "the first checkpoint")
        ranks = wait_for(lambda: len(_ranks(proc.pid)) == 2 and _ranks(proc.pid), proc, "ranks")
        for pid in ranks.values():  # frozen, so that the run cannot end before the signal
            os.kill(pid, signal.SIGSTOP)
        os.kill(ranks[1], signal.SIGTERM)  # rank 1 alone
        for pid in ranks.values():
            os.kill(pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # failed on the way: torchrun leaves its workers when killed
            for pid in ranks.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        proc.kill()
    said = re.findall(r"rrn train: stopped by SIGTERM at step (\d+) \((?:end of )?epoch 2\)", err)
    assert len(said) == 1, err  # rank 0 alone says it, for both
    codes = re.findall(r"exitcode\s*:\s*(\d+)", err)  # torchrun's summary of its workers
    assert set(codes) == {"143"} and len(codes) >= 2, err
    step = int(said[0])
    assert step % 5 == 0 and load_checkpoint(run)["step"] == step
    subprocess.run([*rrn, "--resume", str(run)], env=ENV, check=True, capture_output=True)
    assert load_checkpoint(run)["epoch"] == 3 and (run / "report.json").is_file()
