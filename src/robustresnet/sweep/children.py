"""The trial processes a sweep owns: each starts in its own process group (so that a terminal's
Ctrl-C reaches the sweep alone, which passes it on once), a stop signal is forwarded to every
running one, and on Linux the kernel sends them SIGTERM if the sweep itself dies.

Elsewhere (macOS, Windows) there is no such kernel request: a sweep killed with SIGKILL leaves
its running trial behind, but the run directory's lock keeps a rerun from running beside it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

_DEATHSIG = Path(__file__).with_name("_deathsig.py")


def _guarded(command: list[str]) -> list[str]:
    """`command` started through _deathsig.py on Linux, as it is elsewhere."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", str(_DEATHSIG), str(os.getpid()), *command]


class Children:
    """The trials running now; once `stop` is called, no new one starts."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # RLock: `stop` may run in a signal handler
        self._running: set[int] = set()
        self.stop_signal: int | None = None

    def start(self, command: list[str], **popen: Any) -> subprocess.Popen | None:
        """Start `command` in a new session; None once the sweep is stopping."""
        with self._lock:
            if self.stop_signal is not None:
                return None
            process = subprocess.Popen(_guarded(command), start_new_session=True, **popen)
            self._running.add(process.pid)
        return process

    def wait(self, process: subprocess.Popen) -> tuple[int, float | None]:
        """Exit status and CPU seconds (user + system) of a started trial. It leaves the running
        set before it is reaped, so that a stop never signals a process id used again."""
        if hasattr(os, "waitid"):
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            self._running.discard(process.pid)
        if not hasattr(os, "wait4"):  # no per-child resource usage on this platform
            return process.wait(), None
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        return process.returncode, round(usage.ru_utime + usage.ru_stime, 2)

    def stop(self, signum: int) -> None:
        """Start no more trials and send `signum` to each running one's process group."""
        with self._lock:
            if self.stop_signal is None:
                self.stop_signal = signum
            running = list(self._running)
        for pid in running:
            with contextlib.suppress(ProcessLookupError):  # it has just ended
                os.killpg(pid, signum)
