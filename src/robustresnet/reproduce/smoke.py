"""The smoke scale: any experiment end to end in about a minute on a CPU, through the same code
path as the full one (the experiment's sweep, planned, trained by `rrn train`, reported).

It changes the experiment's runs, not its definition: every run trains on 8x8 digits for two
short epochs (256 images each, 2-step attacks; validation on 64 held-out images, the final
evaluation on 64 test images with AutoAttack's APGD-CE on 16), every network is shrunk to one
block of widening 1 per stage (its block kind, layers and SE kept; 8x8 input), and only
SMOKE_RUNS of the runs train: evenly spread over the experiment's list, its first and last
included, so that each smoke covers the experiment's extremes (both datasets of a two-dataset
table, say)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..arch import ArchSpec
from ..arch.profile import profile
from ..sweep import SweepSpec, Trial
from ..sweep.plan import spec_file_overrides, spec_path
from ..sweep.spec import format_override
from ..train.config import load_config

SMOKE_RUNS = 3
SMOKE_SIZE = 8  # digits at their own 8x8
SMOKE_SETTINGS = {
    "data.name": "digits",
    "data.options": {"size": SMOKE_SIZE},
    "data.root": None,
    "data.download": False,
    "data.val_size": 64,
    "data.crop_padding": 1,
    "data.rotation": 0.0,
    "data.extra": None,
    "data.extra_fraction": 0.0,
    "data.epoch_images": 256,
    "schedule.epochs": 2,
    "schedule.warmup_epochs": 0.0,
    "ema.warmup_epochs": 0.0,
    "objective.steps": 2,
    "eval.val_steps": 2,
    "eval.from_epoch": 0,
    "eval.final_samples": 64,
    "eval.autoattack": ["apgd-ce"],
    "eval.autoattack_samples": 16,
    "run.batch_size": 32,
    "run.checkpoint_every": 0,
}
MODEL_KEYS = ("model.name=", "model.spec=", "model.reference=", "model.activation=")


def smoke_sweep(sweep: SweepSpec) -> SweepSpec:
    """The sweep with the smoke settings over every run's base config, on one CPU per run."""
    settings = tuple(format_override(key, value) for key, value in SMOKE_SETTINGS.items())
    return dataclasses.replace(
        sweep, overrides=(*sweep.overrides, *settings), num_cpus=1.0, num_gpus=0.0
    )


def shrink(spec: ArchSpec) -> ArchSpec:
    """`spec` at the smoke scale: one block of widening 1 per stage, 8x8 input."""
    stages = tuple(
        dataclasses.replace(stage, depth=1, widening=1, channels=None) for stage in spec.stages
    )
    return spec.replace(stages=stages, input_size=SMOKE_SIZE)


def smoke_trials(trials: list[Trial], out_dir: str | Path) -> list[Trial]:
    """SMOKE_RUNS trials evenly spread over `trials`, each building its shrunk network."""
    count = min(SMOKE_RUNS, len(trials))
    picked = sorted({round(i * (len(trials) - 1) / max(1, count - 1)) for i in range(count)})
    smoke = []
    for trial in (trials[i] for i in picked):
        spec = shrink(trial.spec)
        model = load_config(trial.base).model
        kept = [o for o in trial.overrides if not o.startswith(MODEL_KEYS)]
        overrides = [*spec_file_overrides(model, spec_path(Path(out_dir), trial.name)), *kept]
        sized = profile(spec)
        smoke.append(
            dataclasses.replace(
                trial,
                overrides=tuple(overrides),
                spec=spec,
                params=sized.params,
                macs=sized.macs,
            )
        )
    return smoke
