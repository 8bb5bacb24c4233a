"""`rrn train RECIPE [key=value ...]`: adversarial training from a shipped recipe or a YAML file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import ConfigError, Stopped
from ._common import example_epilog, print_json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `rrn train`."""
    parser = subparsers.add_parser(
        "train",
        help="train a network from a recipe name or a YAML config",
        description=(
            "Train as the recipe says: a shipped recipe's name (`rrn recipes` lists them) or a "
            "YAML file (a path that exists wins). key=value arguments override it (dotted keys, "
            "e.g. optim.lr=0.2). The run directory receives config.yaml, arch.yaml, "
            "checkpoints, metrics, curves.png and the final report.md."
        ),
        **example_epilog(
            "rrn train digits-demo",
            "rrn train cifar10/trades/robustresnet-a1 data.root=~/data --out runs/a1",
            "rrn train digits-demo schedule.epochs=3 run.precision=bf16",
            "rrn train digits-demo optim.lr=0.2 --print-config > my-recipe.yaml",
            "rrn train my-recipe.yaml",
            "rrn train digits-demo run.loggers=[tensorboard,mlflow] --json",
            "rrn train --resume runs/a1",
            "torchrun --nproc-per-node 4 -m robustresnet train RECIPE --out runs/a1",
        ),
    )
    parser.add_argument(
        "config",
        nargs="?",
        metavar="RECIPE",
        help="recipe name or YAML file (omit with --resume)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    parser.add_argument(
        "--out", type=Path, help="run directory (default: runs/NAME-TIME, NAME the recipe's)"
    )
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (overrides applied) as YAML and exit; train nothing",
    )
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
    from ..train.distributed import detect_world

    try:
        return _train(args)
    except Stopped as stop:
        if not detect_world().is_main:
            return stop.exit_code
        raise


def _train(args: argparse.Namespace) -> int:
    """Resolve the config, then print it (--print-config) or train and print the report."""
    from ..train.checkpoint import CONFIG
    from ..train.config import load_config
    from ..train.distributed import detect_world
    from ..train.final import REPORT_MD, read_reports
    from ..train.trainer import train

    overrides = list(args.overrides)
    if args.config is not None and "=" in args.config:  # `--resume RUN key=value` form
        overrides.insert(0, args.config)
        args.config = None
    if args.resume is not None and args.out is not None and args.out != args.resume:
        raise ConfigError("--out", str(args.out), f"omitted or equal to --resume {args.resume}")
    if args.config is None and args.resume is None:
        raise ConfigError("config", None, "a recipe name or YAML file (or --resume RUN_DIR)")
    config = load_config(args.config or args.resume / CONFIG, overrides)
    if args.print_config:
        sys.stdout.write(config.to_yaml())
        return 0
    if args.resume is not None:
        run_dir = train(config, args.resume, resume=True, quiet=args.quiet, stop_on_signals=True)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = args.out or Path("runs") / f"{_run_name(args.config)}-{stamp}"
        run_dir = train(config, run_dir, quiet=args.quiet, stop_on_signals=True)
    if not detect_world().is_main:
        return 0  # rank 0 reports
    if args.json:
        print_json({"run_dir": str(run_dir), "reports": read_reports(run_dir)})
        return 0
    report = run_dir / REPORT_MD
    if report.is_file():
        sys.stdout.write(report.read_text(encoding="utf-8"))
    print(f"run directory: {run_dir}")
    return 0


def _run_name(config: str) -> str:
    """A run directory's name for the recipe argument: a file's stem, a recipe's whole name
    (`cifar10/trades/robustresnet-a1` -> `cifar10-trades-robustresnet-a1`)."""
    return Path(config).stem if Path(config).is_file() else config.replace("/", "-")
