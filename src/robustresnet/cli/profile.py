"""`rrn profile`: trainable parameters and MACs of a preset or a spec file."""

from __future__ import annotations

import argparse

from .._units import format_count
from ..arch.profile import profile
from ..arch.zoo import resolve_spec
from ._arch import summary, table
from ._common import add_output_flags, example_epilog, print_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "profile",
        help="count params and MACs of a network",
        description="Trainable parameters and multiply-accumulates (the paper's #P and FLOPs)\n"
        "for one image, by torchprofile's counting rules, on the meta device (no memory).",
        **example_epilog(
            "rrn profile robustresnet-a1",
            "rrn profile wrn-28-10 --input-size 64 --json",
            "rrn profile spec.yaml",
        ),
    )
    parser.add_argument("arch", metavar="NAME|SPEC", help="preset name, spec YAML/JSON, or run dir")
    parser.add_argument(
        "--input-size", type=int, default=None, help="image side in pixels (default: the spec's)"
    )
    add_output_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.arch)
    cost = profile(spec, input_size=args.input_size)
    row = summary(spec, cost, spec.name or str(args.arch))
    if args.json:
        print_json(row)
    else:
        print(table([row]))
        c, h, w = cost.input_size
        print(
            f"\n{cost.params:,} params, {cost.macs:,} MACs ({format_count(cost.macs)}) "
            f"for one {c}x{h}x{w} image"
        )
    return 0
