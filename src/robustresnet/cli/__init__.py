"""The `rrn` command: a thin layer over the library, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from .._malloc import keep_freed_memory
from ..errors import RobustResNetError, Stopped

# Each module defines `add_parser(subparsers)` returning its parser with `func` set.
SUBCOMMANDS: list[str] = [
    "zoo",
    "profile",
    "scale",
    "data",
    "recipes",
    "train",
    "eval",
    "sweep",
    "report",
    "reproduce",
    "export",
]


def version_line() -> str:
    """`rrn --version`: the package, torch, and the device it would use."""
    import torch

    from .. import __version__

    if torch.cuda.is_available():
        device = f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}"
    else:
        device = "no GPU: CPU"
    return f"rrn {__version__} (torch {torch.__version__}, {device})"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="rrn",
        description="RobustResNets: architectures, adversarial training and evaluation.",
        epilog="Run `rrn COMMAND --help` for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `rrn`; library errors become one clear line and exit code 2, a stop on
    SIGTERM / SIGINT one line and 128 + the signal number (143 / 130), as shells report it."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to print the command to resume
    keep_freed_memory()
    try:
        code = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except Stopped as stop:
        print(f"rrn {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except RobustResNetError as err:
        # One line even when the message quotes a multi-line cause (torch's, PyYAML's).
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"rrn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C where no stop is handled: no traceback either
        print(f"rrn {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # `rrn ... | head`: the reader left; end quietly, as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 128 + signal.SIGPIPE
