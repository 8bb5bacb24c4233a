"""StopFlag and on_stop_signals: a first signal is a request, a prompt repeat its echo, a later one
(or any, where nothing is left to save) an Interrupt; the previous handlers always come back."""

from __future__ import annotations

import signal
import threading

import pytest

from robustresnet import _stop
from robustresnet._stop import Interrupt, StopFlag, on_stop_signals
from robustresnet.errors import Stopped


def test_the_first_signal_is_a_request_an_echo_is_ignored_a_later_one_interrupts(monkeypatch):
    before = {s: signal.getsignal(s) for s in _stop.SIGNALS}
    flag = StopFlag()
    with on_stop_signals(flag):
        signal.raise_signal(signal.SIGTERM)
        assert flag.received == signal.SIGTERM
        signal.raise_signal(signal.SIGTERM)  # at once: the same stop, delivered twice
        monkeypatch.setattr(_stop, "ECHO_SECONDS", 0.0)
        with pytest.raises(Interrupt) as second:
            signal.raise_signal(signal.SIGINT)
    assert second.value.signum == signal.SIGINT
    assert flag.received == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in _stop.SIGNALS} == before


def test_not_graceful_interrupts_at_once():
    with on_stop_signals(StopFlag(graceful=False)), pytest.raises(Interrupt) as stop:
        signal.raise_signal(signal.SIGINT)
    assert stop.value.signum == signal.SIGINT


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with on_stop_signals(StopFlag()):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_nothing_is_installed():
    seen = []

    def body():
        with on_stop_signals(StopFlag()):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGTERM)]


def test_stopped_exits_as_shells_report_a_signal():
    assert Stopped(signal.SIGTERM, "x").exit_code == 143
    assert Stopped(signal.SIGINT, "x").exit_code == 130
