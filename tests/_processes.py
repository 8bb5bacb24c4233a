"""Waiting on real processes in tests: poll a condition, fail with the process's stderr."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(condition: Callable[[], Any], proc: subprocess.Popen, what: str, timeout: float = 90):
    """The first truthy value of `condition()`, polled every 10 ms; a failure when `proc` ends
    first (with its stderr) or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the process ended before {what}: {proc.stderr.read()}")
        time.sleep(0.01)
    pytest.fail(f"no {what} within {timeout} s")
