"""Pieces every subcommand shares: the --json flag and its output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """`--json` (machine-readable output on stdout) and `--quiet` (no progress bars)."""
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def print_json(obj: Any) -> None:
    """Write `obj` as indented JSON to stdout."""
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def example_epilog(*lines: str) -> dict[str, Any]:
    """Parser keyword arguments that show `lines` as examples under --help."""
    text = "examples:\n" + "\n".join(f"  {line}" for line in lines)
    return {"epilog": text, "formatter_class": argparse.RawDescriptionHelpFormatter}
