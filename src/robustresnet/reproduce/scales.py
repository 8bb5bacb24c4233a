"""The CPU scales of an experiment, through the same code path as the full one (the experiment's
sweep, planned, trained by `rrn train`, reported): the same runs on scikit-learn's 8x8 digits
with their networks shrunk. They change the experiment's runs, not its definition.

- smoke: any experiment end to end in about a minute. Two short epochs (256 images each, 2-step
  attacks; validation on 64 held-out images, the final evaluation on 64 test images with
  AutoAttack's APGD-CE on 16); every network one block of widening 1 per stage (its block kind,
  layers and SE kept); only SMOKE_RUNS of the runs, evenly spread over the list, its first and
  last included, so that a smoke covers the experiment's extremes (both datasets, say).
- digits: every run of the experiment's first dataset (seeds included), trained as the
  `digits-base` recipe trains (four epochs of 2-step TRADES at eps 0.1 over the whole training
  split, PGD-20 and CW-40 on 150 test images); each network keeps its block kinds and its shape
  in proportion: depths divided by DIGITS_DEPTH (rounded up) and channels by DIGITS_WIDTH (at
  least what its block needs). The
  paper's differences are not expected to show at this size; docs/reproduce.md says what does.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from ..arch import ArchSpec
from ..arch.blocks import BLOCKS
from ..arch.cellspec import CellNetSpec
from ..arch.profile import profile
from ..arch.spec import stage_base
from ..sweep import Plan, SweepSpec, Trial
from ..sweep.plan import spec_file_overrides, spec_path
from ..sweep.spec import format_override
from ..train.config import load_config

SMOKE_RUNS = 3
DIGITS_DEPTH, DIGITS_WIDTH = 2, 8
DIGITS_SIZE = 8  # digits at their own 8x8
SMOKE_SETTINGS = {
    "data.name": "digits",
    "data.options": {"size": DIGITS_SIZE},
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
# What every run takes from the digits-base recipe at the digits scale (it trains as that recipe
# does), over the smoke settings; flips stay off, as in digits-demo: a mirrored digit is another
# symbol.
DIGITS_RECIPE = "digits-base"
DIGITS_KEYS = (
    "data.val_size", "data.crop_padding", "objective.eps", "objective.step_size",
    "objective.steps", "optim.lr", "schedule.kind", "schedule.epochs", "eval.val_steps",
    "eval.final_attacks", "eval.final_samples", "eval.autoattack", "run.batch_size",
)  # fmt: skip
MODEL_KEYS = ("model.name=", "model.spec=", "model.reference=", "model.activation=")


def scale_sweep(sweep: SweepSpec, scale: str) -> SweepSpec:
    """The sweep with the scale's settings over every run's base config, one CPU per run."""
    settings = SMOKE_SETTINGS if scale == "smoke" else digits_settings()
    overrides = tuple(format_override(key, value) for key, value in settings.items())
    return dataclasses.replace(
        sweep, overrides=(*sweep.overrides, *overrides), num_cpus=1.0, num_gpus=0.0
    )


def digits_settings() -> dict[str, Any]:
    """The digits scale's settings: the smoke's, the whole training split, no flips, one thread,
    and DIGITS_KEYS as the digits-base recipe sets them."""
    recipe = load_config(DIGITS_RECIPE)
    taken = {}
    for key in DIGITS_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(recipe, section), name)
        taken[key] = list(value) if isinstance(value, tuple) else value
    extra = {"data.epoch_images": None, "data.flip": False, "run.threads": 1}
    return {**SMOKE_SETTINGS, **extra, **taken}


def scale_plan(plan: Plan, scale: str, out_dir: str | Path) -> Plan:
    """The runs the scale trains, each building its shrunk network."""
    if scale == "smoke":
        count = min(SMOKE_RUNS, len(plan.trials))
        last = len(plan.trials) - 1
        picked = sorted({round(i * last / max(1, count - 1)) for i in range(count)})
        trials = [plan.trials[i] for i in picked]
    else:
        first = _dataset(plan.trials[0])
        trials = [trial for trial in plan.trials if _dataset(trial) == first]
    shrunk = [_shrunk(trial, shrink(trial.spec, scale), out_dir) for trial in trials]
    return Plan(trials=shrunk, excluded=plan.excluded)


def shrink(spec: ArchSpec | CellNetSpec, scale: str) -> ArchSpec | CellNetSpec:
    """`spec` at `scale` on 8x8 input. smoke: one block of widening 1 per stage (a cell network:
    3 cells of 16 initial channels); digits: depths (or cells) / DIGITS_DEPTH rounded up,
    channels / DIGITS_WIDTH (at least 4, and as many as the block needs). Block kinds, layers
    and SE stay."""
    if isinstance(spec, CellNetSpec):
        init = _width(spec.init_channels, 0, scale)
        layers = max(3, _depth(spec.layers, scale))  # two reduction cells and a normal one
        return spec.replace(layers=layers, init_channels=init + init % 2, input_size=DIGITS_SIZE)
    stages = tuple(
        dataclasses.replace(
            stage,
            depth=_depth(stage.depth, scale),
            widening=None,
            channels=_valid_width(spec, stage.block, _width(stage.planes(i), i, scale)),
        )
        for i, stage in enumerate(spec.stages)
    )
    stem = spec.stem_channels if scale == "smoke" else _width(spec.stem_channels, 0, scale)
    return spec.replace(stages=stages, input_size=DIGITS_SIZE, stem_channels=stem)


def _depth(depth: int, scale: str) -> int:
    return 1 if scale == "smoke" else math.ceil(depth / DIGITS_DEPTH)


def _width(channels: int, index: int, scale: str) -> int:
    return stage_base(index) if scale == "smoke" else max(4, round(channels / DIGITS_WIDTH))


def _valid_width(spec: ArchSpec, block: str, channels: int) -> int:
    """The smallest width from `channels` up that `block` can be built with (a hierarchical
    block needs enough channels for one per chunk, an SE at least one unit)."""
    while BLOCKS[block].width_error(channels, **spec.block_options) is not None:
        channels += 1
    return channels


def _dataset(trial: Trial) -> str:
    return load_config(trial.base).data.name


def _shrunk(trial: Trial, spec: ArchSpec, out_dir: str | Path) -> Trial:
    """`trial` building `spec` from a spec file in its run folder, with its size."""
    model = load_config(trial.base).model
    kept = [o for o in trial.overrides if not o.startswith(MODEL_KEYS)]
    overrides = [*spec_file_overrides(model, spec_path(Path(out_dir), trial.name)), *kept]
    sized = profile(spec)
    return dataclasses.replace(
        trial, overrides=tuple(overrides), spec=spec, params=sized.params, macs=sized.macs
    )
