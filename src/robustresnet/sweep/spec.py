"""The sweep file: a base training config (or an axis of them), axes to vary, zipped axes,
filters and resources."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._files import read_yaml
from .._units import parse_count
from ..errors import ConfigError
from ..recipes import find_file

# Axes with a meaning of their own; any other axis must be a dotted config key (`optim.lr`).
NAMED_AXES = (
    "base",
    "block",
    "scaling",
    "depths",
    "widening",
    "depth_grid",
    "width_grid",
    "kernel_size",
    "activation",
    "normalization",
    "se_reduction",
    "method",
    "seed",
)
SCALING_RULES = ("compound", "depth", "width")
SLURM_KEYS = {"partition", "time", "account", "mem_gb", "sbatch"}


@dataclass(frozen=True)
class SlurmOptions:
    """`resources.slurm`: where and how long each trial's job runs (its CPUs and GPUs are the
    sweep's num_cpus / num_gpus); `sbatch` holds any other sbatch option, by its long name."""

    partition: str | None = None
    time_minutes: int = 60
    account: str | None = None
    mem_gb: float | None = None
    sbatch: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file; `axes` and each group of `zipped` map axis name -> list of values.
    `base` is None when a `base` axis gives each run its own, and `bases` maps every base as
    written (the file's and the axis's values) to its file."""

    name: str
    base: Path | None
    bases: dict[str, Path] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    axes: dict[str, list[Any]] = field(default_factory=dict)
    zipped: tuple[dict[str, list[Any]], ...] = ()
    macs_window: tuple[int | None, int | None] = (None, None)
    params_window: tuple[int | None, int | None] = (None, None)
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    threads: int | None = None
    output: Path | None = None
    slurm: SlurmOptions = field(default_factory=SlurmOptions)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML file, or the shipped sweep it names ("digits-demo");
    relative paths in it are relative to the file."""
    path = find_file(path, "sweep", field="sweep")
    raw = read_yaml(path, "sweep") or {}
    if not isinstance(raw, dict):
        raise ConfigError("sweep", type(raw).__name__, f"a mapping at the top of {path}")
    return parse_sweep(raw, root=path.parent, default_name=path.stem)


def parse_sweep(raw: dict[str, Any], *, root: Path, default_name: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping (the YAML file's content) into a `SweepSpec`."""
    known = {"name", "base", "overrides", "axes", "zip", "filters", "resources", "output"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(unknown[0], raw[unknown[0]], f"one of the sweep keys {sorted(known)}")
    if not isinstance(raw.get("output", ""), str):
        raise ConfigError("output", raw["output"], "a path (relative to the sweep file)")
    resources = raw.get("resources") or {}
    _check_keys("resources", resources, {"num_cpus", "num_gpus", "threads", "slurm"})
    filters = raw.get("filters") or {}
    _check_keys("filters", filters, {"macs", "params"})
    groups = raw.get("zip") or []
    if not isinstance(groups, list):
        raise ConfigError("zip", groups, "a list of mappings of axis name -> list of values")
    zipped = tuple(_parse_axes(f"zip[{i}]", group) for i, group in enumerate(groups))
    for i, group in enumerate(zipped):
        lengths = {len(values) for values in group.values()}
        if len(lengths) > 1:
            raise ConfigError(f"zip[{i}]", {k: len(v) for k, v in group.items()}, "equal lengths")
    axes = _parse_axes("axes", raw.get("axes") or {})
    bases = _bases(raw.get("base"), [*axes.get("base", []), *_zipped_bases(zipped)], root)
    spec = SweepSpec(
        name=_slug(str(raw.get("name", default_name)), "name"),
        base=bases.get(raw["base"]) if "base" in raw else None,
        bases=bases,
        overrides=_parse_overrides(raw.get("overrides")),
        axes=axes,
        zipped=zipped,
        macs_window=_window("filters.macs", filters.get("macs")),
        params_window=_window("filters.params", filters.get("params")),
        num_cpus=_amount("resources.num_cpus", resources.get("num_cpus", 1)),
        num_gpus=_amount("resources.num_gpus", resources.get("num_gpus", 0)),
        threads=_threads(resources.get("threads")),
        slurm=_slurm_options(resources.get("slurm") or {}),
        output=(root / str(raw["output"])).resolve() if raw.get("output") else None,
    )
    _check_axis_names(spec)
    return spec


def _zipped_bases(zipped: tuple[dict[str, list[Any]], ...]) -> list[Any]:
    return [value for group in zipped for value in group.get("base", [])]


def _bases(base: Any, axis: list[Any], root: Path) -> dict[str, Path]:
    """Every base config as written -> its file: the `base` key's, else the `base` axis's values
    (one per run; then the key is left out)."""
    expected = "a recipe name or a path (relative to the file)"
    if base is None and not axis:
        raise ConfigError("base", base, f"{expected}, or a `base` axis of them")
    if base is not None and axis:
        raise ConfigError("base", base, "either the base key or a base axis, not both")
    found = {}
    for where, text in [("base", base)] if base is not None else [("axes.base", v) for v in axis]:
        if not isinstance(text, str) or not text:
            raise ConfigError(where, text, expected)
        found[text] = find_file(text, field=where, root=root).resolve()
    return found


def _check_keys(where: str, mapping: Any, allowed: set[str]) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(where, mapping, "a mapping")
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", mapping[key], f"one of {sorted(allowed)}")


def _amount(where: str, value: Any) -> float:
    """A finite number of CPUs or GPUs >= 0 (fractions share one, as in Ray)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ConfigError(where, value, "a number >= 0")
    return float(value)


def _threads(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError("resources.threads", value, "an integer >= 1")
    return value


def _slurm_options(raw: Any) -> SlurmOptions:
    _check_keys("resources.slurm", raw, SLURM_KEYS)
    for key in ("partition", "account"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise ConfigError(f"resources.slurm.{key}", raw[key], "a non-empty name")
    mem = raw.get("mem_gb")
    if mem is not None and (_amount("resources.slurm.mem_gb", mem) == 0):
        raise ConfigError("resources.slurm.mem_gb", mem, "a number of GB > 0")
    sbatch = raw.get("sbatch") or {}
    if not isinstance(sbatch, dict) or not all(re.fullmatch(r"[a-z][a-z-]*", k) for k in sbatch):
        raise ConfigError("resources.slurm.sbatch", sbatch, "a mapping of sbatch long options")
    for key, value in sbatch.items():
        if not isinstance(value, str | int | bool) or value is False:
            raise ConfigError(f"resources.slurm.sbatch.{key}", value, "a string, number or true")
    return SlurmOptions(
        partition=raw.get("partition"),
        time_minutes=_minutes(raw.get("time", 60)),
        account=raw.get("account"),
        mem_gb=None if mem is None else float(mem),
        sbatch=dict(sbatch),
    )


def _minutes(value: Any) -> int:
    """A time limit as SLURM writes it: minutes, `H:MM:SS` or `D-HH:MM:SS`, in whole minutes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)", str(value).strip())
    if isinstance(value, str) and match:
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        total = days * 1440 + hours * 60 + minutes + math.ceil(seconds / 60)
        if total >= 1 and minutes < 60 and seconds < 60:
            return total
    raise ConfigError("resources.slurm.time", value, "minutes >= 1, H:MM:SS or D-HH:MM:SS")


def _slug(text: str, where: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise ConfigError(where, text, "letters, digits, '.', '_' or '-'")
    return text


def _parse_overrides(raw: Any) -> tuple[str, ...]:
    """Fixed overrides: a list of `key=value` strings or a mapping key -> value."""
    if raw is None:
        return ()
    if isinstance(raw, dict):
        return tuple(format_override(key, value) for key, value in raw.items())
    if isinstance(raw, list) and all(isinstance(item, str) and "=" in item for item in raw):
        return tuple(raw)
    raise ConfigError("overrides", raw, "a list of 'key=value' strings or a mapping")


def format_override(key: str, value: Any) -> str:
    """`key=value` with the value in YAML flow style, as `rrn train` parses it."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return f"{key}={text.removesuffix('...').strip()}"


def _parse_axes(where: str, raw: Any) -> dict[str, list[Any]]:
    if not isinstance(raw, dict):
        raise ConfigError(where, raw, "a mapping of axis name -> list of values")
    axes = {}
    for name, values in raw.items():
        if name == "scaling":
            axes[name] = _scaling_values(f"{where}.scaling", values)
        elif name in ("depth_grid", "width_grid"):
            axes[name] = _stage_grid(f"{where}.{name}", values)
        elif isinstance(values, list) and values:
            axes[name] = values
        else:
            raise ConfigError(f"{where}.{name}", values, "a non-empty list of values")
    return axes


def _scaling_values(where: str, raw: Any) -> list[dict[str, Any]]:
    """RobustScaling points: `{targets: [...], rules: [...], depth_shares: [...]}` (their
    product; depth shares are optional, compound only) or a list of {rule, target, depth_share}."""
    if isinstance(raw, dict):
        targets = raw.get("targets")
        rules = raw.get("rules", ["compound"])
        shares = raw.get("depth_shares", [None])
        if not all(isinstance(v, list) and v for v in (targets, rules, shares)):
            raise ConfigError(where, raw, "{targets: [20M, ...], rules: [compound, ...]}")
        points = [
            {"rule": rule, "target": target, "depth_share": share}
            for rule in rules
            for target in targets
            for share in shares
        ]
    elif isinstance(raw, list) and raw and all(isinstance(p, dict) for p in raw):
        points = [
            {"rule": p.get("rule", "compound"), "target": p.get("target")}
            | {"depth_share": p.get("depth_share")}
            for p in raw
        ]
    else:
        raise ConfigError(where, raw, "{targets: [...], rules: [...]} or a list of {rule, target}")
    for point in points:
        if point["rule"] not in SCALING_RULES:
            raise ConfigError(f"{where}.rule", point["rule"], f"one of {list(SCALING_RULES)}")
        point["target"] = parse_count(point["target"], field=f"{where}.target")
        share = point.pop("depth_share")
        if share is not None:
            number = isinstance(share, int | float) and not isinstance(share, bool)
            if not number or not 0 < share < 1 or point["rule"] != "compound":
                raise ConfigError(f"{where}.depth_share", share, "a fraction in (0, 1), compound")
            point["depth_share"] = float(share)
    return points


def _stage_grid(where: str, raw: Any) -> list[list[Any]]:
    """A per-stage grid: one list of candidate values for each stage."""
    if not isinstance(raw, list) or not raw or not all(isinstance(s, list) and s for s in raw):
        raise ConfigError(where, raw, "one non-empty list of values per stage, e.g. [[2, 4], [2]]")
    return raw


def _window(where: str, raw: Any) -> tuple[int | None, int | None]:
    if raw is None:
        return (None, None)
    if not isinstance(raw, list) or len(raw) != 2:
        raise ConfigError(where, raw, "[low, high] with null for an open end, e.g. [4G, 6G]")
    low, high = (None if v is None else parse_count(v, field=where) for v in raw)
    if low is not None and high is not None and low > high:
        raise ConfigError(where, raw, "low <= high")
    return (low, high)


def _check_axis_names(spec: SweepSpec) -> None:
    """Every axis is named or a dotted config key, appears once, and none contradicts another."""
    seen: set[str] = set()
    for group in (spec.axes, *spec.zipped):
        for name in group:
            if name not in NAMED_AXES and "." not in name:
                raise ConfigError(
                    f"axes.{name}", name, f"one of {list(NAMED_AXES)} or a.dotted.key"
                )
            if name in seen:
                raise ConfigError(f"axes.{name}", name, "each axis once (in axes or one zip group)")
            seen.add(name)
    arch_axes = seen & {"depths", "widening", "depth_grid", "width_grid"}
    if "scaling" in seen and arch_axes:
        raise ConfigError(
            "axes.scaling", sorted(arch_axes), "no depth or width axis beside scaling"
        )
    for explicit, grid in (("depths", "depth_grid"), ("widening", "width_grid")):
        if explicit in seen and grid in seen:
            raise ConfigError(f"axes.{grid}", grid, f"either {explicit} or {grid}, not both")
