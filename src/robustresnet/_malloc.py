"""glibc malloc settings for CPU tensors: keep freed memory for reuse instead of unmapping it."""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
OPT_OUT = "RRN_SYSTEM_MALLOC"


def keep_freed_memory() -> bool:
    """On Linux with glibc, stop returning freed memory to the system; True when applied.

    PyTorch's CPU tensors come from malloc, and glibc maps every large block afresh (and unmaps it
    on free), so each activation of a big batch is page-faulted in again at every use: about a
    quarter of a PGD step on CIFAR-sized activations on this project's CPU. This is the in-process
    form of `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>`; the process keeps its peak memory
    for reuse. Set RRN_SYSTEM_MALLOC=1 to leave malloc as it is.
    """
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
