"""`rrn eval --out F` in real processes: F is used by one evaluation at a time; SIGTERM stops it
at once with the finished batches saved, and the command it prints resumes and completes it."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _train_helpers import TINY_SPEC

from robustresnet import ArchSpec, build_model, save_weights

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """An untrained tiny network as a run directory (arch.yaml + weights/last.safetensors)."""
    spec = ArchSpec.from_dict(TINY_SPEC)
    spec.save(tmp_path / "run" / "arch.yaml")
    save_weights(build_model(spec), tmp_path / "run" / "weights" / "last.safetensors")
    return tmp_path / "run"


def _rrn(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "robustresnet", *args]


def test_rrn_eval_is_locked_stops_on_sigterm_and_resumes(run_dir, tmp_path):
    out = tmp_path / "eval"
    # Batches of one sample, each saved: a long evaluation with something saved early.
    args = ["eval", str(run_dir), "--data", "digits", "-n", "200", "--attacks", "clean,pgd200"]
    args += ["--batch-size", "1", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(
        _rrn(args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while not (out / "report.json").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no batch saved within 90 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGSTOP)  # it holds --out and cannot finish meanwhile
        second = subprocess.run(_rrn(args), env=ENV, capture_output=True, text=True)
        assert second.returncode == 2
        assert second.stderr.startswith(
            f"rrn eval: error: {out} is in use by process {proc.pid} on host "
        ), second.stderr
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    command = shlex.join(["rrn", *args])
    assert err.strip().splitlines()[-1] == (
        f"rrn eval: stopped by SIGTERM; the finished batches are in {out / 'report.json'}; "
        f"resume with: {command}"
    )
    assert not json.loads((out / "report.json").read_text())["complete"]

    subprocess.run(_rrn(shlex.split(command)[1:]), env=ENV, check=True, capture_output=True)
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and "." not in report["flags"]["pgd200"]
