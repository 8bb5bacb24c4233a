"""Expansion of a sweep's axes into trials with deterministic, readable, unique names."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._units import format_count
from ..arch.spec import ArchSpec
from ..errors import ConfigError
from .spec import SweepSpec

# The order of the parts of a trial's name; dotted-key axes follow in the sweep file's order.
NAME_ORDER = (
    "base",
    "block",
    "scaling",
    "depths",
    "widening",
    "kernel_size",
    "activation",
    "normalization",
    "se_reduction",
    "method",
)
BLOCK_ABBREVIATIONS = {"basic_block": "basic", "robust_res_block": "rrb"}


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its name, its name without the seed (`group`), its axis values and,
    once planned, its base config file."""

    name: str
    group: str
    values: dict[str, Any]
    base: Path | None = None
    overrides: tuple[str, ...] = ()
    params: int | None = None
    macs: int | None = None
    spec: Any = field(default=None, compare=False, repr=False)

    def shape_text(self) -> tuple[str, str]:
        """Depths and widening for a table, e.g. ("14-14-7", "5-7-3"); "-" where a cell network
        has no widening."""
        depths = "-".join(str(d) for d in self.spec.depths)
        if not isinstance(self.spec, ArchSpec):
            return depths, "-"
        return depths, "-".join(f"{w:g}" for w in self.spec.widening)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the trial (without the spec object); a cell network has no
        widening (None)."""
        return {
            "name": self.name,
            "group": self.group,
            "values": self.values,
            "base": None if self.base is None else str(self.base),
            "overrides": list(self.overrides),
            "depths": None if self.spec is None else list(self.spec.depths),
            "widening": None if not isinstance(self.spec, ArchSpec) else list(self.spec.widening),
            "params": self.params,
            "macs": self.macs,
        }


def expand(spec: SweepSpec) -> list[Trial]:
    """Every combination of the sweep's axes (zip groups vary together), in a stable order."""
    factors = [_axis_factor(name, values) for name, values in spec.axes.items()]
    factors += [_zip_factor(i, group) for i, group in enumerate(spec.zipped)]
    dotted = [n for group in (spec.axes, *spec.zipped) for n in group if "." in n]
    trials = []
    for combo in itertools.product(*factors):
        values: dict[str, Any] = {}
        for part in combo:
            values.update(part)
        name, group = trial_name(values, dotted)
        trials.append(Trial(name=name, group=group, values=values))
    _check_unique(trials)
    return trials


def _axis_factor(name: str, values: list[Any]) -> list[dict[str, Any]]:
    """One axis as a list of assignments; a per-stage grid becomes the product over stages."""
    if name == "depth_grid":
        return [{"depths": list(combo)} for combo in itertools.product(*values)]
    if name == "width_grid":
        return [{"widening": list(combo)} for combo in itertools.product(*values)]
    return [{name: value} for value in values]


def _zip_factor(index: int, group: dict[str, list[Any]]) -> list[dict[str, Any]]:
    for name in group:
        if name in ("depth_grid", "width_grid"):
            raise ConfigError(f"zip[{index}].{name}", name, "explicit depths/widening lists in zip")
    length = len(next(iter(group.values())))
    return [{name: values[i] for name, values in group.items()} for i in range(length)]


def trial_name(values: dict[str, Any], dotted: list[str]) -> tuple[str, str]:
    """(`rrb-d14-14-7-w5-7-3-trades-s0`, the same without `-s0`) from a trial's axis values."""
    parts = [_name_part(axis, values[axis]) for axis in NAME_ORDER if axis in values]
    parts += [_name_part(axis, values[axis]) for axis in dotted]
    group = "-".join(parts) or "run"
    if "seed" in values:
        parts.append(f"s{values['seed']}")
    name = "-".join(parts) or "run"
    return name, group


def _name_part(axis: str, value: Any) -> str:
    if axis == "base":
        text = str(value).removesuffix(".yaml").replace("/", "-")
    elif axis == "block":
        text = BLOCK_ABBREVIATIONS.get(str(value), str(value).replace("_block", ""))
    elif axis == "scaling":
        text = f"{value['rule']}{_short_count(value['target'])}"
        if "depth_share" in value:
            text += f"-share{value['depth_share']:g}"
    elif axis in ("depths", "widening"):
        text = axis[0] + "-".join(_number(v) for v in _as_list(value))
    elif axis == "kernel_size":
        text = f"k{value}"
    elif axis == "se_reduction":
        text = f"r{value}"
    elif "." in axis:
        text = axis.rsplit(".", 1)[1] + _number(value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_-") or "x"


def _short_count(count: int) -> str:
    """`format_count` without trailing zeros: 20M rather than 20.0M."""
    text = format_count(count)
    number, suffix = (text[:-1], text[-1]) if text[-1].isalpha() else (text, "")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number + suffix


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).replace("-", "m") if isinstance(value, int | float) else str(value)


def _check_unique(trials: list[Trial]) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for trial in trials:
        if trial.name in seen:
            raise ConfigError(
                "axes", trial.name, f"distinct trial names (clash: {seen[trial.name]})"
            )
        seen[trial.name] = trial.values
