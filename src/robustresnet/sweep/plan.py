"""From expanded trials to runnable ones: each trial's ArchSpec, its params and MACs, the
overrides `rrn train` receives, and the sweep's filters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..arch import ArchSpec, CellNetSpec, Spec
from ..arch.profile import profile
from ..arch.scaling import robust_scaling
from ..arch.specs import require_arch_spec
from ..errors import ConfigError
from ..train.config import ExperimentConfig, ModelConfig, load_config
from ..train.objectives import Objective, objective_class
from .expand import Trial, expand
from .spec import SweepSpec, format_override

ARCH_AXES = (
    "block",
    "scaling",
    "depths",
    "widening",
    "kernel_size",
    "activation",
    "normalization",
    "se_reduction",
)
STAGE_FIELDS = ("block", "kernel_size", "activation", "normalization")
NETWORK_FIELDS = ("se_reduction",)  # axes that set a field of the whole ArchSpec
# Axes that are plain config fields of `rrn train` (`method` replaces the objective section).
CONFIG_KEYS = {"seed": "run.seed"}
SPECS_DIR = "specs"
# What a RobustScaling trial keeps from the base network: every ArchSpec field but its stages
# (which scaling replaces) and its name (the trial's own).
SCALING_FIELDS = tuple(
    f.name for f in dataclasses.fields(ArchSpec) if f.name not in ("stages", "name")
)


@dataclass(frozen=True)
class Plan:
    """The trials to run (`trials`) and those the filters left out (`excluded`, with reasons)."""

    trials: list[Trial]
    excluded: list[tuple[Trial, str]]


def plan_sweep(sweep: SweepSpec, out_dir: str | Path) -> Plan:
    """Expand, size and filter a sweep; every trial's config is validated here, before running."""
    configs = {path: load_config(path, sweep.overrides) for path in sweep.bases.values()}
    kept, excluded = [], []
    for trial in expand(sweep):
        base_path = trial_base(sweep, trial)
        base_config = configs[base_path]
        try:
            spec = trial_spec(base_config.model.arch_spec(), trial.values)
            overrides = trial_overrides(trial, base_config, Path(out_dir))
            load_config(base_path, [*sweep.overrides, *overrides])
        except ConfigError as err:  # name the trial, keep the field
            raise ConfigError(f"{trial.name}: {err.field}", err.value, err.expected) from err
        sized = profile(spec)
        trial = dataclasses.replace(
            trial,
            base=base_path,
            overrides=tuple(overrides),
            params=sized.params,
            macs=sized.macs,
            spec=spec,
        )
        reason = _filtered_out(sweep, trial)
        if reason:
            excluded.append((trial, reason))
        else:
            kept.append(trial)
    return Plan(trials=kept, excluded=excluded)


def trial_base(sweep: SweepSpec, trial: Trial) -> Path:
    """The base config file of a trial: its `base` axis value's, else the sweep's."""
    return sweep.bases[trial.values["base"]] if "base" in trial.values else sweep.base


def trial_spec(base: Spec, values: dict[str, Any]) -> Spec:
    """`base` with the trial's block, depths, widening, per-stage layer choices and SE reduction
    (a cell network takes no architecture axis: only the other axes, seeds, methods, ...)."""
    if isinstance(base, CellNetSpec):
        if any(axis in values for axis in ARCH_AXES):
            require_arch_spec(base, "sweep axes of the architecture change residual stages")
        return base.replace(name=None)
    depths, widening = values.get("depths"), values.get("widening")
    if "scaling" in values:
        point = values["scaling"]
        block = values.get("block", base.stages[0].block)
        # Sized on the base network's stem, head, input size and block settings: the MAC target
        # is that of the network actually trained.
        shared = {name: getattr(base, name) for name in SCALING_FIELDS}
        activation = values.get("activation", base.stages[0].activation)
        scaled = robust_scaling(
            point["target"],
            block=block,
            rule=point["rule"],
            activation=activation,
            **{key: point[key] for key in ("depth_share",) if key in point},
            **shared,
        )
        depths, widening = list(scaled.depths), [int(w) for w in scaled.widening]
    for axis, per_stage in (("depths", depths), ("widening", widening)):
        if per_stage is not None and not isinstance(per_stage, list | tuple):
            raise ConfigError(axis, per_stage, f"a list of {len(base.stages)} values")
        if per_stage is not None and len(per_stage) != len(base.stages):
            raise ConfigError(axis, per_stage, f"{len(base.stages)} values, one per stage")
    stages = []
    for i, stage in enumerate(base.stages):
        changes = {name: values[name] for name in STAGE_FIELDS if name in values}
        if depths is not None:
            changes["depth"] = depths[i]
        if widening is not None:
            changes.update(widening=widening[i], channels=None)
        stages.append(dataclasses.replace(stage, **changes))
    network = {name: values[name] for name in NETWORK_FIELDS if name in values}
    return base.replace(stages=tuple(stages), name=None, **network)


def method_objective(base: Objective, method: str) -> dict[str, Any]:
    """The objective section of a `method` trial: that objective with every setting it shares
    with the base's (eps, steps, ...); those it does not use (beta for pgd_at) are left out."""
    cls = objective_class(method)
    shared = {f.name for f in dataclasses.fields(cls)}
    settings = {k: v for k, v in base.settings().items() if k in shared}
    return {"name": cls.name, **settings}


def trial_overrides(trial: Trial, base: ExperimentConfig, out_dir: Path) -> list[str]:
    """Dotted overrides for `rrn train`: the trial's spec file, method, seed, other keys."""
    overrides = []
    if any(axis in trial.values for axis in ARCH_AXES):
        overrides += spec_file_overrides(base.model, spec_path(out_dir, trial.name))
    for axis, value in trial.values.items():
        if axis == "method":
            overrides.append(format_override("objective", method_objective(base.objective, value)))
        elif axis in CONFIG_KEYS:
            overrides.append(format_override(CONFIG_KEYS[axis], value))
        elif "." in axis:
            overrides.append(format_override(axis, value))
    return overrides


def spec_file_overrides(model: ModelConfig, path: Path) -> list[str]:
    """Overrides that make a run build the network in the spec file at `path`."""
    overrides = [format_override("model.name", str(path))]
    # The spec file holds the whole network: drop the base's other ways of giving it.
    for key in ("spec", "reference", "activation"):
        if getattr(model, key) is not None:
            overrides.append(f"model.{key}=null")
    return overrides


def spec_path(out_dir: Path, name: str) -> Path:
    """Where a trial's ArchSpec is written before it runs (outside its run directory)."""
    return (out_dir / SPECS_DIR / f"{name}.yaml").resolve()


def write_specs(plan: Plan, out_dir: str | Path) -> None:
    """Write the spec file of every trial whose overrides point to one."""
    for trial in plan.trials:
        path = spec_path(Path(out_dir), trial.name)
        if any(o.startswith("model.name=") for o in trial.overrides):
            trial.spec.save(path)


def _filtered_out(sweep: SweepSpec, trial: Trial) -> str | None:
    for label, value, (low, high) in (
        ("macs", trial.macs, sweep.macs_window),
        ("params", trial.params, sweep.params_window),
    ):
        if low is not None and value < low:
            return f"{label} {value} < {low}"
        if high is not None and value > high:
            return f"{label} {value} > {high}"
    return None
