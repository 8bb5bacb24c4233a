"""An experiment as runs: its sweep planned at a scale (full, smoke, digits) into an output
folder, with what each run is in the paper's terms (dataset, method, network and the axis
values that the published rows match)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..sweep import Plan, SweepSpec, Trial, plan_sweep
from ..sweep.spec import format_override
from ..train.config import ExperimentConfig, load_config
from . import SCALES
from .experiments import Experiment
from .published import Row
from .scales import scale_plan, scale_sweep

RUNS_ROOT = Path("runs") / "reproduce"


def default_out(experiment: Experiment, scale: str = "full") -> Path:
    """runs/reproduce/NAME (NAME-smoke, NAME-digits at those scales), under the current folder."""
    return RUNS_ROOT / (experiment.name + ("" if scale == "full" else f"-{scale}"))


def experiment_plan(
    experiment: Experiment,
    out_dir: str | Path,
    *,
    scale: str = "full",
    data_root: str | Path | None = None,
) -> tuple[SweepSpec, Plan]:
    """The experiment's sweep (reading datasets from `data_root` when given) and its planned
    runs at `scale`."""
    if scale not in SCALES:
        raise ConfigError("scale", scale, f"one of {list(SCALES)}")
    sweep = experiment.sweep
    if data_root is not None:
        root = format_override("data.root", str(Path(data_root).resolve()))
        sweep = dataclasses.replace(sweep, overrides=(*sweep.overrides, root))
    if scale == "full":
        return sweep, plan_sweep(sweep, out_dir)
    sweep = scale_sweep(sweep, scale)
    return sweep, scale_plan(plan_sweep(sweep, out_dir), scale, out_dir)


def base_configs(experiment: Experiment) -> dict[Path, ExperimentConfig]:
    """Each base config of the experiment as the paper runs it (no scale, no data root)."""
    return {path: load_config(path) for path in experiment.sweep.bases.values()}


def identity(trial: Trial, configs: dict[Path, ExperimentConfig]) -> dict[str, Any]:
    """What a run is in the paper's terms: its axis values, dataset, method and network (the
    base recipe's model name), whatever scale it trained at."""
    config = configs[trial.base]
    return {
        **trial.values,
        "dataset": config.data.name,
        "method": trial.values.get("method", config.objective.name),
        "network": config.model.name,
    }


def matching_row(rows: tuple[Row, ...], ident: dict[str, Any]) -> Row | None:
    """The first published row whose `match` the run's identity satisfies."""
    for row in rows:
        if row.match is not None and all(
            key in ident and _same(ident[key], value) for key, value in row.match.items()
        ):
            return row
    return None


def _same(ours: Any, published: Any) -> bool:
    if isinstance(published, list):
        return isinstance(ours, list | tuple) and [float(v) for v in ours] == published
    return str(ours) == str(published)
