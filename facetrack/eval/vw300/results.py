"""Evaluation results: one video (:class:`VideoResult`), one category (:class:`CategoryResult`,
:func:`category_result`), the whole run (:class:`Report`) and progress events."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from facetrack.eval.metrics import THRESHOLD, aggregate, summarize

#: Point counts every per-video file stores errors for (the report shows the requested ones).
STORED_POINTS = (68, 51, 49)
#: Point counts also stored normalised by the ground truth's box diagonal: the published
#: reference curves' errors look diagonal-normalised (median 0.015 for MDNET + CFSS on
#: category 1, about a third of typical outer-eye figures), so the plots show ours that way too.
DIAG_POINTS = (68, 49)


@dataclass(frozen=True)
class ProgressEvent:
    """Where an evaluation is: frame ``frame`` of ``n_frames`` (annotated, 1-based) of video
    ``video_index`` (0-based) of ``n_videos``; ``resumed`` when taken from a finished file."""

    video_id: str
    video_index: int
    n_videos: int
    frame: int
    n_frames: int
    resumed: bool = False


@dataclass(frozen=True, eq=False)
class VideoResult:
    """One video's scored frames.

    ``errors[points]``: ``(F,)`` float64 NME per scored frame (outer-eye normalised; ``inf``
    where no prediction), for ``points`` in 68, 51, 49. ``frame_numbers``: the scored 1-based
    frames, same order. ``excluded_frames``: annotated frames left out as broken.
    ``jitter``: mean normalised frame-to-frame displacement of the prediction minus that of
    the ground truth over ``jitter_steps`` consecutive scored pairs with predictions.
    ``tracker_seconds``: time inside the predictor (decoding excluded) over
    ``predicted_frames`` calls; ``total_seconds``: wall time of the video including decoding
    of ``decoded_frames`` frames.
    """

    video_id: str
    category: int
    frame_numbers: tuple[int, ...]
    excluded_frames: tuple[int, ...]
    errors: Mapping[int, np.ndarray]
    jitter: float
    jitter_steps: int
    predicted_frames: int
    decoded_frames: int
    tracker_seconds: float
    total_seconds: float
    #: ``errors_diag[points]``: as ``errors`` but normalised by the ground truth's tight-box
    #: diagonal (for comparison with the published reference curves), points 68 and 49.
    errors_diag: Mapping[int, np.ndarray] = field(default_factory=dict)
    #: normalised mean flicker (``facetrack.eval.metrics.flicker``) over the same pairs as ``jitter``.
    flicker: float = float("nan")

    @property
    def frames(self) -> int:
        """Scored frames."""
        return len(self.frame_numbers)

    @property
    def excluded(self) -> int:
        return len(self.excluded_frames)

    @property
    def no_prediction(self) -> int:
        """Scored frames without a prediction (counted as failures, error ``inf``)."""
        return int(np.sum(np.isinf(self.errors[68]))) if self.frames else 0

    @property
    def fps_tracker(self) -> float:
        return self.predicted_frames / self.tracker_seconds if self.tracker_seconds > 0 else float("nan")

    @property
    def fps_end_to_end(self) -> float:
        return self.decoded_frames / self.total_seconds if self.total_seconds > 0 else float("nan")

    def stats(self, points: int = 68) -> dict[str, float]:
        """``facetrack.eval.metrics.summarize`` of this video's errors: frames, mean, median, auc, failure."""
        return summarize(self.errors[points], THRESHOLD)


@dataclass(frozen=True, eq=False)
class CategoryResult:
    """One test category. ``figures[points]``: ``facetrack.eval.metrics.aggregate`` over its videos
    (``mean_pooled``, ``mean_of_videos``, ``median_pooled``, ``auc``, ``failure``, ``frames``,
    ``videos``). ``present`` is false when none of its videos is under the root."""

    category: int
    videos: tuple[str, ...]
    figures: Mapping[int, Mapping[str, float]]
    frames: int
    excluded: int
    no_prediction: int
    jitter: float
    fps_tracker: float
    fps_end_to_end: float
    flicker: float = float("nan")

    @property
    def present(self) -> bool:
        return bool(self.videos)


@dataclass(frozen=True, eq=False)
class Report:
    """A whole evaluation. ``categories[c]``: every requested category (``present`` false if
    it has no videos under the root); ``videos[id]``: every finished video. ``cancelled``:
    stopped by the cancel flag (figures cover the finished videos only)."""

    root: Path
    mode: str
    model: str
    backend: str
    points: tuple[int, ...]
    categories: Mapping[int, CategoryResult]
    videos: Mapping[str, VideoResult]
    skipped: tuple[str, ...] = ()
    cancelled: bool = False
    max_frames: int | None = None
    threshold: float = THRESHOLD
    outputs: tuple[Path, ...] = field(default_factory=tuple)


def _weighted_jitter(results: Iterable[VideoResult], name: str = "jitter") -> float:
    results = [r for r in results if r.jitter_steps and math.isfinite(getattr(r, name))]
    num = sum(getattr(r, name) * r.jitter_steps for r in results)
    den = sum(r.jitter_steps for r in results)
    return num / den if den else float("nan")


def category_result(category: int, results: Sequence[VideoResult], points: Iterable[int] = (68, 49)) -> CategoryResult:
    """Aggregate finished videos of one category (``facetrack.eval.metrics.aggregate``)."""
    figures = {p: aggregate({r.video_id: r.errors[p] for r in results}, THRESHOLD) for p in points}
    tsec = sum(r.tracker_seconds for r in results)
    wsec = sum(r.total_seconds for r in results)
    return CategoryResult(
        category=category,
        videos=tuple(r.video_id for r in results),
        figures=figures,
        frames=sum(r.frames for r in results),
        excluded=sum(r.excluded for r in results),
        no_prediction=sum(r.no_prediction for r in results),
        jitter=_weighted_jitter(results),
        fps_tracker=sum(r.predicted_frames for r in results) / tsec if tsec > 0 else float("nan"),
        fps_end_to_end=sum(r.decoded_frames for r in results) / wsec if wsec > 0 else float("nan"),
        flicker=_weighted_jitter(results, "flicker"),
    )
