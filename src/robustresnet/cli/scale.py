"""`rrn scale`: RobustScaling (or a baseline) to a MAC budget; prints and saves the spec."""

from __future__ import annotations

import argparse

from .._units import format_count, parse_count
from ..arch.profile import profile
from ..arch.scaling import RULES, nearest_standard_wrn, robust_scaling
from ._arch import summary, table
from ._common import add_output_flags, example_epilog, print_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "scale",
        help="size a network to a MAC budget (RobustScaling)",
        description="Compound RobustScaling: stage depths 2:2:1, widening 2:2.5:1, total depth :\n"
        "total widening 7:3, MACs within --tolerance of the target. The depth and width rules\n"
        "are the paper's baselines: the standard WRN nearest the target with its total depth\n"
        "(or total widening) redistributed 2:2:1 (or 2:2.5:1).",
        **example_epilog(
            "rrn scale --macs 10G",
            "rrn scale --macs 500M --block basic_block --json",
            "rrn scale --macs 20G --rule depth -o wrn-depth-20g.yaml",
        ),
    )
    parser.add_argument("--macs", required=True, help="target MACs: 10G, 500M, 2.5e9, ...")
    parser.add_argument("--rule", choices=RULES, default="compound", help="default: compound")
    parser.add_argument(
        "--block", default="robust_res_block", help="block type (default: robust_res_block)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.025, help="compound: MAC tolerance (default 0.025)"
    )
    parser.add_argument("--num-classes", type=int, default=10, help="classes (default 10)")
    parser.add_argument("--input-size", type=int, default=32, help="image side (default 32)")
    parser.add_argument("-o", "--output", help="write the spec here (.yaml or .json)")
    add_output_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    target = parse_count(args.macs, field="--macs")
    spec = robust_scaling(
        target,
        block=args.block,
        rule=args.rule,
        tolerance=args.tolerance,
        num_classes=args.num_classes,
        input_size=args.input_size,
    )
    cost = profile(spec)
    if args.output:
        spec.save(args.output)
    row = {**summary(spec, cost), "rule": args.rule, "target_macs": target}
    if args.rule != "compound":
        row["base"] = nearest_standard_wrn(target, input_size=args.input_size)
    if args.json:
        print_json(row)
    else:
        print(table([row]))
        base = f" (from {row['base']})" if "base" in row else ""
        print(
            f"\n{args.rule}{base}: MACs {format_count(cost.macs)}, {cost.macs / target - 1:+.1%} "
            f"of the target {format_count(target)}"
        )
        if args.output:
            print(f"spec written to {args.output}")
    return 0
