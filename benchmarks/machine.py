"""The machine behind the figures (what it is, how busy), and what timing needs of the device:
synchronisation, peak memory, and the matmul rate MFU is measured against."""

from __future__ import annotations

import functools
import os
import platform
import resource
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from robustresnet import keep_freed_memory

PEAK_SIZE = 8192  # the matmul that sets the peak: 8192³, well past launch overhead


@functools.cache
def allocator() -> str:
    """Apply rrn's malloc setting once (both sides of each comparison share the process); say
    which."""
    if keep_freed_memory():
        return "malloc keeps freed memory (rrn's setting, both sides)"
    return "glibc malloc defaults"


def prepare(threads: int | None) -> None:
    """Before anything is timed: rrn's malloc setting, and `threads` torch threads if given."""
    allocator()
    if threads:
        torch.set_num_threads(threads)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA only: a process's peak RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float:
    """CUDA: the most memory allocated since `reset_peak`; CPU: the process's peak RSS so far
    (process-wide, every variant's and the models' memory together)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """TFLOP/s of a PEAK_SIZE³ matmul in `dtype` (fp32 as TF32, the math cuDNN's fp32 convolutions
    use by default): three warm-ups, then the mean of ten timed with CUDA events."""
    a, b = (torch.randn(PEAK_SIZE, PEAK_SIZE, device=device, dtype=dtype) for _ in range(2))
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            a @ b
        end.record()
        torch.cuda.synchronize(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    seconds = start.elapsed_time(end) / 1000 / 10
    return 2 * PEAK_SIZE**3 / seconds / 1e12


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> float | None:
    """The 1-minute load average (other work on the cores skews absolute figures)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def describe(device: torch.device) -> dict[str, Any]:
    """What runs the benchmark: CPU, GPU, versions, threads, allocator, date, load."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "allocator": allocator(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": load_average(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        info["cuda"] = torch.version.cuda
    return info


def summary(info: dict[str, Any]) -> str:
    """`describe`'s dictionary as one sentence."""
    gpu = f"{info['gpu']} (CUDA {info['cuda']}); host " if "gpu" in info else ""
    load = info.get("load_average")
    return (
        f"{gpu}{info['cpu']}, {info['cores']} cores, {info['threads']} torch thread(s); torch "
        f"{info['torch']}, Python {info['python']}; {info['allocator']}; {info['date']}; load "
        f"average {'n/a' if load is None else f'{load:.1f}'} at the start"
    )
