"""Stopping on SIGTERM (what SLURM and Kubernetes send) and SIGINT (Ctrl-C): long work polls a
flag where it can save its state, or is interrupted at once where everything is saved already."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A repeat this soon is the same stop delivered twice (a launcher such as torchrun or a sweep
# passing it on, and the terminal or the job system sending it to every process), not a second.
ECHO_SECONDS = 1.0


class Interrupt(BaseException):
    """Raised where the work is by StopFlag; a BaseException (as KeyboardInterrupt is), so that
    `except Exception` blocks let it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    """The name of a signal number: SIGTERM for 15."""
    return signal.Signals(signum).name


@contextmanager
def on_stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Call `handler(signum)` on SIGTERM and SIGINT while the block runs, then restore the
    previous handlers. A signal ignored on entry stays ignored (a shell starts background jobs
    with SIGINT ignored, so that Ctrl-C leaves them be). Python handles signals in the main
    thread only: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handled = [s for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, lambda signum, _frame: handler(signum)) for s in handled}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)


class StopFlag:
    """A handler for `on_stop_signals`: the first signal is kept in `received` and, when
    `graceful`, only that (the work stops at its next safe point); a later one, or the first
    when not `graceful`, raises Interrupt at once."""

    def __init__(self, *, graceful: bool = True) -> None:
        self.graceful = graceful
        self.received: int | None = None
        self._first = 0.0

    def __call__(self, signum: int) -> None:
        now = time.monotonic()
        if self.received is None:
            self.received, self._first = signum, now
            if self.graceful:
                return
        elif now - self._first < ECHO_SECONDS:
            return
        raise Interrupt(signum)
