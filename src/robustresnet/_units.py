"""Counts as people write them: 5.11G, 19.2M, and back from "10G", "500M", "1e9"."""

from __future__ import annotations

import math
import re

from .errors import ConfigError

_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KkMmGgTt]?)\s*$")


def format_count(count: int | float) -> str:
    """Three significant digits with a K/M/G/T suffix, as the paper prints them (5.11G)."""
    for suffix in ("T", "G", "M", "K"):
        scale = _SUFFIXES[suffix]
        # Round first, so 999.96M prints as 1.00G rather than 1000M.
        if abs(float(f"{count:.3g}")) >= scale:
            value = count / scale
            digits = max(0, 2 - int(math.floor(math.log10(abs(float(f"{value:.3g}"))))))
            return f"{value:.{digits}f}{suffix}"
    return f"{count:.3g}" if isinstance(count, float) else str(count)


def parse_count(text: str | int | float, *, field: str = "count") -> int:
    """An integer from "10G", "500M", "2.5k", "1e9" or a number; ConfigError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _COUNT.match(str(text))
        if match is None:
            raise ConfigError(field, text, "a positive number such as 10G, 500M, 2.5e9")
        value = float(match.group(1)) * _SUFFIXES[match.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(field, text, "a positive number such as 10G, 500M, 2.5e9")
    return round(value)
