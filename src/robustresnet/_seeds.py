"""Seeds derived from several integers, so that each random stream has its own."""

from __future__ import annotations

import zlib

import torch


def stream_seed(*parts: int | str) -> int:
    """A 63-bit seed mixing the parts (strings by their CRC-32), so tuples never share one."""
    value = 0
    for part in parts:
        number = zlib.crc32(part.encode()) if isinstance(part, str) else int(part)
        value = (value * 0x9E3779B97F4A7C15 + number + 1) % (1 << 64)
        value ^= value >> 31
    return value % (1 << 63)


def seeded(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded with `stream_seed(*parts)`."""
    return torch.Generator().manual_seed(stream_seed(*parts))
