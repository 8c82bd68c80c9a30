"""The track job as one typed value: the command line parsed once into a :class:`TrackJob`.

``facetrack.cli.track`` builds it from argparse's namespace (:meth:`TrackJob.from_args`), runs
it, writes its run record from it; ``facetrack.cli.batch`` derives each input's job from it
(:meth:`TrackJob.for_input`) and hands it to a worker process as JSON (:meth:`TrackJob.to_json`,
``python -m facetrack.cli.track --job JSON``), so no command line is rebuilt from the parser.
This module imports neither of them: ``track`` imports ``batch`` and both import this.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, fields, replace
from typing import Any

from facetrack.tracker.config import TrackerConfig


class CliError(Exception):
    """A one-line user-facing error (``<file>: <problem>``; ``usage: ...`` for a wrong option)."""


@dataclass(frozen=True)
class TrackJob:
    """Every option of ``facetrack track``, by its argparse name (``--max-faces`` ->
    ``max_faces``), with the parser's defaults; ``video`` holds the inputs. Frozen: a job is
    what was asked for, decided once."""

    video: tuple[str, ...] = ()
    camera: int | str | None = None
    start: str | None = None
    end: str | None = None
    max_pixels: int = 100_000_000
    out: str | None = None
    format: str = "csv"
    overlay: str | None = None
    resume: bool = False
    force: bool = False
    quiet: int = 0
    verbose: int = 0
    pose: str = "on"
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    out_dir: str | None = None
    jobs: int = 1
    shard: tuple[int, int] | None = None
    model: str = "auto"
    turned_model: str = "auto"
    backend: str = "auto"
    threads: int | None = None
    detector: str | None = None
    flip: str = "auto"
    max_faces: int = 1
    detect_every: int = 3
    confidence: float = 0.5
    track_init: str = "template"
    shape_modes: int | None = None
    smooth: str = "auto"
    smooth_min_cutoff: float = TrackerConfig.smooth_min_cutoff
    smooth_beta: float = TrackerConfig.smooth_beta
    smooth_shape_min_cutoff: float = TrackerConfig.smooth_shape_min_cutoff
    smooth_shape_beta: float = TrackerConfig.smooth_shape_beta
    smooth_reset: float = TrackerConfig.smooth_reset
    smooth_flow: str = "on"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrackJob":
        """The job of a parsed command line. An option the job has no field for is a
        :class:`TypeError` (so a new option cannot silently miss the workers and the record)."""
        given = vars(args)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise TypeError(f"TrackJob has no field for the option(s) {', '.join(unknown)}: add them to facetrack/cli/job.py")
        values = {k: v for k, v in given.items()}
        values["video"] = tuple(values.get("video") or ())
        if values.get("shard") is not None:
            values["shard"] = tuple(values["shard"])
        return cls(**values)

    def to_json(self) -> str:
        """The job as one JSON text (a worker's argument)."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "TrackJob":
        """The inverse of :meth:`to_json`."""
        d = json.loads(text)
        d["video"] = tuple(d.get("video") or ())
        if d.get("shard") is not None:
            d["shard"] = tuple(d["shard"])
        return cls(**d)

    def for_input(self, input_path: str, out: os.PathLike | str, threads: int | None, resume: bool) -> "TrackJob":
        """One input of a batch: its own ``out``, ``resume`` (not for images), ``threads``; the
        batch's own options gone."""
        return replace(self, video=(str(input_path),), camera=None, out=str(out), out_dir=None, jobs=1, shard=None,
                       overlay=None, resume=resume, quiet=1, threads=threads)


def to_frame(value: str | None, fps: float) -> int | None:
    """``--start``/``--end`` value -> 0-based frame index: ``"300f"`` is frame 300, ``"12.5"``
    is 12.5 seconds (``round(12.5 * fps)``)."""
    if value is None:
        return None
    return int(float(value[:-1])) if value.endswith("f") else int(round(float(value) * fps))


def covers(old: Any, end: int | None) -> bool:
    """Whether a complete run recorded as ``old`` reached frame ``end`` (``None``: the video's end)."""
    return old.complete and (old.end is None or (end is not None and end <= old.end))


def shard_arg(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``; ``1 <= I <= N``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give I/N, e.g. 2/8") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: I must be between 1 and N")
    return i, n
