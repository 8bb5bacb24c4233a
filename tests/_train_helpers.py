"""A tiny training config on 8x8 digits, shared by the training tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from robustresnet.train.config import ExperimentConfig

TINY_SPEC = {
    "stem_channels": 8,
    "input_size": 8,
    "stages": [
        {"depth": 1, "channels": 8, "stride": 1, "block": "basic_block"},
        {"depth": 1, "channels": 16, "stride": 2, "block": "basic_block"},
    ],
}

TINY = {
    "model": {"spec": TINY_SPEC},
    "data": {"name": "digits", "options": {"size": 8}, "val_size": 64, "crop_padding": 1},
    "objective": {"name": "pgd_at", "eps": 0.1, "step_size": 0.05, "steps": 2},
    "optim": {"lr": 0.05},
    "schedule": {"kind": "cosine", "epochs": 2},
    "eval": {"val_steps": 2, "final_attacks": ["clean", "pgd20"], "final_samples": 64},
    "run": {"batch_size": 128, "threads": 1},
}


def tiny_dict(**sections: dict[str, Any]) -> dict[str, Any]:
    """TINY with some fields of some sections changed: tiny_dict(run={"seed": 1})."""
    data = copy.deepcopy(TINY)
    for name, fields in sections.items():
        data.setdefault(name, {}).update(fields)
    return data


def tiny_config(**sections: dict[str, Any]) -> ExperimentConfig:
    return ExperimentConfig.from_dict(tiny_dict(**sections))


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def untrained_run(run: Path) -> Path:
    """A run directory of the untrained tiny network at `run`: config.yaml, arch.yaml and
    weights/last.safetensors, as `rrn eval` and `--resume` read them."""
    from robustresnet.arch import ArchSpec, build_model, save_weights
    from robustresnet.train import checkpoint

    checkpoint.prepare_run_dir(run, tiny_config(), resume=False)
    spec = ArchSpec.from_dict(TINY_SPEC)
    checkpoint.write_arch(run, spec)
    save_weights(build_model(spec), run / "weights" / "last.safetensors")
    return run
