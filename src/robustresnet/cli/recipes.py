"""`rrn recipes`: the training recipes and sweeps shipped in the package, one line each."""

from __future__ import annotations

import argparse

from ..recipes import recipes
from ._common import example_epilog, print_json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `rrn recipes`."""
    parser = subparsers.add_parser(
        "recipes",
        help="list the shipped training recipes, sweeps and paper experiments, by name",
        description=(
            "One line per shipped recipe: its kind (train: `rrn train NAME`, sweep: "
            "`rrn sweep NAME`, experiment: `rrn reproduce NAME`), its name and what it runs. "
            "`rrn train NAME --print-config` shows a recipe in full."
        ),
        **example_epilog(
            "rrn recipes",
            "rrn recipes --json",
            "rrn train cifar10/trades/robustresnet-a1 --print-config",
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print kind, name, description and file of each"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the list."""
    found = recipes()
    if args.json:
        print_json(
            [
                {"kind": r.kind, "name": r.name, "description": r.description, "path": str(r.path)}
                for r in found
            ]
        )
        return 0
    width = max(len(recipe.name) for recipe in found)
    for recipe in found:
        print(f"{recipe.kind:10}  {recipe.name:{width}}  {recipe.description}")
    return 0
