"""Running one trial as an `rrn train` subprocess: skip if finished, resume if interrupted,
record a failure in `failed.json` and return, never raise, so that the sweep goes on; a trial
that a stopping sweep stopped is "stopped" (resumable), one it did not start "not started"."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from .._io import write_json
from .children import Children

# Files the trainer writes into a run directory (the contract of `rrn train`).
FINAL_REPORT = "report.json"
RESOLVED_CONFIG = "config.yaml"
# Files the sweep itself keeps beside them.
LOG_FILE = "train.log"
FAILED_FILE = "failed.json"
TRIAL_FILE = "sweep-trial.json"  # the successful attempt's record: command, wall and CPU time
LOG_TAIL_LINES = 60


def trial_state(run_dir: Path) -> str:
    """`finished` (final report present), `interrupted` (resumable), `failed` or `new`."""
    if (run_dir / FINAL_REPORT).is_file():
        return "finished"
    if (run_dir / RESOLVED_CONFIG).is_file():
        return "interrupted"
    if (run_dir / FAILED_FILE).is_file():
        return "failed"
    return "new"


def default_trainer() -> list[str]:
    """The command prefix that runs `rrn train` with this interpreter."""
    return [sys.executable, "-m", "robustresnet", "train"]


def trainer_command(job: dict[str, Any], *, resume: bool) -> list[str]:
    """The command line for a job: a fresh run with its overrides, or `--resume RUN_DIR`."""
    prefix = list(job.get("trainer") or default_trainer())
    if resume:
        return [*prefix, "--resume", job["run_dir"], "--quiet"]
    return [*prefix, job["base"], *job["overrides"], "--out", job["run_dir"], "--quiet"]


def execute_trial(job: dict[str, Any], children: Children | None = None) -> dict[str, Any]:
    """Run one job (a plain dict, so that Ray can ship it) and return its result record;
    `children`: the sweep's running trials, which a stop signal reaches."""
    children = children or Children()
    run_dir = Path(job["run_dir"])
    state = trial_state(run_dir)
    result: dict[str, Any] = {"name": job["name"], "run_dir": str(run_dir), "previous": state}
    if state == "finished":
        earlier = read_record(run_dir / TRIAL_FILE)
        trained = {f"trained_{k}": earlier[k] for k in ("seconds", "cpu_seconds") if k in earlier}
        return {**result, "status": "skipped", "seconds": 0.0, **trained}
    not_started = {**result, "status": "not started", "seconds": 0.0}
    if children.stop_signal is not None:
        return not_started
    run_dir.mkdir(parents=True, exist_ok=True)
    command = trainer_command(job, resume=state == "interrupted")
    env = {**os.environ, **_thread_env(job.get("threads"))}
    start = time.monotonic()
    with open(run_dir / LOG_FILE, "a", encoding="utf-8") as log:
        log.write(f"\n$ {shlex.join(command)}\n")
        log.flush()
        process = children.start(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        if process is None:
            return not_started
        returncode, cpu_seconds = children.wait(process)
    seconds = round(time.monotonic() - start, 2)
    result.update(command=command, returncode=returncode, seconds=seconds, cpu_seconds=cpu_seconds)
    if returncode == 0 and trial_state(run_dir) == "finished":
        (run_dir / FAILED_FILE).unlink(missing_ok=True)
        result["status"] = "finished"
        write_json(run_dir / TRIAL_FILE, result)
        return result
    if children.stop_signal is not None:
        return {**result, "status": "stopped"}  # no failed.json: a rerun resumes it
    return _record_failure(run_dir, result)


def _record_failure(run_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Write `failed.json` with the exit status and the log's last lines (the traceback)."""
    with open(run_dir / LOG_FILE, encoding="utf-8", errors="replace") as log:
        tail = "".join(deque(log, maxlen=LOG_TAIL_LINES))
    lines = [line for line in tail.splitlines() if line.strip()]
    if result["returncode"] == 0:
        error = f"the trainer exited 0 without writing {FINAL_REPORT}"
    else:
        error = lines[-1] if lines else f"exit status {result['returncode']}"
    record = {**result, "status": "failed", "error": error, "log_tail": tail}
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(run_dir / FAILED_FILE, record)
    return {key: value for key, value in record.items() if key != "log_tail"}


def read_record(path: Path) -> dict[str, Any]:
    """A JSON record the trainer or the sweep wrote, or {} while it is missing."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _thread_env(threads: int | None) -> dict[str, str]:
    """Thread-count variables so that parallel trials do not oversubscribe the cores."""
    if not threads:
        return {}
    count = str(int(threads))
    return {"OMP_NUM_THREADS": count, "MKL_NUM_THREADS": count, "OPENBLAS_NUM_THREADS": count}
