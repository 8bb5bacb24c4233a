"""The report's pictures (PNG, matplotlib's Agg backend): robust accuracy against MACs and params
with the Pareto front, and robust accuracy against each architecture axis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import EngFormatter  # noqa: E402

from .._io import atomic_write  # noqa: E402
from .tables import ATTACK_TITLES, finished  # noqa: E402

COUNT_AXES = ("macs", "params", "scaling_target")  # tick labels as 1.5M, 2G
CATEGORY_AXES = ("block", "method", "activation", "normalization", "kernel_size", "scaling_rule")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower or equal cost with higher accuracy."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def category_axis(rows: list[dict[str, Any]]) -> str | None:
    """The first categorical axis that varies across runs: it colours the points."""
    for axis in CATEGORY_AXES:
        if len({str(row.get(axis)) for row in finished(rows)}) > 1:
            return axis
    return None


def plot_pareto(
    rows: list[dict[str, Any]], models: list[dict[str, Any]], metric: str, cost: str, path: Path
) -> Path:
    """Robust accuracy against `cost` (macs or params): runs, model means, the Pareto front."""
    colour_by = category_axis(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for label, colour in _colours(rows, colour_by).items():
        members = [r for r in finished(rows) if colour_by is None or str(r.get(colour_by)) == label]
        ax.scatter(
            [r[cost] for r in members], [r[metric] for r in members], s=14, alpha=0.35, color=colour
        )
        means = [m for m in models if colour_by is None or str(m.get(colour_by, label)) == label]
        ax.scatter(
            [m[cost] for m in means],
            [m[metric] for m in means],
            s=46,
            color=colour,
            edgecolor="black",
            linewidth=0.5,
            label=label if colour_by else "model mean",
        )
    front = [models[i] for i in pareto_front([(m[cost], m[metric]) for m in models])]
    # A staircase: the best accuracy reachable at each cost.
    ax.plot(
        [m[cost] for m in front],
        [m[metric] for m in front],
        "--",
        drawstyle="steps-post",
        color="black",
        linewidth=1,
        label="Pareto front",
    )
    for m in front:
        ax.annotate(
            m["model"], (m[cost], m[metric]), fontsize=6, xytext=(3, 3), textcoords="offset points"
        )
    costs = [r[cost] for r in finished(rows)]
    if min(costs) > 0 and max(costs) / min(costs) > 8:
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("MACs per image" if cost == "macs" else "parameters")
    ax.set_ylabel(f"{ATTACK_TITLES[metric]} accuracy (%)")
    ax.set_title(f"{ATTACK_TITLES[metric]} accuracy against {'MACs' if cost == 'macs' else cost}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title=colour_by, title_fontsize=7)
    return save_figure(fig, path)


def plot_axis_effects(
    rows: list[dict[str, Any]],
    axes: list[str],
    taus: dict[str, float | None],
    metric: str,
    path: Path,
) -> Path:
    """One panel per axis: robust accuracy against its value, Kendall's tau in the title."""
    panels = [a for a in axes if a not in ("macs", "params")] or list(axes)
    colour_by = category_axis(rows)
    columns = min(3, max(1, len(panels)))
    lines = max(1, math.ceil(len(panels) / columns))
    fig, grid = plt.subplots(
        lines, columns, figsize=(4 * columns, 3.2 * lines), dpi=110, squeeze=False
    )
    colours = _colours(rows, colour_by)
    for ax, axis in zip(grid.flat, panels, strict=False):
        for label, colour in colours.items():
            members = [
                r for r in finished(rows) if colour_by is None or str(r.get(colour_by)) == label
            ]
            ax.scatter(
                [r[axis] for r in members],
                [r[metric] for r in members],
                s=16,
                color=colour,
                alpha=0.7,
                label=label if colour_by else None,
            )
        tau = taus.get(axis)
        ax.set_title(f"{axis}: τ = {'–' if tau is None else f'{tau:+.2f}'}", fontsize=9)
        ax.set_xlabel(axis, fontsize=8)
        if axis in COUNT_AXES:
            ax.xaxis.set_major_formatter(EngFormatter())
        ax.set_ylabel(f"{ATTACK_TITLES[metric]} (%)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(grid.flat)[len(panels) :]:
        ax.axis("off")
    if colour_by:
        grid.flat[0].legend(fontsize=7, title=colour_by, title_fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _colours(rows: list[dict[str, Any]], colour_by: str | None) -> dict[str, Any]:
    labels = sorted({str(r.get(colour_by)) for r in finished(rows)}) if colour_by else ["all"]
    palette = plt.get_cmap("tab10")
    return {label: palette(i % 10) for i, label in enumerate(labels)}


def save_figure(fig: Any, path: Path) -> Path:
    """Write `fig` as a PNG (atomically) and close it."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
