"""Progress bars on stderr, and lines printed while one is live: each line stays whole."""

from __future__ import annotations

import io
import re
import sys

from robustresnet._progress import progress, write_line


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the bar is drawn."""

    def isatty(self) -> bool:
        return True


def test_a_line_written_under_a_live_bar_is_never_mixed_into_it(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress(total=10, desc="training", unit="step")
    bar.update(3)
    write_line("epoch   1/2  loss 2.0000")
    bar.update(7)
    bar.close()
    screen = terminal.getvalue()
    assert "training" in screen  # the bar was drawn, before the line and again after it
    pieces = re.split(r"[\r\n]", screen)  # what each carriage return or newline starts anew
    assert "epoch   1/2  loss 2.0000" in pieces
    assert not any("epoch" in p and "training" in p for p in pieces)


def test_quiet_or_not_a_terminal_draws_nothing(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    for bar in (progress(total=3), progress(total=3, quiet=True)):
        bar.update(3)
        bar.close()
    write_line("epoch   1/1")
    assert stream.getvalue() == "epoch   1/1\n"
