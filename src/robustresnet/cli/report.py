"""`rrn report RUNS_DIR`: a study's runs as a CSV, the paper's table, Kendall's tau and plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_output_flags, example_epilog, print_json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `rrn report`."""
    parser = subparsers.add_parser(
        "report",
        help="tables and plots of the runs under a folder (a sweep's output)",
        description=(
            "Gather every run directory under RUNS_DIR (config.yaml, arch.yaml, report.json) "
            "into runs.csv, report.md (model | #P | #F | clean | PGD-20 | CW-40 | AA, means over "
            "seeds; Kendall's tau of each axis with robust accuracy) and PNG plots: robust "
            "accuracy against MACs and params with the Pareto front, and against each axis."
        ),
        **example_epilog(
            "rrn report runs/digits-demo",
            "rrn report runs/study --out docs/study --metric pgd20",
            "rrn report runs/study --json",
        ),
    )
    parser.add_argument("runs_dir", type=Path, help="folder holding run directories")
    parser.add_argument("--out", type=Path, help="output folder (default: RUNS_DIR/report)")
    parser.add_argument(
        "--metric",
        default="auto",
        choices=("auto", "aa", "cw40", "pgd20"),
        help="robust accuracy to plot (auto: the strongest every run has)",
    )
    add_output_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the report and print its table (or the summary as JSON)."""
    from ..report import make_report

    summary = make_report(args.runs_dir, args.out, metric=args.metric)
    if args.json:
        print_json(summary)
    else:
        print(Path(summary["files"]["markdown"]).read_text(encoding="utf-8"))
        print(f"written to {Path(summary['files']['markdown']).parent}")
    return 0
