"""`rrn report`: a study's runs gathered into a CSV, the paper's table, Kendall's tau and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import write_json, write_text
from .gather import gather, read_run
from .plots import plot_axis_effects, plot_pareto
from .tables import (
    ATTACK_TITLES,
    aggregate,
    kendall_markdown,
    kendall_table,
    markdown_table,
    numeric_axes,
    pick_metric,
    to_csv,
)

__all__ = ["gather", "make_report", "read_run"]


def make_report(
    runs_dir: str | Path, out_dir: str | Path | None = None, *, metric: str = "auto"
) -> dict[str, Any]:
    """Write runs.csv, report.md, summary.json and the PNG plots; return the summary."""
    runs_dir = Path(runs_dir)
    out = Path(out_dir) if out_dir is not None else runs_dir / "report"
    rows = gather(runs_dir)
    metric = pick_metric(rows, metric)
    models = aggregate(rows)
    kendall = kendall_table(rows, metric)
    files = {"csv": write_text(out / "runs.csv", to_csv(rows))}
    files["pareto_macs"] = plot_pareto(rows, models, metric, "macs", out / "robust_vs_macs.png")
    files["pareto_params"] = plot_pareto(
        rows, models, metric, "params", out / "robust_vs_params.png"
    )
    axes = numeric_axes(rows)
    if axes:
        taus = {entry["axis"]: entry["tau"] for entry in kendall}
        files["axis_effects"] = plot_axis_effects(
            rows, axes, taus, metric, out / "axis_effects.png"
        )
    unfinished = [row for row in rows if row["status"] != "finished"]
    files["markdown"] = write_text(
        out / "report.md", _markdown(runs_dir, models, kendall, metric, files, unfinished)
    )
    summary = {
        "runs_dir": str(runs_dir),
        "runs": len(rows),
        "status": {s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}},
        "metric": metric,
        "models": models,
        "kendall": kendall,
        "files": {key: str(path) for key, path in files.items()},
    }
    write_json(out / "summary.json", summary)
    return summary


def _markdown(
    runs_dir: Path,
    models: list[dict[str, Any]],
    kendall: list[dict[str, Any]],
    metric: str,
    files: dict[str, Path],
    unfinished: list[dict[str, Any]],
) -> str:
    """report.md: the table, the tau table, the plots and the runs that did not finish."""
    seeds = max(m["runs"] for m in models)
    parts = [
        f"# Study report: {runs_dir.name}\n",
        f"Accuracy in percent{f', mean ± std over up to {seeds} seeds' if seeds > 1 else ''};"
        " #P parameters, #F multiply-accumulates per image.\n",
        markdown_table(models),
    ]
    if kendall:
        parts += [
            f"\n## Kendall's τ with {ATTACK_TITLES[metric]} accuracy (over runs)\n",
            kendall_markdown(kendall, metric),
        ]
    parts.append("\n## Plots\n")
    parts += [f"![{key}]({path.name})\n" for key, path in files.items() if path.suffix == ".png"]
    if unfinished:
        parts.append("\n## Runs without a final report\n")
        parts += [f"- {row['name']}: {_status_text(row)}\n" for row in unfinished]
    return "\n".join(parts)


def _status_text(row: dict[str, Any]) -> str:
    """incomplete, failed, or broken with the reason its files could not be read."""
    return f"{row['status']} ({row['error']})" if "error" in row else row["status"]
