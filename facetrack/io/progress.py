"""The one progress display of the command line (tracking, ``eval-300vw``, training).

On a terminal, one line redrawn in place (``\\r``) at most every 0.2 s; into a pipe or a log
file, a plain line every ``every_s`` seconds and none of the ``\\r`` redraws (a log of a long
run stays readable). What the line says comes from the caller: ``update(done, **figures)``
draws ``[bar] done/total unit  rate/s  figures  eta``.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Progress of ``total`` items (``None``: unknown) on ``stream`` (stderr).

    ``unit``/``rate_unit``: words of the line (``frames``/``fps``, ``steps``/``it/s``);
    ``start``: items already done before this run (a resumed one: the rate counts new ones);
    ``prefix``: the start of each plain line in a log (``facetrack:``); ``label``: what is in
    progress, at the start of the text (a video's name); ``eta``: append the time left.
    """

    WIDTH = 30

    def __init__(self, total: int | None, enabled: bool = True, stream: TextIO | None = None, every_s: float = 10.0,
                 unit: str = "frames", rate_unit: str = "fps", start: int = 0, prefix: str = "facetrack: ",
                 eta: bool = False, label: str = "") -> None:
        self.total, self.enabled, self.start, self.label = total, enabled, start, label
        self.unit, self.rate_unit, self.prefix, self.eta = unit, rate_unit, prefix, eta
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.every_s = 0.2 if self.tty else every_s
        self.t0 = time.perf_counter()
        self._last = self.t0
        self.done = start
        self.figures: dict[str, float] = {}

    @property
    def fps(self) -> float:
        """Items per second since the start (the ones done before ``start`` excluded)."""
        return (self.done - self.start) / max(time.perf_counter() - self.t0, 1e-9)

    def text(self) -> str:
        """The line without the bar."""
        rate = self.fps
        parts = [self.label] if self.label else []
        parts += [f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}",
                  f"{rate:5.1f} {self.rate_unit}"]
        parts += [f"{k} {v:.4f}" for k, v in self.figures.items()]
        if self.eta and self.total and rate > 0:
            parts.append(f"eta {(self.total - self.done) / rate / 60:.1f} min")
        return "  ".join(parts)

    def update(self, done: int, force: bool = False, **figures: float) -> None:
        """``done`` items so far; ``figures`` (e.g. ``loss=0.12``) shown beside them."""
        self.done = done
        self.figures.update(figures)
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < self.every_s and done != self.total):
            return
        self._last = now
        if self.tty:
            bar = "#" * int(min(1.0, done / self.total) * self.WIDTH) if self.total else ""
            self.stream.write(f"\r[{bar:<{self.WIDTH}}] {self.text()}" if self.total else f"\r{self.text()}")
        else:
            self.stream.write(f"{self.prefix}{self.text()}\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line on a terminal (a log already has its lines)."""
        if self.enabled and self.tty:
            self.update(self.done, force=True)
            self.stream.write("\n")
            self.stream.flush()

    close = finish
