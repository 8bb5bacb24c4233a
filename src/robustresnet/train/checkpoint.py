"""Run directory layout and crash-safe checkpoints.

RUN_DIR/
  config.yaml        resolved ExperimentConfig (header: package version, git SHA)
  arch.yaml          the ArchSpec, so `rrn eval RUN_DIR` rebuilds the network
  checkpoint.json    pointer to the last complete checkpoint, written LAST
  state/step-N.pt    model, optimizer, EMA, RNG, loader state, counters, metric history
  weights/           last / best / ema .safetensors
  metrics.jsonl, metrics.csv, curves.png, report.json, report.md
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from .._files import read_json
from .._io import atomic_write, remove_stale_temp_files, write_json, write_text
from ..arch.compat import load_torch_file
from ..errors import (
    DISK_FULL,
    CheckpointError,
    ConfigError,
    WriteError,
    describe_os_error,
    in_file,
)
from .config import ExperimentConfig, config_diff, read_yaml

CONFIG = "config.yaml"
ARCH = "arch.yaml"
POINTER = "checkpoint.json"
STATE_DIR = "state"
WEIGHTS_DIR = "weights"
_STATE_NAME = re.compile(rf"{STATE_DIR}/step-\d+\.pt")  # what checkpoint.json may point to
# The entries of a state file and their types (`ema` may also be None).
_STATE_ENTRIES = {
    "step": int, "epoch": int, "mid_epoch": bool, "model": dict, "optimizer": dict,
    "scaler": dict, "history": list, "best": dict, "sums": dict, "ranks": list,
}  # fmt: skip
_CANNOT_RESUME = "this run cannot be resumed from it: start a new run with --out"


def git_sha() -> str | None:
    """The commit of the package's source checkout (with "-dirty" if modified), or None."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def prepare_run_dir(run_dir: Path, config: ExperimentConfig, *, resume: bool) -> None:
    """Check `run_dir` fits a new run (or the same config when resuming) and write config.yaml.

    Temp files that a killed run left behind (mid-write) are removed; the run owns its folder."""
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is a file, not a run directory: choose another --out")
    saved = run_dir / CONFIG
    if resume:
        if not saved.is_file():
            raise CheckpointError(
                f"{run_dir}: no {CONFIG} here, so nothing to resume; start a new run with --out"
            )
        check_same_config(run_dir, config)
        remove_stale_temp_files(run_dir)
        return
    if (run_dir / POINTER).exists() or saved.exists():
        raise CheckpointError(
            f"{run_dir} already holds a run: continue it with `rrn train --resume {run_dir}` "
            "or choose another --out directory"
        )
    remove_stale_temp_files(run_dir)
    from .. import __version__  # here, not at the top: the package imports this module

    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    header = f"# robustresnet {__version__}, git {git_sha()}, {stamp}\n"
    _guard(run_dir, saved, lambda: write_text(saved, header + config.to_yaml()))


def check_same_config(run_dir: Path, config: ExperimentConfig) -> None:
    """Refuse to resume `run_dir` with a config other than the one it was started with."""
    with in_file(run_dir / CONFIG):
        before = ExperimentConfig.from_dict(read_yaml(run_dir / CONFIG)).to_dict()
    changed = config_diff(before, config.to_dict())
    if changed:
        raise ConfigError(
            "resume",
            str(run_dir),
            f"the config it was started with (differs in {', '.join(changed)}); resume with "
            f"`rrn train --resume {run_dir}` alone, or start a new run with --out",
        )


def check_trained_config(run_dir: Path, state: dict[str, Any], config: ExperimentConfig) -> None:
    """Refuse to resume when the config differs from the one the checkpoint was trained with
    (config.yaml edited by hand since, which the check against config.yaml cannot see)."""
    if "config" not in state:
        return  # a checkpoint from before configs were saved in it
    trained = state["config"]
    # In today's keys with today's defaults, as config.yaml is read; a config this version
    # cannot read is compared as it is, and the difference names the keys.
    with contextlib.suppress(ConfigError):
        trained = ExperimentConfig.from_dict(trained).to_dict()
    changed = config_diff(trained, config.to_dict())
    if changed:
        raise ConfigError(
            "resume",
            str(run_dir),
            f"the config its checkpoint was trained with ({CONFIG} or the command line differs "
            f"in {', '.join(changed)}); restore {CONFIG}, or start a new run with --out",
        )


def write_arch(run_dir: Path, spec: Any) -> None:
    """arch.yaml: the network's ArchSpec."""
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    path = run_dir / ARCH
    _guard(run_dir, path, lambda: write_text(path, text))


def save_checkpoint(
    run_dir: Path, state: dict[str, Any], exports: dict[str, Callable[[Path], None]]
) -> Path:
    """Write `state` and the weight `exports` ({"last": fn(path)}), then the pointer, then prune.

    A kill at any instant leaves checkpoint.json naming a complete state file."""
    name = f"{STATE_DIR}/step-{state['step']:09d}.pt"
    path = run_dir / name
    _guard(run_dir, path, lambda: atomic_write(path, lambda tmp: _save_state(state, tmp)))
    for label, write in exports.items():
        target = run_dir / WEIGHTS_DIR / f"{label}.safetensors"
        _guard(run_dir, target, lambda target=target, write=write: write(target))
    pointer = {"state": name, "step": state["step"], "epoch": state["epoch"], "time": time.time()}
    _guard(run_dir, run_dir / POINTER, lambda: write_json(run_dir / POINTER, pointer))
    for old in (run_dir / STATE_DIR).glob("step-*.pt"):
        if old.name != path.name:
            old.unlink(missing_ok=True)
    return path


def _save_state(state: dict[str, Any], path: Path) -> None:
    """torch.save through a Python file object: a full disk is then an OSError with its errno
    (saving to a path, torch reports a bare RuntimeError that never says "disk")."""
    with open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The state named by checkpoint.json (None when the run has none yet), checked to be a
    state file of this package: a damaged one is a CheckpointError naming the file."""
    pointer_path = run_dir / POINTER
    if not pointer_path.is_file():
        return None
    try:
        pointer = read_json(pointer_path, POINTER)
    except ConfigError as err:
        raise CheckpointError(f"{err}; {_CANNOT_RESUME}") from None
    name = pointer.get("state") if isinstance(pointer, dict) else None
    if not isinstance(name, str) or not _STATE_NAME.fullmatch(name):
        raise CheckpointError(
            f"{pointer_path}: names no state file (got {name!r}, expected "
            f"{STATE_DIR}/step-N.pt); {_CANNOT_RESUME}"
        )
    path = run_dir / name
    if not path.is_file():
        raise CheckpointError(f"{path}: missing, though {POINTER} names it; {_CANNOT_RESUME}")
    try:
        state = load_torch_file(path)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; {_CANNOT_RESUME}") from None
    _check_state(state, path)
    return state


def _check_state(state: Any, path: Path) -> None:
    """CheckpointError unless `state` has every entry `_checkpoint` writes, of the right type."""
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise CheckpointError(f"{path}: not a training state (a {kind}); {_CANNOT_RESUME}")
    for key, kind in _STATE_ENTRIES.items():
        value = state.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(
                f"{path}: not a training state of this package ({key!r} is missing or not of "
                f"type {kind.__name__}); {_CANNOT_RESUME}"
            )
    if not all(isinstance(rank, dict) for rank in state["ranks"]):
        raise CheckpointError(f"{path}: its per-rank states are not mappings; {_CANNOT_RESUME}")


def write_file(run_dir: Path, path: Path, write: Callable[[], Any]) -> None:
    """Write `path` in `run_dir`; disk errors become a CheckpointError that says what to do."""
    _guard(run_dir, path, write)


def _guard(run_dir: Path, path: Path, write: Callable[[], Any]) -> None:
    """Run `write`; an OSError becomes a CheckpointError saying what happened (a full disk or
    quota by name) and that the last complete checkpoint is kept."""
    try:
        write()
    except OSError as err:
        problem = (
            err if isinstance(err, WriteError) else f"cannot write {path}: {describe_os_error(err)}"
        )
        what = "free space" if err.errno in DISK_FULL else "fix the folder"
        raise CheckpointError(
            f"{problem}. The last complete checkpoint named by {POINTER} is kept: {what}, then "
            f"continue with `rrn train --resume {run_dir}`"
        ) from err
