"""The machine line every benchmark prints beside its figures: what ran them, how busy it was."""

from __future__ import annotations

import functools
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from robustresnet import keep_freed_memory


@functools.cache
def allocator() -> str:
    """Apply rrn's malloc setting once (both sides of each comparison share the process); say
    which."""
    if keep_freed_memory():
        return "malloc keeps freed memory (rrn's setting, both sides)"
    return "glibc malloc defaults"


def prepare(threads: int) -> None:
    """Before anything is timed: rrn's malloc setting, and `threads` torch threads."""
    allocator()
    torch.set_num_threads(threads)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> str:
    """The 1-minute load average (other work on the cores skews absolute figures)."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def describe(threads: int) -> str:
    """CPU, cores, torch and Python versions, threads, date and the current load average."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {threads} torch thread(s), {allocator()}, {date}, load "
        f"average {load_average()}"
    )
