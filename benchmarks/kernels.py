"""Where a call's time goes: one call of each side under torch.profiler, the share of its timed
wall-clock seconds the GPU spent in kernels, and the operators that took the most. A share far
below 100% means the GPU waits on the host (Python, dispatch, launches), which larger batches,
CUDA graphs or torch.compile cure and faster kernels do not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from . import machine

PROFILED_PASSES = ("forward", "attack", "trades", "pgd20")  # AutoAttack's call is minutes long
TOP_OPERATORS = 12


def kernel_report(call: Callable[[], object], device: torch.device, seconds: float) -> str:
    """The profile of one call of `call`, whose timed median was `seconds` per call: on a GPU,
    kernel seconds against `seconds` (the profiler's own overhead kept out of the share); on a
    CPU, the operators by self CPU time alone."""
    gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    machine.synchronize(device)
    with profile(activities=activities) as prof:
        call()
        machine.synchronize(device)
    averages = prof.key_averages()
    key = "self_device_time_total" if gpu else "self_cpu_time_total"
    table = averages.table(sort_by=key, row_limit=TOP_OPERATORS, max_name_column_width=60)
    if not gpu:
        return table
    busy = sum(getattr(event, key) for event in averages) / 1e6  # microseconds
    head = (
        f"GPU busy {busy / seconds:.0%} of the timed {seconds * 1e3:.1f} ms per call "
        f"(kernels {busy * 1e3:.1f} ms)"
    )
    return f"{head}\n{table}"


def append_profile(path: Path, label: str, reports: dict[str, str]) -> None:
    """Add one row's reports (ours, baseline) to the text file at `path`."""
    with open(path, "a", encoding="utf-8") as file:
        for side, report in reports.items():
            file.write(f"## {label}, {side}\n\n{report}\n\n")
