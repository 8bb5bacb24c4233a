"""The paper's published results (published.yaml beside this module): one table per experiment,
rows with the runs they match, #P and #F as printed, and every cell's value (mean and std where
the paper gives mean ± std over seeds)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._files import read_yaml
from .._units import parse_count
from ..errors import ConfigError

PUBLISHED = Path(__file__).resolve().with_name("published.yaml")
METRICS = ("clean", "pgd20", "cw40", "aa")


@dataclass(frozen=True)
class Value:
    """A published figure in percent; `std` when the paper gives mean ± std over seeds."""

    mean: float
    std: float | None = None


@dataclass(frozen=True)
class Column:
    """What a cell measures: the dataset, the training method and the metric."""

    dataset: str
    method: str
    metric: str

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.method}/{self.metric}"


@dataclass(frozen=True)
class Row:
    """A row of a published table: its label, the runs it is (`match`: None when the row is
    only quoted), #P / #F as printed, and its figures by column."""

    label: str
    match: dict[str, Any] | None
    params: int | None
    macs: int | None
    results: dict[Column, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    """A published table: its source, rows and the claims it makes without per-cell figures."""

    name: str
    source: str
    rows: tuple[Row, ...]
    claims: tuple[str, ...] = ()

    def columns(self) -> list[Column]:
        """Every column any row has, in first-seen order."""
        seen: dict[Column, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row.results))
        return list(seen)


@functools.cache
def published_tables(path: Path = PUBLISHED) -> dict[str, Table]:
    """Every published table, by experiment name."""
    raw = read_yaml(path, "published")
    if not isinstance(raw, dict):
        raise ConfigError("published", str(path), "a mapping of table name -> table")
    return {name: _table(name, entry) for name, entry in raw.items()}


def _table(name: str, raw: Any) -> Table:
    if not isinstance(raw, dict) or not isinstance(raw.get("rows"), list):
        raise ConfigError(f"published.{name}", raw, "{source, rows: [...], claims}")
    rows = tuple(_row(f"published.{name}.rows[{i}]", r) for i, r in enumerate(raw["rows"]))
    return Table(name, str(raw.get("source", "")), rows, tuple(raw.get("claims") or ()))


def _row(where: str, raw: Any) -> Row:
    if not isinstance(raw, dict) or not isinstance(raw.get("row"), str):
        raise ConfigError(where, raw, "{row, match, params, macs, results}")
    match = raw.get("match")
    if match is not None and (not isinstance(match, dict) or not match):
        raise ConfigError(f"{where}.match", match, "a mapping of axis -> value")
    results = {}
    for key, metrics in (raw.get("results") or {}).items():
        dataset, _, method = str(key).partition("/")
        if not method or not isinstance(metrics, dict):
            raise ConfigError(f"{where}.results.{key}", metrics, "DATASET/METHOD: {metric: value}")
        for metric, value in metrics.items():
            if metric not in METRICS:
                raise ConfigError(f"{where}.results.{key}.{metric}", metric, f"one of {METRICS}")
            results[Column(dataset, method, metric)] = _value(f"{where}.{key}.{metric}", value)
    return Row(
        label=raw["row"],
        match=match,
        params=None if raw.get("params") is None else parse_count(raw["params"], field=where),
        macs=None if raw.get("macs") is None else parse_count(raw["macs"], field=where),
        results=results,
    )


def _value(where: str, raw: Any) -> Value:
    """A number, or [mean, std]."""
    numbers = raw if isinstance(raw, list) else [raw]
    ok = len(numbers) in (1, 2) and all(
        isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n) for n in numbers
    )
    if not ok:
        raise ConfigError(where, raw, "a percentage, or [mean, std]")
    return Value(float(numbers[0]), float(numbers[1]) if len(numbers) == 2 else None)
