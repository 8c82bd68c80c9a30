"""The one progress display: redrawn in place on a terminal, plain periodic lines in a log."""
from __future__ import annotations

import io

from facetrack.io.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_plain_lines_without_carriage_returns() -> None:
    log = io.StringIO()
    p = Progress(100, stream=log, every_s=3600.0, label="[1/2] 401")
    p.update(1, force=True)
    for i in range(2, 100):
        p.update(i)  # within every_s: nothing
    p.update(100)  # the end always shows
    p.finish()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2
    assert lines[0].startswith("facetrack: [1/2] 401  1/100 frames") and lines[1].startswith("facetrack: [1/2] 401  100/100 frames")


def test_a_terminal_gets_one_line_redrawn_and_ended() -> None:
    tty = Terminal()
    p = Progress(10, stream=tty, unit="steps", rate_unit="it/s", start=4, eta=True)
    p.update(5, force=True, loss=0.25)
    p.finish()
    out = tty.getvalue()
    assert out.startswith("\r[") and out.endswith("\n") and out.count("\r") == 2
    assert "5/10 steps" in out and "loss 0.2500" in out and "eta" in out and "it/s" in out


def test_disabled_writes_nothing() -> None:
    tty = Terminal()
    p = Progress(3, enabled=False, stream=tty)
    p.update(3, force=True)
    p.finish()
    assert tty.getvalue() == ""
