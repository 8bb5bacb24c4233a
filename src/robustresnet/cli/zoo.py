"""`rrn zoo`: the named networks of the paper with their parameters and MACs."""

from __future__ import annotations

import argparse

from .._progress import progress
from ..arch.profile import profile
from ..arch.zoo import PRESETS
from ._arch import summary, table
from ._common import add_output_flags, example_epilog, print_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "zoo",
        help="list the preset networks with params and MACs",
        description="Presets of the paper (RobustResNet-A1..A4, WRN-A1..A4, the standard WRNs,\n"
        "PreActResNet-18): block, stage depths and widening, trainable params, and MACs for\n"
        "one 32x32 image (or --input-size), counted by torchprofile's rules.",
        **example_epilog("rrn zoo", "rrn zoo --json", "rrn zoo --input-size 64"),
    )
    parser.add_argument(
        "--input-size", type=int, default=None, help="image side in pixels (default: 32)"
    )
    add_output_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    rows = [
        summary(spec, profile(spec, input_size=args.input_size), name)
        for name, spec in progress(PRESETS.items(), quiet=args.quiet, desc="profiling")
    ]
    if args.json:
        print_json(rows)
    else:
        print(table(rows))
    return 0
