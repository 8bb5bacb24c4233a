"""The trial processes a sweep owns: each starts in its own process group (so that a terminal's
Ctrl-C reaches the sweep alone, which passes it on once), a stop signal is forwarded to every
running one, and on Linux the kernel sends them SIGTERM if the sweep itself dies.

Elsewhere (macOS, Windows) there is no such kernel request: a sweep killed with SIGKILL leaves
its running trial behind, but the run directory's lock keeps a rerun from running beside it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_DEATHSIG = Path(__file__).with_name("_deathsig.py")


def _guarded(command: list[str]) -> list[str]:
    """`command` started through _deathsig.py on Linux, as it is elsewhere."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", str(_DEATHSIG), str(os.getpid()), *command]


class Children:
    """The trials running now; once `stop` is called, no new one starts. `ignored`: signals the
    trials start ignoring (a job system's warning signal that only the sweep should act on)."""

    def __init__(self, ignored: Iterable[int] = ()) -> None:
        self._lock = threading.RLock()  # RLock: `stop` may run in a signal handler
        self._running: set[int] = set()
        self._ignored = tuple(ignored)
        self.stop_signal: int | None = None

    def start(self, command: list[str], **popen: Any) -> subprocess.Popen | None:
        """Start `command` in a new session; None once the sweep is stopping."""
        with self._lock:
            if self.stop_signal is not None:
                return None
            if self._ignored:  # SIG_IGN, unlike a handler, lasts through exec
                popen["preexec_fn"] = self._ignore
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

    def stop_and_wait(self, signum: int, timeout: float) -> None:
        """`stop`, then wait up to `timeout` seconds for the running trials to end (they stay
        unreaped, for `wait`): from a signal handler, while `wait` is interrupted."""
        self.stop(signum)
        deadline = time.monotonic() + timeout
        with self._lock:
            running = list(self._running)
        for pid in running:
            while time.monotonic() < deadline:
                try:
                    if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                        break
                except ChildProcessError:  # already reaped
                    break
                time.sleep(0.1)

    def _ignore(self) -> None:
        for signum in self._ignored:
            signal.signal(signum, signal.SIG_IGN)
