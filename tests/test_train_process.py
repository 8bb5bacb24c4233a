"""Real processes: SIGKILL mid-epoch then resume is exact; 2 gloo ranks, launched by torchrun or
with the variables srun sets, equal one process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _train_helpers import TINY_SPEC, tiny_dict, write_config
from safetensors.torch import load_file

from robustresnet.train.checkpoint import load_checkpoint
from robustresnet.train.config import ExperimentConfig
from robustresnet.train.trainer import train

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
PER_EPOCH = 10  # (1442 digits - 64 held out) // 128


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "weights" / "last.safetensors")


def _train_losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train_loss"] for line in lines]


def _wait_for_mid_epoch_checkpoint(proc: subprocess.Popen, pointer: Path) -> int:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if pointer.exists():
            step = json.loads(pointer.read_text())["step"]
            if step % PER_EPOCH:
                return step
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it was killed: {proc.stderr.read()}")
        time.sleep(0.01)
    pytest.fail("no mid-epoch checkpoint within 90 s")


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    data = tiny_dict(
        run={"checkpoint_every": 3}, schedule={"epochs": 3}, eval={"final_attacks": ["clean"]}
    )
    config_file = write_config(tmp_path / "tiny.yaml", data)
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "robustresnet", "train", "--quiet"]
    proc = subprocess.Popen(
        [*command, str(config_file), "--out", str(killed)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_mid_epoch_checkpoint(proc, killed / "checkpoint.json")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    state = load_checkpoint(killed)
    assert state["mid_epoch"] and state["step"] < 3 * PER_EPOCH

    subprocess.run([*command, "--resume", str(killed)], env=ENV, check=True, capture_output=True)
    straight = train(ExperimentConfig.from_dict(data), tmp_path / "straight", quiet=True)

    resumed, reference = _weights(killed), _weights(straight)
    assert resumed.keys() == reference.keys()
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    assert _train_losses(killed) == _train_losses(straight)


def _torchrun(command: list[str]) -> None:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    subprocess.run([*launch, *command], env=ENV, check=True, capture_output=True, timeout=120)


def _srun(command: list[str]) -> None:
    """Two tasks with the variables srun gives them (and no torchrun ones)."""
    env = {k: v for k, v in ENV.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(SLURM_NTASKS="2", SLURM_NODELIST="localhost", SLURM_JOB_ID="4242")
    env["MASTER_PORT"] = str(_free_port())
    tasks = [
        subprocess.Popen(
            [sys.executable, *command],
            env={**env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for task in tasks:
        _, err = task.communicate(timeout=120)
        assert task.returncode == 0, err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("launch", [_torchrun, _srun], ids=["torchrun", "srun"])
def test_two_gloo_ranks_match_one_process(tmp_path, launch):
    # GroupNorm, not BatchNorm: with per-rank batch statistics two half batches normalise
    # differently from one whole batch, and SyncBatchNorm needs GPUs. GroupNorm is per sample.
    spec = {
        **TINY_SPEC,
        "stages": [{**s, "normalization": "groupnorm"} for s in TINY_SPEC["stages"]],
    }
    # The loader gives each rank a contiguous half of the epoch's permutation, so one step over
    # the whole epoch (2 x 689 images) sees the same images as one process with a 1378 batch.
    data = tiny_dict(
        model={"spec": spec},
        data={"crop_padding": 0, "flip": False},  # no per-rank augmentation draws
        # PGD-AT from x itself: the attack draws no random numbers. (TRADES from x would start
        # where the KL gradient is zero, and sign() of fp32 noise differs with the batch split.)
        objective={"name": "pgd_at", "start": "none"},
        schedule={"epochs": 3},
        eval={"final_attacks": ["clean"]},
        run={"batch_size": 1378},
    )
    config_file = write_config(tmp_path / "ddp.yaml", data)
    ddp_run = tmp_path / "ddp"
    launch(["-m", "robustresnet", "train", "--quiet", str(config_file), "--out", str(ddp_run)])
    single = train(ExperimentConfig.from_dict(data), tmp_path / "single", quiet=True)
    two, one = _weights(ddp_run), _weights(single)
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(one["fc.weight"], _initial_fc(data))  # the weights did move


def _initial_fc(data: dict) -> torch.Tensor:
    from robustresnet.arch import ArchSpec, build_model

    torch.manual_seed(data["run"].get("seed", 0))
    return build_model(ArchSpec.from_dict(data["model"]["spec"])).fc.weight.detach()
