"""Per-epoch metrics: metrics.jsonl, metrics.csv and curves.png (trackers: loggers.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .._io import write_bytes, write_text

JSONL = "metrics.jsonl"
CSV = "metrics.csv"
CURVES = "curves.png"


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl and metrics.csv from every row so far (small files, atomic writes)."""
    write_text(run_dir / JSONL, "".join(json.dumps(row) + "\n" for row in rows))
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(run_dir / CSV, buffer.getvalue())


def plot_curves(run_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """curves.png: loss, accuracies and learning rate against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    keys = list(dict.fromkeys(k for row in rows for k in row))
    panels = [
        ("loss", [k for k in keys if k.startswith("train_loss")]),
        ("accuracy", [k for k in keys if "_acc" in k or k.startswith("val_")]),
        ("learning rate", ["lr"]),
    ]
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(keys) > 1:
            ax.legend()
    fig.tight_layout()
    path = run_dir / CURVES
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)

    write_bytes(path, buffer.getvalue())
    return path
