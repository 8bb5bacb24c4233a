"""Published against ours, cell by cell: for each published figure, our mean ± std over the
finished runs of its row and column, the difference, and a flag when the difference is beyond
two combined standard deviations.

The combined standard deviation is sqrt(published std² + our std²): the published std where the
paper gives mean ± std, else 0 (a single published figure); ours over seeds where two or more
runs finished, else 0. When both are 0 (one published figure, one run) nothing is flagged: there
is no spread to judge the difference by, and the cell says so."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from .._units import format_count
from ..report.tables import ATTACK_TITLES, aggregate
from .published import Column, Row, Table, Value


@dataclass(frozen=True)
class Cell:
    """One published figure against ours; `ours` None while no run of it has finished."""

    row: str
    column: Column
    published: Value
    ours: Value | None
    finished: int
    planned: int
    measured: str = ""  # what our figure measured when it is not the paper's protocol

    @property
    def difference(self) -> float | None:
        return None if self.ours is None else self.ours.mean - self.published.mean

    @property
    def combined_std(self) -> float | None:
        if self.ours is None:
            return None
        return math.hypot(self.published.std or 0.0, self.ours.std or 0.0)

    @property
    def flagged(self) -> bool:
        spread, difference = self.combined_std, self.difference
        return bool(spread) and abs(difference) > 2 * spread


def model_key(row: str, dataset: str, method: str) -> str:
    """The key the runs of one published row and one dataset/method are grouped under."""
    return f"{row}\t{dataset}/{method}"


def compare(
    table: Table, runs: list[dict[str, Any]], planned: dict[str, int]
) -> tuple[list[Cell], dict[str, dict[str, Any]]]:
    """The cells of `table` against `runs` (rows of `report.gather.read_run` whose `model` is
    their `model_key`), with `planned` runs per key; and our aggregate per key."""
    ours = {entry["model"]: entry for entry in aggregate(runs)} if runs else {}
    cells = []
    for row in table.rows:
        for column, value in row.results.items():
            key = model_key(row.label, column.dataset, column.method)
            entry = ours.get(key, {})
            mean = entry.get(column.metric)
            measured = _measured(entry.get(f"{column.metric}_setting"), column.metric)
            cells.append(
                Cell(
                    row=row.label,
                    column=column,
                    published=value,
                    ours=None if mean is None else Value(mean, entry.get(f"{column.metric}_std")),
                    finished=entry.get("runs", 0),
                    planned=planned.get(key, 0),
                    measured=measured,
                )
            )
    return cells, ours


def _measured(setting: Any, metric: str) -> str:
    """`aa:attacks=apgd-ce, 16 images` when our figure is of other attacks or a sample."""
    if not setting:
        return ""
    name, samples = setting
    parts = [] if name == metric else [name]
    parts += [] if samples is None else [f"{samples} images"]
    return ", ".join(parts)


def _number(value: Value | None, runs: int | None = None) -> str:
    if value is None:
        return "–"
    text = f"{value.mean:.2f}"
    if value.std is not None and (runs is None or runs > 1):
        text += f" ± {value.std:.2f}"
    return text


def cells_markdown(cells: list[Cell]) -> str:
    """One line per published figure: published, ours (finished of planned runs), difference."""
    lines = [
        "| row | dataset | method | metric | published | ours | runs | Δ (ours − published) |",
        "|---|---|---|---|---:|---:|---|---:|",
    ]
    for cell in cells:
        c = cell.column
        ours = _number(cell.ours, cell.finished)
        if cell.measured:
            ours += f" ({cell.measured})"
        runs = f"{cell.finished}/{cell.planned}" if cell.planned else "not run"
        lines.append(
            f"| {cell.row} | {c.dataset} | {c.method} | {ATTACK_TITLES[c.metric]} | "
            f"{_number(cell.published)} | {ours} | {runs} | {_difference(cell)} |"
        )
    return "\n".join(lines) + "\n"


def _difference(cell: Cell) -> str:
    if cell.difference is None:
        return "–"
    text = f"{cell.difference:+.2f}"
    if not cell.combined_std:
        return text + " (no spread to judge by)"
    return text + (f" **beyond 2σ** (σ = {cell.combined_std:.2f})" if cell.flagged else "")


def cells_csv(cells: list[Cell]) -> str:
    """The cells as CSV: one line each, every number in its own column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["row", "dataset", "method", "metric", "published", "published_std", "ours", "ours_std"]
        + ["ours_measured", "finished", "planned", "difference", "combined_std", "flagged"]
    )
    for cell in cells:
        ours = cell.ours or Value(math.nan)
        writer.writerow(
            [cell.row, cell.column.dataset, cell.column.method, cell.column.metric]
            + [cell.published.mean, _blank(cell.published.std), _blank(ours.mean)]
            + [_blank(ours.std), cell.measured, cell.finished, cell.planned]
            + [_blank(cell.difference), _blank(cell.combined_std), cell.flagged]
        )
    return buffer.getvalue()


def _blank(value: float | None) -> Any:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def rank_agreement(cells: list[Cell]) -> list[dict[str, Any]]:
    """Per column (dataset, method, metric) with three or more rows measured: Kendall's τ
    between the published means and ours, with its p-value and the number of rows."""
    from scipy.stats import kendalltau

    columns: dict[Column, list[Cell]] = {}
    for cell in cells:
        if cell.ours is not None:
            columns.setdefault(cell.column, []).append(cell)
    out = []
    for column, measured in columns.items():
        if len(measured) >= 3:
            tau = kendalltau([c.published.mean for c in measured], [c.ours.mean for c in measured])
            entry = {"column": column.label, "rows": len(measured)}
            out.append({**entry, "tau": tau.statistic, "p": tau.pvalue})
    return out


def rank_markdown(agreement: list[dict[str, Any]]) -> str:
    """`rank_agreement` as a Markdown table (– where τ is undefined: all published values tie)."""
    lines = ["| column | rows | Kendall's τ | p |", "|---|---:|---:|---:|"]
    for entry in agreement:
        tau, p = (f"{entry[k]:.2f}" if math.isfinite(entry[k]) else "–" for k in ("tau", "p"))
        lines.append(f"| {entry['column']} | {entry['rows']} | {tau} | {p} |")
    return "\n".join(lines) + "\n"


def sizes_markdown(rows: tuple[Row, ...], sizes: dict[str, tuple[int, int]]) -> str:
    """#P and #F of each row as published and as counted for its runs (at the scale planned)."""
    lines = [
        "| row | #P published | #P ours | #F published | #F ours |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        params, macs = sizes.get(row.label, (None, None))
        cells = [_count(row.params), _count(params), _count(row.macs), _count(macs)]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _count(value: int | None) -> str:
    return "–" if value is None else format_count(value)
