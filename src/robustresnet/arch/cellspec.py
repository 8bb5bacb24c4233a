"""`CellNetSpec`: an immutable, validated description of a NAS cell network (DARTS / RobNet style).

The network is a stem conv + BatchNorm, `layers` cells (the ones at layers//3 and 2·layers//3
halve the resolution and double the channels, as in both reference codes) and a linear head on
global average pooling. A cell is a genotype as data: each node sums its edges, an edge being an
operation (see `cell_ops.CELL_OPS`) applied to an earlier state (0, 1: the two previous cells'
outputs; 2 + i: node i); the cell's output concatenates the `concat` states. Round-trips through
YAML/JSON like `ArchSpec` (its dict carries `kind: cell_network`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .cell_ops import CELL_OPS
from .spec import (
    MAX_INPUT_SIZE,
    SpecFile,
    _int,
    _reject_unknown,
    input_stats,
)

KIND = "cell_network"
# Module layouts of the reference codes: "robnet" wraps every edge op in `ChosenOperation`.
LAYOUTS = ("darts", "robnet")
# RobNet's architecture codes (gmh14/RobNets architecture_code.py) as operation names.
ROBNET_CODES = {
    "00": "none",
    "01": "sep_conv_3x3",
    "10": "skip_connect",
    "11": "res_sep_conv_3x3",
}

Edge = tuple[str, int]
Cell = tuple[tuple[Edge, ...], ...]


def robnet_cell(codes: Sequence[str]) -> Cell:
    """A RobNet code list (one code per edge; node i reads every earlier state) as nodes."""
    nodes, start = [], 0
    while start < len(codes):
        inputs = 2 + len(nodes)
        chunk = codes[start : start + inputs]
        if len(chunk) != inputs or any(c not in ROBNET_CODES for c in chunk):
            raise ConfigError("codes", list(codes), "RobNet codes (00/01/10/11), 2+3+... per cell")
        nodes.append(tuple((ROBNET_CODES[c], j) for j, c in enumerate(chunk)))
        start += inputs
    return tuple(nodes)


def _cell(name: str, value: Any) -> Cell:
    """A genotype cell checked: nodes of (op, input) edges, each input an earlier state."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(name, value, "a non-empty list of nodes, each a list of [op, input]")
    nodes = []
    for i, node in enumerate(value):
        if isinstance(node, (str, bytes)) or not isinstance(node, Sequence) or not node:
            raise ConfigError(f"{name}[{i}]", node, "a non-empty list of [op, input] edges")
        edges = []
        for j, edge in enumerate(node):
            where = f"{name}[{i}][{j}]"
            if isinstance(edge, (str, bytes)) or not isinstance(edge, Sequence) or len(edge) != 2:
                raise ConfigError(where, edge, "an [op, input] pair")
            op, source = edge
            if op not in CELL_OPS:
                raise ConfigError(f"{where}.op", op, "one of " + ", ".join(CELL_OPS))
            _int(f"{where}.input", source, 0)
            if source >= 2 + i:
                raise ConfigError(f"{where}.input", source, f"an earlier state (< {2 + i})")
            edges.append((op, source))
        nodes.append(tuple(edges))
    return tuple(nodes)


def _concat(name: str, value: Any, states: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(name, value, "a non-empty list of state indices")
    for index in value:
        if _int(name, index, 0) >= states:
            raise ConfigError(name, list(value), f"state indices below {states}")
    return tuple(value)


@dataclass(frozen=True)
class CellNetSpec(SpecFile):
    """A whole cell network: genotype (normal and reduction cells), size, head, input."""

    normal: Cell
    normal_concat: tuple[int, ...]
    reduce: Cell
    reduce_concat: tuple[int, ...]
    layers: int
    init_channels: int
    layout: str = "darts"
    affine: bool = True  # the cells' BatchNorms have weight and bias (RobNet's do not)
    stem_multiplier: int = 3
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for kind in ("normal", "reduce"):
            cell = _cell(kind, getattr(self, kind))
            object.__setattr__(self, kind, cell)
            concat = _concat(f"{kind}_concat", getattr(self, f"{kind}_concat"), 2 + len(cell))
            object.__setattr__(self, f"{kind}_concat", concat)
        for name in ("layers", "stem_multiplier", "num_classes", "in_channels", "input_size"):
            _int(name, getattr(self, name))
        if _int("init_channels", self.init_channels) % 2:
            raise ConfigError("init_channels", self.init_channels, "an even number")
        if self.layout not in LAYOUTS:
            raise ConfigError("layout", self.layout, "one of " + ", ".join(LAYOUTS))
        if not isinstance(self.affine, bool):
            raise ConfigError("affine", self.affine, "true or false")
        if not 4 <= self.input_size <= MAX_INPUT_SIZE:
            raise ConfigError("input_size", self.input_size, f"4 to {MAX_INPUT_SIZE} pixels")
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError("name", self.name, "a string")
        mean, std = input_stats(self.mean, self.std, self.in_channels)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def reductions(self) -> tuple[int, ...]:
        """Indices of the reduction cells (both references: layers//3 and 2·layers//3)."""
        return tuple(dict.fromkeys((self.layers // 3, 2 * self.layers // 3)))

    @property
    def depths(self) -> tuple[int, ...]:
        """Normal cells per resolution stage (the reduction cells between them not counted)."""
        bounds = (-1, *self.reductions, self.layers)
        return tuple(b - a - 1 for a, b in zip(bounds, bounds[1:], strict=False))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON (edges as [op, input] lists); `from_dict` reads it back."""

        def edges(cell: Cell) -> list[list[list[Any]]]:
            return [[list(edge) for edge in node] for node in cell]

        return {"kind": KIND, **self._plain_fields({"normal": edges, "reduce": edges})}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellNetSpec:
        """Inverse of `to_dict`; unknown keys are rejected by name."""
        if not isinstance(data, Mapping):
            raise ConfigError("spec", data, "a mapping of spec fields")
        _reject_unknown("spec", data, {f.name for f in dataclasses.fields(cls)} | {"kind"})
        if data.get("kind", KIND) != KIND:
            raise ConfigError("kind", data["kind"], KIND)
        fields = {k: v for k, v in data.items() if k != "kind"}
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        for name in missing:
            if name not in fields:
                raise ConfigError(name, None, "a value (a required cell network field)")
        return cls(**fields)
