"""Progress bars with ETA that stay quiet when asked or when stderr is not a terminal, and lines
printed above them."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, *, quiet: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled with `quiet=True` or when stderr is not a TTY."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(
        iterable, disable=disable, dynamic_ncols=True, leave=False, file=sys.stderr, **kwargs
    )


def write_line(text: str) -> None:
    """`text` as a whole line on stderr: a live bar is cleared first and drawn again below it,
    so the two never share a line (tqdm.write)."""
    tqdm.write(text, file=sys.stderr)
    sys.stderr.flush()
