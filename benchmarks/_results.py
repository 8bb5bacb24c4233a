"""benchmarks/RESULTS.md: one section per benchmark, its newest run first, earlier runs kept."""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from robustresnet._io import write_text

RESULTS = Path(__file__).with_name("RESULTS.md")
WRITE = "--write"


def add_write_flag(parser: argparse.ArgumentParser) -> None:
    """The --write flag every benchmark takes: record its run in RESULTS.md."""
    parser.add_argument(WRITE, action="store_true", help=f"record the run in {RESULTS}")


def run_heading() -> str:
    """The subsection heading of a run recorded now."""
    return f"### Run of {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


def command_line() -> str:
    """The command that ran this benchmark (less --write): what repeats the measurement."""
    args = [shlex.quote(a) for a in sys.argv[1:] if a != WRITE]
    return " ".join(["PYTHONPATH=src python", f"benchmarks/{Path(sys.argv[0]).name}", *args])


def record(section: str, text: str, path: Path = RESULTS) -> None:
    """Put a run's `text` (a `###` subsection) first in `section` ("## ..."), created at the end
    when missing; the section's earlier runs and the other sections stay as they are."""
    current = path.read_text() if path.is_file() else "# Benchmark results\n"
    if section + "\n" not in current:
        current = current.rstrip("\n") + f"\n\n{section}\n"
    head, _, earlier = current.partition(section + "\n")
    parts = [head + section, text.strip("\n")]
    if earlier.strip():
        parts.append(earlier.strip("\n"))
    write_text(path, "\n\n".join(parts) + "\n")
