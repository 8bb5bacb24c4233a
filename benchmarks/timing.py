"""Interleaved timing: ours and the baseline in turn, round after round, so both see the same
machine; medians per variant, and per-round ratios to show how much the machine moved."""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import machine


@dataclass
class Timed:
    """One variant's measurements: seconds per call in each round, the warm-up's seconds (the
    first call: compilation and other one-off set-up included), the first result of the timed
    call itself, and the peak memory in MiB."""

    seconds: list[float] = field(default_factory=list)
    warmup_s: float = 0.0
    first: object = None
    peak_mib: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


class Progress:
    """'what is being timed, round i/n' lines on stderr, when enabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)


def interleaved(
    calls: dict[str, Callable[[], object]],
    *,
    device: torch.device,
    repeats: int,
    min_time: float,
    warmups: dict[str, Callable[[], object]] | None = None,
    label: str = "",
    progress: Progress | None = None,
) -> dict[str, Timed]:
    """Warm each call up, then `repeats` rounds timing every call in turn, each enough times to
    last about `min_time` seconds. A call with its own (cheaper) entry in `warmups` is a long
    one: warmed up by that entry, timed once per round."""
    progress = progress or Progress(False)
    warmups = warmups or {}
    timed = {name: Timed() for name in calls}
    counts = dict.fromkeys(calls, 1)
    for name, call in calls.items():
        progress(f"{label}: warm-up, {name}")
        machine.reset_peak(device)
        timed[name].warmup_s, result = _seconds(warmups.get(name, call), device)
        if name not in warmups:
            timed[name].first = result
            estimate = timed[name].warmup_s
            if estimate < min_time:  # the first call includes one-off set-up: time another
                estimate = _seconds(call, device)[0]
            counts[name] = max(1, math.ceil(min_time / max(estimate, 1e-6)))
        timed[name].peak_mib = machine.peak_mib(device)
    for i in range(repeats):
        progress(f"{label}: round {i + 1}/{repeats}")
        for name, call in calls.items():
            machine.reset_peak(device)
            seconds, result = _seconds(lambda call=call, n=counts[name]: _repeat(call, n), device)
            timed[name].seconds.append(seconds / counts[name])
            timed[name].peak_mib = max(timed[name].peak_mib, machine.peak_mib(device))
            if name in warmups and i == 0:
                timed[name].first = result
    return timed


def _repeat(call: Callable[[], object], n: int) -> object:
    """`n` calls; the first one's result."""
    result = call()
    for _ in range(n - 1):
        call()
    return result


def _seconds(call: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Wall seconds of one call, the device's queued work included; and what it returned."""
    machine.synchronize(device)
    start = time.perf_counter()
    result = call()
    machine.synchronize(device)
    return time.perf_counter() - start, result
