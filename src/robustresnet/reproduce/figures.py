"""The pictures of an experiment's report: robust accuracy against MACs with the published points
overlaid, robust accuracy against the depth share, and each stage's depth or widening against
robust accuracy with Kendall's tau (the grids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..report.plots import plot_axis_effects, plt, save_figure
from ..report.tables import ATTACK_TITLES, finished
from .compare import Cell
from .published import Table

PEAK_SHARE = 0.7  # the paper's best depth share (7 : 3)


def plot_macs(
    table: Table, cells: list[Cell], sizes: dict[str, tuple[int, int]], metric: str, path: Path
) -> Path:
    """`metric` against MACs: the published rows (open) and ours (filled), joined per row."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for row in table.rows:
        cell = next((c for c in cells if c.row == row.label and c.column.metric == metric), None)
        if cell is None or row.macs is None:
            continue
        ax.scatter(row.macs, cell.published.mean, facecolors="none", edgecolors="black", s=40)
        ax.annotate(row.label, (row.macs, cell.published.mean), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
        if cell.ours is not None and row.label in sizes:
            ours_macs = sizes[row.label][1]
            ax.errorbar(ours_macs, cell.ours.mean, yerr=cell.ours.std or 0, fmt="o", color="C0")
            ax.plot([row.macs, ours_macs], [cell.published.mean, cell.ours.mean], ":", color="grey")
    ax.scatter([], [], facecolors="none", edgecolors="black", label="published")
    ax.scatter([], [], color="C0", label="ours (mean ± std over seeds)")
    ax.set_xscale("log")
    ax.set_xlabel("MACs per image")
    ax.set_ylabel(f"{ATTACK_TITLES[metric]} accuracy (%)")
    ax.set_title(f"{table.name}: {ATTACK_TITLES[metric]} accuracy against MACs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_depth_share(runs: list[dict[str, Any]], metric: str, path: Path) -> Path:
    """`metric` against the depth share ΣD / (ΣD + ΣW), one line per MAC target."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    targets = sorted({r.get("scaling_target") for r in finished(runs)}, key=lambda t: t or 0)
    for i, target in enumerate(targets):
        members = sorted(
            (r for r in finished(runs) if r.get("scaling_target") == target),
            key=lambda r: r["depth_share"],
        )
        label = "runs" if target is None else f"{target / 1e9:g}G MACs"
        ax.plot([r["depth_share"] for r in members], [r[metric] for r in members], "o-",
                color=f"C{i}", label=label)  # fmt: skip
    ax.axvline(PEAK_SHARE, linestyle="--", color="black", linewidth=1, label="paper's peak (0.7)")
    ax.set_xlabel("depth share ΣD / (ΣD + ΣW)")
    ax.set_ylabel(f"{ATTACK_TITLES[metric]} accuracy (%)")
    ax.set_title(f"{ATTACK_TITLES[metric]} accuracy against the depth share")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_stages(
    runs: list[dict[str, Any]], kendall: list[dict[str, Any]], metric: str, path: Path
) -> Path:
    """Robust accuracy against each stage's depth and widening, Kendall's tau in the titles."""
    axes = [entry["axis"] for entry in kendall]
    taus = {entry["axis"]: entry["tau"] for entry in kendall}
    return plot_axis_effects(runs, axes, taus, metric, path)
