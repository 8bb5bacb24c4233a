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

import errno
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from .._io import atomic_write, write_json, write_text
from ..errors import CheckpointError, ConfigError
from .config import ExperimentConfig, config_diff, read_yaml

CONFIG = "config.yaml"
ARCH = "arch.yaml"
POINTER = "checkpoint.json"
STATE_DIR = "state"
WEIGHTS_DIR = "weights"


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
    """Check `run_dir` fits a new run (or the same config when resuming) and write config.yaml."""
    saved = run_dir / CONFIG
    if resume:
        if not saved.is_file():
            raise CheckpointError(
                f"{run_dir}: no {CONFIG} here, so nothing to resume; start a new run with --out"
            )
        check_same_config(run_dir, config)
        return
    if (run_dir / POINTER).exists() or saved.exists():
        raise CheckpointError(
            f"{run_dir} already holds a run: continue it with `rrn train --resume {run_dir}` "
            "or choose another --out directory"
        )
    from .. import __version__  # here, not at the top: the package imports this module

    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    header = f"# robustresnet {__version__}, git {git_sha()}, {stamp}\n"
    body = yaml.safe_dump(config.to_dict(), sort_keys=False)
    _guard(run_dir, saved, lambda: write_text(saved, header + body))


def check_same_config(run_dir: Path, config: ExperimentConfig) -> None:
    """Refuse to resume `run_dir` with a config other than the one it was started with."""
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
    changed = config_diff(state["config"], config.to_dict())
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
    _guard(run_dir, path, lambda: atomic_write(path, lambda tmp: torch.save(state, tmp)))
    for label, write in exports.items():
        target = run_dir / WEIGHTS_DIR / f"{label}.safetensors"
        _guard(run_dir, target, lambda target=target, write=write: write(target))
    pointer = {"state": name, "step": state["step"], "epoch": state["epoch"], "time": time.time()}
    _guard(run_dir, run_dir / POINTER, lambda: write_json(run_dir / POINTER, pointer))
    for old in (run_dir / STATE_DIR).glob("step-*.pt"):
        if old.name != path.name:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The state named by checkpoint.json (None when the run has none yet)."""
    pointer_path = run_dir / POINTER
    if not pointer_path.is_file():
        return None
    try:
        pointer = json.loads(pointer_path.read_text(encoding="utf-8"))
        return torch.load(run_dir / pointer["state"], map_location="cpu", weights_only=True)
    except (OSError, KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{pointer_path}: cannot read its checkpoint: {err}") from err


def write_file(run_dir: Path, path: Path, write: Callable[[], Any]) -> None:
    """Write `path` in `run_dir`; disk errors become a CheckpointError that says what to do."""
    _guard(run_dir, path, write)


def _guard(run_dir: Path, path: Path, write: Callable[[], Any]) -> None:
    try:
        write()
    except OSError as err:
        cause = "the disk is full" if err.errno == errno.ENOSPC else str(err)
        raise CheckpointError(
            f"cannot write {path}: {cause}. The last complete checkpoint named by {POINTER} is "
            f"intact: free space (or fix the folder), then continue with "
            f"`rrn train --resume {run_dir}`"
        ) from err
