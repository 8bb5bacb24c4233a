"""`rrn export RUN_DIR`: a RobustBench submission and / or a model card of an evaluated run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConfigError
from ..export import export_card, export_robustbench
from ._common import example_epilog, print_json


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`rrn export` and its options."""
    parser = subparsers.add_parser(
        "export",
        help="write a RobustBench submission or a model card of an evaluated run",
        description="Export the weights that the run's report evaluated.\n"
        "--robustbench OUT: the model_info JSON, a {'state_dict': ...} checkpoint, a torch-only\n"
        "architecture.py and the text of RobustBench's new-model request; it needs standard\n"
        "AutoAttack on the whole test split at the run's threat model (or --allow-partial).\n"
        "--card OUT: README.md (model card with YAML front matter), model.safetensors, arch.yaml.",
        **example_epilog(
            "rrn export runs/a1 --robustbench submission --name 'My paper' --authors 'A. B, C. D'"
            " --venue 'arXiv, 2025' --link https://arxiv.org/abs/... --model-id Me2025Paper_A1",
            "rrn export runs/a1 --card hub/robustresnet-a1",
            "rrn export runs/digits-demo --robustbench out --report eval/report.json "
            "--allow-partial --json",
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory")
    parser.add_argument("--robustbench", metavar="OUT", help="folder for the RobustBench files")
    parser.add_argument("--card", metavar="OUT", help="folder for the model card and weights")
    parser.add_argument("--report", help="the evaluation report (default: RUN_DIR/report.json)")
    parser.add_argument(
        "--allow-partial", action="store_true",
        help="export AutoAttack on fewer images or attacks, saying so in the footnote",
    )  # fmt: skip
    parser.add_argument("--model-id", help="model name, e.g. Huang2022Revisiting_WRN-A4")
    parser.add_argument("--name", help="paper title (RobustBench's `name`)")
    parser.add_argument("--authors", help="authors, comma-separated")
    parser.add_argument("--venue", help="venue, e.g. 'CVPR 2023' or 'arXiv, Dec. 2022'")
    parser.add_argument("--link", help="URL of the paper or code")
    parser.add_argument("--architecture", help="architecture as the leaderboard shows it")
    parser.add_argument(
        "--external", type=float, metavar="PERCENT",
        help="robust accuracy (%%) of an adaptive evaluation of your own, if any",
    )  # fmt: skip
    parser.add_argument("--footnote", help="a note for the leaderboard entry")
    parser.add_argument("--license", default="mit", help="the card's license (default: mit)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write what was asked for; print the files (and the placeholders left to fill in)."""
    if not (args.robustbench or args.card):
        raise ConfigError("output", None, "--robustbench OUT and/or --card OUT")
    result: dict[str, Any] = {}
    if args.robustbench:
        result["robustbench"] = export_robustbench(
            args.run_dir, args.robustbench, report=args.report, allow_partial=args.allow_partial,
            model_id=args.model_id, name=args.name, authors=args.authors, venue=args.venue,
            link=args.link, architecture=args.architecture, external=args.external,
            footnote=args.footnote,
        ).to_dict()  # fmt: skip
    if args.card:
        result["card"] = export_card(
            args.run_dir, args.card, report=args.report, model_id=args.model_id,
            license_id=args.license,
        ).to_dict()  # fmt: skip
    if args.json:
        print_json(result)
    else:
        _print(result)
    return 0


def _print(result: dict[str, Any]) -> None:
    submission = result.get("robustbench")
    if submission:
        info = submission["model_info"]
        print(
            f"RobustBench: clean {info['clean_acc']}%, AutoAttack {info['autoattack_acc']}% "
            f"(eps {info['eps']}) from {submission['weights']}"
        )
        for key in ("model_info_path", "checkpoint_path", "architecture_path", "request_path"):
            print(f"  {submission[key]}")
        if submission["placeholders"]:
            print(
                "  placeholders left: " + ", ".join(submission["placeholders"]) + " (give "
                + " ".join(f"--{p.replace('_', '-')}" for p in submission["placeholders"]) + ")",
                file=sys.stderr,
            )  # fmt: skip
    card = result.get("card")
    if card:
        print(f"model card from {card['weights']}:")
        for key in ("readme_path", "weights_path", "arch_path"):
            print(f"  {card[key]}")
