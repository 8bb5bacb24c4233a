"""What `rrn zoo`, `rrn profile` and `rrn scale` print about a network: one row per spec."""

from __future__ import annotations

from typing import Any

from .._units import format_count
from ..arch.cellspec import CellNetSpec
from ..arch.profile import Profile
from ..arch.specs import Spec

_COLUMNS = ("name", "block", "depths", "widening", "params", "macs")


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 3)


def summary(spec: Spec, cost: Profile, name: str | None = None) -> dict[str, Any]:
    """Plain data for --json: name, block(s), depths, widening, integer params and MACs.

    A cell network's block is "<layout>_cell", its depths the normal cells per stage, and its
    widening None: it has initial channels instead (`init_channels`)."""
    if isinstance(spec, CellNetSpec):
        block: Any = f"{spec.layout}_cell"
        widening = None
    else:
        blocks = list(dict.fromkeys(stage.block for stage in spec.stages))
        block = blocks[0] if len(blocks) == 1 else blocks
        widening = [_number(w) for w in spec.widening]
    return {
        "name": name or spec.name,
        "block": block,
        "depths": list(spec.depths),
        "widening": widening,
        "params": cost.params,
        "macs": cost.macs,
        "input_size": list(cost.input_size),
    }


def _cell(key: str, value: Any) -> str:
    if key in ("params", "macs"):
        return format_count(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "-" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table (params and MACs as 19.2M, 5.11G)."""
    cells = [["MACs" if c == "macs" else c for c in _COLUMNS]]
    cells += [[_cell(c, row[c]) for c in _COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    right = {"params", "macs"}
    lines = [
        "  ".join(
            v.rjust(w) if c in right else v.ljust(w)
            for c, v, w in zip(_COLUMNS, r, widths, strict=True)
        ).rstrip()
        for r in cells
    ]
    return "\n".join(lines)
