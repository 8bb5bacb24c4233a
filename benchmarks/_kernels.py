"""Time in convolution kernels: the part of a step no change outside them can make faster.

Both sides of each comparison call the same oneDNN convolutions, so (baseline time) ÷ (our
time in convolution kernels) bounds the speed-up of everything else, made free.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from torch.profiler import ProfilerActivity, profile

CONV_KERNELS = frozenset(
    {
        "aten::mkldnn_convolution",
        "aten::convolution_backward",
        "aten::_slow_conv2d_forward",
        "aten::_slow_conv2d_backward",
    }
)


def add_conv_share_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """--conv-share: also profile one run of `what` for `conv_table`."""
    parser.add_argument(
        "--conv-share",
        action="store_true",
        help=f"also profile one run of {what}: time in convolution kernels, and the bound it "
        "puts on the speed-up",
    )


def conv_time(fn: Callable[[], object]) -> tuple[float, float]:
    """(seconds in all aten ops, seconds in convolution kernels) of one profiled call of `fn`,
    after an unprofiled warm-up call."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_KERNELS)
    return total / 1e6, conv / 1e6


def conv_table(calls: dict[str, Callable[[], object]], baseline: str) -> list[str]:
    """Markdown rows: each call's op time, convolution time and share, and the bound on its
    speed-up over `baseline` (baseline op time ÷ its convolution time)."""
    times = {name: conv_time(fn) for name, fn in calls.items()}
    base_total = times[baseline][0]
    lines = [
        "| variant | op time s | conv kernels s | conv share | speed-up bound |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (total, conv) in times.items():
        lines.append(
            f"| {name} | {total:.2f} | {conv:.2f} | {conv / total:.0%} | {base_total / conv:.2f}x |"
        )
    return lines
