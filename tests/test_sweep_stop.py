"""`rrn sweep` owns its trials, in real processes: SIGTERM or Ctrl-C reaches each running trial
once, through the sweep; the sweep waits for them, starts no other, exits 143 / 130 saying how to
continue; a SIGKILLed sweep takes its trials with it (Linux). A stand-in trainer (a fixture
script) plays `rrn train` in most tests, so that each takes seconds; the last runs the real one."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml
from _processes import wait_for
from _train_helpers import tiny_dict

from robustresnet.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}

# Fixture: writes config.yaml like `rrn train` and logs its call; a fresh run with FAKE_WAIT set
# then waits for a signal and writes the signals it received (echoes included) to stopped.json;
# anything else writes report.json at once, as a finished run.
FAKE_TRAINER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path
    received = []
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda signum, frame: received.append(signal.Signals(signum).name))
    args = sys.argv[1:]
    resume = args[0] == "--resume"
    run_dir = Path(args[1] if resume else args[args.index("--out") + 1])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("run: {seed: 0}\\n")
    with open(os.environ["FAKE_CALLS"], "a") as log:
        log.write(json.dumps({"argv": args, "pid": os.getpid()}) + "\\n")
    if resume or not os.environ.get("FAKE_WAIT"):
        (run_dir / "report.json").write_text("{}")
        sys.exit(0)
    deadline = time.monotonic() + 60
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # an echo of the signal would arrive meanwhile
    (run_dir / "stopped.json").write_text(json.dumps(received))
    sys.exit(128 + signal.Signals[received[0]] if received else 1)
    """
)


def _calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def study(tmp_path) -> Path:
    """A sweep of three seeds (runs s0, s1, s2) over the tiny digits config."""
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_dict(schedule={"epochs": 2})))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "axes": {"seed": [0, 1, 2]}}))
    return path


@pytest.fixture
def fake(tmp_path):
    """(argv of `rrn sweep` with the stand-in trainer, its calls file, the environment)."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    calls = tmp_path / "calls.jsonl"
    trainer = shlex.join([sys.executable, str(script)])
    argv = ["sweep", str(tmp_path / "study.yaml"), "--trainer", trainer]
    argv += ["--out", str(tmp_path / "out"), "--quiet"]
    return argv, calls, {**ENV, "FAKE_CALLS": str(calls)}


def _start_sweep(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Its own process group, as a terminal's foreground job: Ctrl-C is SIGINT to the group.
    return subprocess.Popen(
        [sys.executable, "-m", "robustresnet", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _kill_trials(calls: Path) -> None:
    for call in _calls(calls):
        with contextlib.suppress(ProcessLookupError):
            os.kill(call["pid"], signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_stopped_sweep_stops_its_trial_once_starts_no_other_and_continues(
    study, fake, tmp_path, monkeypatch, signum
):
    argv, calls, env = fake
    sweep = _start_sweep(argv, {**env, "FAKE_WAIT": "1"})
    try:
        wait_for(lambda: _calls(calls), sweep, "the first trial")
        if signum == signal.SIGINT:
            os.killpg(sweep.pid, signal.SIGINT)
        else:
            sweep.send_signal(signal.SIGTERM)
        _, err = sweep.communicate(timeout=60)
    finally:
        sweep.kill()
        _kill_trials(calls)
    name = signal.Signals(signum).name
    assert sweep.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"rrn sweep: stopped by {name}: 1 trial(s) stopped (s0), "
        f"2 not started; continue with: {shlex.join(['rrn', *argv])}"
    )
    out = tmp_path / "out"
    assert json.loads((out / "s0" / "stopped.json").read_text()) == [name]  # once, not twice
    assert len(_calls(calls)) == 1  # no other trial started
    summary = json.loads((out / "sweep-summary.json").read_text())
    assert summary["stopped_by"] == name
    status = {t["name"]: t["status"] for t in summary["trials"]}
    assert status == {"s0": "stopped", "s1": "not started", "s2": "not started"}
    assert not (out / "s0" / "failed.json").exists()

    monkeypatch.setenv("FAKE_CALLS", str(calls))
    assert main(argv) == 0  # the same command continues
    summary = json.loads((out / "sweep-summary.json").read_text())
    assert {t["name"]: (t["previous"], t["status"]) for t in summary["trials"]} == {
        "s0": ("interrupted", "finished"),
        "s1": ("new", "finished"),
        "s2": ("new", "finished"),
    }
    assert _calls(calls)[1]["argv"][:2] == ["--resume", str(out / "s0")]


def test_ctrl_c_in_a_library_sweep_stops_its_trial_before_it_propagates(
    study, fake, tmp_path, monkeypatch
):
    from robustresnet.sweep import load_sweep, plan_sweep, run_sweep

    argv, calls, _ = fake
    sweep = load_sweep(tmp_path / "study.yaml")
    trials = plan_sweep(sweep, tmp_path / "out").trials
    trainer = shlex.split(argv[argv.index("--trainer") + 1])

    def ctrl_c_once_a_trial_runs():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _calls(calls):
                os.kill(os.getpid(), signal.SIGINT)  # Python's own handler: KeyboardInterrupt
                return
            time.sleep(0.01)

    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.setenv("FAKE_WAIT", "1")
    threading.Thread(target=ctrl_c_once_a_trial_runs, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, trials, tmp_path / "out", trainer=trainer, quiet=True)
    stopped = tmp_path / "out" / "s0" / "stopped.json"
    assert json.loads(stopped.read_text()) == ["SIGINT"]  # it ended before the sweep returned
    assert len(_calls(calls)) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sigkilled_sweep_takes_its_running_trial_with_it(study, fake, tmp_path):
    argv, calls, env = fake
    sweep = _start_sweep(argv, {**env, "FAKE_WAIT": "1"})
    stopped = tmp_path / "out" / "s0" / "stopped.json"
    try:
        wait_for(lambda: _calls(calls), sweep, "the first trial")
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not stopped.exists():
            assert time.monotonic() < deadline, "the trial outlived its sweep"
            time.sleep(0.01)
    finally:
        sweep.kill()
        _kill_trials(calls)
    # The kernel signals once per thread of the dying sweep the trial is handed to on its way.
    assert set(json.loads(stopped.read_text())) == {"SIGTERM"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_a_sweep_stops_the_real_trainer_with_a_checkpoint(tmp_path, capsys):
    base = tiny_dict(schedule={"epochs": 2}, run={"checkpoint_every": 3})
    base["eval"]["final_attacks"] = ["clean"]
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "axes": {"seed": [0, 1]}}))
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out), "--quiet", "--json"]
    sweep = _start_sweep(argv, ENV)
    trainer = None
    try:
        wait_for(lambda: (out / "s0" / "checkpoint.json").exists(), sweep, "a checkpoint")
        trainer = json.loads((out / "s0" / ".lock").read_text())["pid"]
        os.kill(trainer, signal.SIGSTOP)  # so that it cannot finish before the stop arrives
        wait_for(lambda: _status(trainer)["State"].startswith("T"), sweep, "a stopped trainer")
        sweep.send_signal(signal.SIGTERM)
        wait_for(lambda: _pending(trainer, signal.SIGTERM), sweep, "the forwarded SIGTERM")
        os.kill(trainer, signal.SIGCONT)
        _, err = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None and trainer is not None:  # failed on the way: a frozen trainer
            with contextlib.suppress(ProcessLookupError):
                os.kill(trainer, signal.SIGKILL)
        sweep.kill()
    assert sweep.returncode == 143, err
    assert "Traceback" not in err
    assert "stopped by SIGTERM: 1 trial(s) stopped (s0), 1 not started" in err
    log = (out / "s0" / "train.log").read_text()
    assert "rrn train: stopped by SIGTERM at step " in log and "Traceback" not in log
    capsys.readouterr()
    assert main(argv) == 0  # the same command continues
    summary = json.loads(capsys.readouterr().out)
    assert {t["name"]: (t["previous"], t["status"]) for t in summary["trials"]} == {
        "s0": ("interrupted", "finished"),
        "s1": ("new", "finished"),
    }


def _status(pid: int) -> dict[str, str]:
    """/proc/PID/status as {"State": "T (stopped)", ...}."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _pending(pid: int, signum: int) -> bool:
    """Whether `signum` waits to be delivered to process `pid` (a stopped one keeps it so)."""
    masks = [int(_status(pid)[key], 16) for key in ("ShdPnd", "SigPnd")]
    return any(mask >> (signum - 1) & 1 for mask in masks)
