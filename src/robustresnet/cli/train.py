"""`rrn train CONFIG [key=value ...]`: adversarial training from a YAML recipe."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..errors import ConfigError, Stopped
from ._common import example_epilog, print_json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `rrn train`."""
    parser = subparsers.add_parser(
        "train",
        help="train a network with a recipe from configs/",
        description=(
            "Train as the YAML config says; key=value arguments override it (dotted keys, "
            "e.g. optim.lr=0.2). The run directory receives config.yaml, arch.yaml, "
            "checkpoints, metrics, curves.png and the final report.md."
        ),
        **example_epilog(
            "rrn train configs/digits-demo.yaml",
            "rrn train configs/cifar10/trades/robustresnet-a1.yaml data.root=~/data --out runs/a1",
            "rrn train configs/digits-demo.yaml schedule.epochs=3 run.precision=bf16",
            "rrn train configs/digits-demo.yaml run.loggers=[tensorboard,mlflow] --json",
            "rrn train --resume runs/a1",
            "torchrun --nproc-per-node 4 -m robustresnet train CONFIG --out runs/a1",
        ),
    )
    parser.add_argument("config", nargs="?", help="YAML config (omit with --resume)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/CONFIG-TIME)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print {run_dir, reports} as JSON at the end (progress and epoch lines: stderr)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """`rrn train`; on a stop every rank ends at the same step and rank 0 alone says so."""
    try:
        return _train(args)
    except Stopped as stop:
        if os.environ.get("RANK", "0") != "0":
            return stop.exit_code
        raise


def _train(args: argparse.Namespace) -> int:
    """Resolve the config, train, print the final report."""
    from ..train.checkpoint import CONFIG
    from ..train.config import load_config
    from ..train.final import REPORT_MD, read_reports
    from ..train.trainer import train

    overrides = list(args.overrides)
    if args.config is not None and "=" in args.config:  # `--resume RUN key=value` form
        overrides.insert(0, args.config)
        args.config = None
    if args.resume is not None:
        if args.out is not None and args.out != args.resume:
            raise ConfigError("--out", str(args.out), f"omitted or equal to --resume {args.resume}")
        source = args.config or args.resume / CONFIG
        config = load_config(source, overrides)
        run_dir = train(config, args.resume, resume=True, quiet=args.quiet, stop_on_signals=True)
    else:
        if args.config is None:
            raise ConfigError("config", None, "a YAML config file (or --resume RUN_DIR)")
        config = load_config(args.config, overrides)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = args.out or Path("runs") / f"{Path(args.config).stem}-{stamp}"
        run_dir = train(config, run_dir, quiet=args.quiet, stop_on_signals=True)
    if os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 reports
    if args.json:
        print_json({"run_dir": str(run_dir), "reports": read_reports(run_dir)})
        return 0
    report = run_dir / REPORT_MD
    if report.is_file():
        sys.stdout.write(report.read_text(encoding="utf-8"))
    print(f"run directory: {run_dir}")
    return 0
