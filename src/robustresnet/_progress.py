"""Progress bars with ETA that stay quiet when asked or when stderr is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, *, quiet: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar, disabled with `quiet=True` or when stderr is not a TTY."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, disable=disable, dynamic_ncols=True, leave=False, **kwargs)
