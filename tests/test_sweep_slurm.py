"""`rrn sweep --backend slurm` through submitit, and `rrn sweep --status`: the job array's sbatch
script (a stand-in `sbatch` on PATH records it), a trial's requeue that resumes its run, skipped
finished trials, a missing submitit; then the real trainer under submitit's local executor."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import yaml
from _processes import wait_for
from _train_helpers import tiny_dict

from robustresnet.cli import main
from robustresnet.errors import ConfigError
from robustresnet.sweep import load_sweep, plan_sweep, write_specs
from robustresnet.sweep.execute import trial_state
from robustresnet.sweep.slurm_backend import SlurmTrial, submit_sweep

submitit = pytest.importorskip("submitit", reason="pip install '.[slurm]'")

RESOURCES = {
    "num_cpus": 8,
    "num_gpus": 2,
    "slurm": {
        "partition": "gpu",
        "time": "2:30:00",
        "account": "lab",
        "mem_gb": 16,
        "sbatch": {"qos": "high", "exclusive": True},
    },
}


def _study(folder: Path, **sweep) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(tiny_dict(schedule={"epochs": 1})))
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "output": "runs", **sweep}))
    return path


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """srun, sbatch, squeue and sacct on PATH; sbatch keeps each script it gets in sbatch.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    scripts = {
        "sbatch": f'cat "$1" >> {log}\necho "Submitted batch job 4242"',
        "srun": "exit 0",
        "squeue": "exit 0",
        "sacct": 'echo "JobID|State|NodeList"',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_the_unfinished_trials_go_out_as_one_array_with_the_sweeps_resources(
    tmp_path, fake_slurm, capsys
):
    path = _study(tmp_path, axes={"seed": [0, 1, 2]}, resources=RESOURCES)
    runs = tmp_path / "runs"
    (runs / "s1").mkdir(parents=True)
    (runs / "s1" / "report.json").write_text("{}")  # finished: no job for it
    assert main(["sweep", str(path), "--backend", "slurm", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["jobs"] == {"s0": "4242_0", "s2": "4242_1"}
    assert record["skipped"] == ["s1"]
    assert json.loads((runs / "sweep-slurm.json").read_text())["jobs"] == record["jobs"]
    script = fake_slurm.read_text()
    lines = set(script.splitlines())
    expected = {
        "#SBATCH --array=0-1%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --time=150",
        "#SBATCH --account=lab",
        "#SBATCH --mem=16GB",
        "#SBATCH --qos=high",
        "#SBATCH --exclusive",
        "#SBATCH --job-name=rrn-study",
    }
    assert expected <= lines, script
    command = next(line for line in script.splitlines() if "submitit.core._submit" in line)
    assert command.startswith("srun ") and str(runs / "slurm" / "%j") in command
    # Each array task's pickled trial: its run directory, the interpreter's `rrn train`.
    trials = [
        submitit.helpers.DelayedSubmission.load(p).function
        for p in sorted((runs / "slurm").glob("4242_*/*_submitted.pkl"))
    ]
    assert [t.job["run_dir"] for t in trials] == [str(runs / "s0"), str(runs / "s2")]
    assert trials[0].job["threads"] == 8

    main(["sweep", str(path), "--backend", "slurm"])
    out = capsys.readouterr().out
    assert "4242_0" in out and "--status" in out and "squeue -j 4242" in out


def test_whole_cpus_and_gpus_and_submitit_are_required(tmp_path, monkeypatch):
    sweep = load_sweep(_study(tmp_path, axes={"seed": [0]}, resources={"num_gpus": 0.5}))
    plan = plan_sweep(sweep, tmp_path / "runs")
    with pytest.raises(ConfigError, match="resources.num_gpus"):
        submit_sweep(sweep, plan.trials, tmp_path / "runs", cluster="local")
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'robustresnet\[slurm\]'"):
        submit_sweep(sweep, plan.trials, tmp_path / "runs", cluster="local")


# Fixture: plays `rrn train`, logging its argv and the signals it receives; a fresh run writes
# config.yaml and waits for SIGTERM (then leaves a checkpoint and exits 143), a resumed one
# writes report.json. It must outlive a SIGUSR2: the job's warning signal reaches every process.
FAKE_TRAINER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path
    args = sys.argv[1:]
    resume = args[0] == "--resume"
    run_dir = Path(args[1] if resume else args[args.index("--out") + 1])
    log = run_dir.parent / "calls.jsonl"
    def note(**entry):
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\\n")
    note(argv=args, pid=os.getpid())
    if resume:
        (run_dir / "report.json").write_text("{}")
        sys.exit(0)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("schedule: {epochs: 3}\\n")
    while not stop:
        time.sleep(0.01)
    (run_dir / "checkpoint.json").write_text(json.dumps({"epoch": 1, "step": 10}))
    note(stopped=True)
    sys.exit(143)
    """
)


def _calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_warned_trial_stops_its_trainer_with_a_checkpoint_and_requeues_as_a_resume(tmp_path):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    run_dir = tmp_path / "runs" / "s0"
    job = {"name": "s0", "base": "base.yaml", "overrides": [], "run_dir": str(run_dir)}
    trial = SlurmTrial({**job, "threads": 1, "trainer": [sys.executable, str(script)]})
    results: list[dict] = []
    worker = threading.Thread(target=lambda: results.append(trial()))
    worker.start()
    calls = run_dir.parent / "calls.jsonl"
    first = wait_for(lambda: _calls(calls), _Alive(worker), "the trainer's start")[0]
    os.kill(first["pid"], signal.SIGUSR2)  # ignored: the trainer stops on SIGTERM alone

    resubmission = trial.checkpoint()  # what submitit calls on the warning signal
    assert _calls(calls)[-1] == {"stopped": True}  # it waited for the trainer's checkpoint
    worker.join(30)
    assert trial_state(run_dir) == "interrupted"
    assert isinstance(resubmission, submitit.helpers.DelayedSubmission)
    assert resubmission.function.job == trial.job

    result = resubmission.result()  # the requeued job: the same trial, which resumes the run
    assert result["status"] == "finished" and result["previous"] == "interrupted"
    assert _calls(calls)[-1]["argv"][:2] == ["--resume", str(run_dir)]


class _Alive:
    """A thread as wait_for's process: `poll()` is None while it runs."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.stderr = None

    def poll(self) -> int | None:
        return None if self.thread.is_alive() else 0


def test_the_real_trainer_under_submitits_local_executor_then_status(tmp_path, capsys):
    # Two trials: one trains; one has a held-out split larger than the data, which the trainer
    # refuses: recorded in failed.json, as the other backends do, while the other finishes.
    path = _study(tmp_path, zip=[{"seed": [0, 1], "data.val_size": [64, 5000]}])
    sweep = load_sweep(path)
    runs = tmp_path / "runs"
    plan = plan_sweep(sweep, runs)
    write_specs(plan, runs)
    assert main(["sweep", str(path), "--status", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["counts"] == {"not started": 2}

    _, handles = submit_sweep(sweep, plan.trials, runs, cluster="local")
    results = {r["name"]: r for r in (h.result() for h in handles)}
    assert {name: r["status"] for name, r in results.items()} == {
        "val_size64-s0": "finished",
        "val_size5000-s1": "failed",
    }
    failure = json.loads((runs / "val_size5000-s1" / "failed.json").read_text())
    assert "data.val_size" in failure["error"]

    assert main(["sweep", str(path), "--status", "--json"]) == 0
    status = {t["name"]: t for t in json.loads(capsys.readouterr().out)["trials"]}
    assert status["val_size64-s0"]["state"] == "done"
    assert (status["val_size64-s0"]["epoch"], status["val_size64-s0"]["epochs"]) == (1, 1)
    assert status["val_size5000-s1"]["state"] == "failed"
    assert "data.val_size" in status["val_size5000-s1"]["error"]
    assert main(["sweep", str(path), "--status"]) == 0
    table = capsys.readouterr().out
    assert "val_size64-s0" in table and "epoch 1/1" in table and "1 done, 1 failed" in table

    again, retried = submit_sweep(sweep, plan.trials, runs, cluster="local")
    assert again["skipped"] == ["val_size64-s0"] and list(again["jobs"]) == ["val_size5000-s1"]
    assert [h.result()["status"] for h in retried] == ["failed"]
