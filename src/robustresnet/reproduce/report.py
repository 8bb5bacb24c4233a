"""`rrn reproduce NAME --report`: the experiment's published table against its runs, as
comparison.md, comparison.csv, comparison.json and the figure the paper has."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .._io import write_json, write_text
from ..report.gather import read_run
from ..report.tables import kendall_markdown, kendall_table, pick_metric
from ..sweep import Plan
from .compare import (
    cells_csv,
    cells_markdown,
    compare,
    model_key,
    rank_agreement,
    rank_markdown,
    sizes_markdown,
)
from .experiments import Experiment
from .figures import plot_depth_share, plot_macs, plot_stages
from .published import published_tables
from .study import base_configs, identity, matching_row

STAGE_AXES = ("D1", "D2", "D3", "W1", "W2", "W3")
SCALE_NOTE = (
    "**Scale: {scale}.** These runs are not the paper's setting (see `rrn reproduce --help` and "
    "docs/reproduce.md): 8x8 digits and shrunk networks, against the paper's figures for its "
    "dataset. The differences and their flags compare two different tasks; the ranking below "
    "is what can be compared.\n"
)
RANK_NOTE = (
    "Does the order of the rows reproduce? Kendall's τ between the published means and ours "
    "over the rows that have both (1: the same order, 0: unrelated, −1: reversed), with its "
    "two-sided p-value.\n"
)


def reproduce_report(
    experiment: Experiment,
    plan: Plan,
    runs_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    scale: str = "full",
) -> dict[str, Any]:
    """Compare the experiment's published table with the planned runs under `runs_dir` (those
    finished so far, trained at `scale`); write the files into `out_dir` (default
    RUNS_DIR/report)."""
    runs_dir = Path(runs_dir)
    out = Path(out_dir) if out_dir is not None else runs_dir / "report"
    table = published_tables()[experiment.table]
    configs = base_configs(experiment)
    runs, planned, sizes, unmatched = [], Counter(), {}, []
    for trial in plan.trials:
        ident = identity(trial, configs)
        row = matching_row(table.rows, ident)
        run = _read(runs_dir / trial.name)
        if row is None:
            unmatched.append(run)
            continue
        key = model_key(row.label, ident["dataset"], ident["method"])
        planned[key] += 1
        sizes.setdefault(row.label, (trial.params, trial.macs))
        runs.append({**run, "model": key})
    cells, _ = compare(table, runs, planned)
    if scale == "digits":  # one dataset only: leave out the cells it never runs
        cells = [cell for cell in cells if cell.planned]
    files: dict[str, Path] = {}
    figure_text = _figure(experiment, table, cells, sizes, runs + unmatched, out, files)
    files["csv"] = write_text(out / "comparison.csv", cells_csv(cells))
    status = Counter(r["status"] for r in runs + unmatched)
    agreement = rank_agreement(cells)
    markdown = _markdown(experiment, table, cells, agreement, sizes, status, figure_text, files,
                         scale)  # fmt: skip
    files["markdown"] = write_text(out / "comparison.md", markdown)
    summary = {
        "experiment": experiment.name,
        "scale": scale,
        "table": table.name,
        "runs_dir": str(runs_dir),
        "runs": dict(status),
        "cells": len(cells),
        "cells_with_runs": sum(c.ours is not None for c in cells),
        "flagged": [f"{c.row} {c.column.label}" for c in cells if c.flagged],
        "rank_agreement": agreement,
        "files": {key: str(path) for key, path in files.items()},
    }
    write_json(out / "comparison.json", summary)
    return summary


def _read(run_dir: Path) -> dict[str, Any]:
    """A run's row (identity, sizes, metrics), or a 'not started' one."""
    if not run_dir.is_dir():
        return {"name": run_dir.name, "model": run_dir.name, "status": "not started"}
    return read_run(run_dir)


def _figure(experiment, table, cells, sizes, runs, out, files) -> str:
    """Draw the experiment's figure; return the Markdown that goes with it."""
    done = [r for r in runs if r["status"] == "finished"]
    if experiment.figure == "macs" and done:
        metric = "cw40" if any(c.column.metric == "cw40" for c in cells) else "pgd20"
        files["figure"] = plot_macs(table, cells, sizes, metric, out / "robust_vs_macs.png")
    elif experiment.figure == "depth_share" and done:
        metric = pick_metric(done)
        files["figure"] = plot_depth_share(done, metric, out / "depth_share.png")
    elif experiment.figure == "kendall" and len(done) > 1:
        metric = pick_metric(done)
        kendall = [e for e in kendall_table(done, metric) if e["axis"] in STAGE_AXES]
        if kendall:
            files["figure"] = plot_stages(done, kendall, metric, out / "kendall_per_stage.png")
            return f"\n## Kendall's τ per stage\n\n{kendall_markdown(kendall, metric)}"
    return ""


def _markdown(experiment, table, cells, agreement, sizes, status, figure_text, files, scale) -> str:
    """comparison.md: what is compared, the cells, the rank agreement, the networks' sizes,
    claims and figure."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.items())) or "no runs"
    parts = [
        f"# {experiment.name}: published against ours\n",
        f"{experiment.description}. Published: {table.source}. Runs: {counts}.\n",
        *([] if scale == "full" else [SCALE_NOTE.format(scale=scale)]),
        "Accuracy in percent. Ours: mean ± std over the finished runs (seeds) of each row; "
        "Δ is flagged **beyond 2σ** when |Δ| > 2·sqrt(published std² + our std²), the "
        "published std taken as 0 where the paper gives a single figure and ours as 0 with one "
        "run; with neither spread nothing is flagged.\n",
    ]
    if cells:
        parts.append(cells_markdown(cells))
    if agreement:
        parts += ["\n## Ranking\n", RANK_NOTE, rank_markdown(agreement)]
    if table.rows:
        parts += ["\n## Networks\n", sizes_markdown(table.rows, sizes)]
    if table.claims:
        parts.append("\n## What the paper states\n")
        parts += [f"- {claim}\n" for claim in table.claims]
    parts.append(figure_text)
    if "figure" in files:
        parts.append(f"\n![{experiment.figure}]({files['figure'].name})\n")
    return "\n".join(parts)
