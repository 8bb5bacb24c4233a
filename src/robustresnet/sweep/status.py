"""`rrn sweep --status`: each trial's state read from its run directory alone, so that it works
for every backend, with no job system to ask and while the trials are still running."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .._files import read_yaml
from ..train.checkpoint import CONFIG, POINTER
from .execute import FAILED_FILE, read_record, trial_state
from .expand import Trial

# trial_state's words as a reader of a status table wants them: a run directory cannot tell a
# running trial from one whose job ended early, so both are "partial" (with their progress).
STATES = {"finished": "done", "interrupted": "partial", "failed": "failed", "new": "not started"}


def trial_status(name: str, run_dir: Path) -> dict[str, Any]:
    """One trial's state, epochs done of its total (from the last checkpoint) and, when its
    last attempt failed, the error `failed.json` recorded."""
    state = STATES[trial_state(run_dir)]
    failed, pointer = run_dir / FAILED_FILE, run_dir / POINTER
    # A run that failed but left its config is resumable (state "partial"); it reads "failed"
    # until a later attempt checkpoints after that failure.
    since = pointer.stat().st_mtime if pointer.is_file() else 0.0
    if state == "partial" and failed.is_file() and since <= failed.stat().st_mtime:
        state = "failed"
    status: dict[str, Any] = {"name": name, "run_dir": str(run_dir), "state": state}
    if state == "failed":
        status["error"] = read_record(failed).get("error")
    if (run_dir / CONFIG).is_file():
        config = read_yaml(run_dir / CONFIG, CONFIG) or {}
        status["epochs"] = (config.get("schedule") or {}).get("epochs")
        progress = read_record(pointer)
        status["epoch"] = progress.get("epoch", 0)
        status["step"] = progress.get("step", 0)
    return status


def sweep_status(trials: list[Trial], out_dir: str | Path) -> dict[str, Any]:
    """Every planned trial's status and the count of each state."""
    rows = [trial_status(t.name, Path(out_dir) / t.name) for t in trials]
    counts = dict(Counter(row["state"] for row in rows))
    return {"output": str(out_dir), "trials": rows, "counts": counts}
