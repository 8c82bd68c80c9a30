"""300VW evaluation: per-video and per-category NME, AUC, failure rate, jitter, speed, CED plots.

The official layout ``ROOT/<video>/vid.avi`` + ``annot/NNNNNN.pts`` (1-based frame numbers,
:class:`facetrack.tracker.io.Video300VW`). Test categories come from the official split
(``facetrack/tracker/data/300vw_splits.json``); frames whose ground truth is unreliable
(``facetrack/tracker/data/300vw_broken_frames.json``, video id -> 1-based frame numbers) are excluded
from scoring and counted.

Modes (how the face is found on each frame):

- ``track``: the :class:`facetrack.tracker.tracker.Tracker` as a user runs it (detector on the first
  frame, previous-frame initialisation after, re-detection on loss; smoothing off). It sees
  every decoded frame, excluded ones too. The ground truth is used only to pick which tracked
  face is the annotated one when several are tracked.
- ``gt-box``: every scored frame is cropped from the tight box of its ground truth (identity
  calibration), as most published per-category numbers are.
- ``detector``: the default detector on every scored frame; the detection overlapping the
  ground truth's box best (IoU of its calibrated box), else the largest, is fitted.

Errors are normalised by the ground truth's outer-eye-corner distance (points 36, 45), over
68 and 49 points. A scored frame with no prediction (no face) counts as a failure with error
``inf``: it lowers AUC and raises the failure rate; the mean and median are over the frames
that have a prediction (``facetrack.tracker.metrics.summarize``) and the count of such frames is
reported beside them.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from facetrack.tracker.geometry import box_of, to_gray
from facetrack.tracker.io import Video300VW, list_300vw
from facetrack.tracker.markup import SUBSETS
from facetrack.tracker.metrics import THRESHOLD, aggregate, jitter, nme, summarize

log = logging.getLogger(__name__)

MODES = ("track", "gt-box", "detector")
CATEGORIES = (1, 2, 3)
#: Point counts every per-video file stores errors for (the report shows the requested ones).
STORED_POINTS = (68, 51, 49)
#: Point counts also stored normalised by the ground truth's box diagonal: the published
#: reference curves' errors look diagonal-normalised (median 0.015 for MDNET + CFSS on
#: category 1, about a third of typical outer-eye figures), so the plots show ours that way too.
DIAG_POINTS = (68, 49)
#: Bumped when the per-video file's content changes meaning; older files are recomputed.
VIDEO_FILE_VERSION = 1
#: Published per-frame errors, not package data (15 MB): looked up next to the repository.
REFERENCE_SUBDIR = Path("shared") / "data" / "300vw_reference_errors"


# --------------------------------------------------------------------------------------------
# Package data: the official split and the broken frames
# --------------------------------------------------------------------------------------------

def _load_json(name: str) -> dict:
    ref = resources.files("facetrack.tracker") / "data" / name
    try:
        return json.loads(ref.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise RuntimeError(f"facetrack/tracker/data/{name}: package data missing or unreadable ({e})") from None


@lru_cache(maxsize=1)
def splits() -> dict[int, tuple[str, ...]]:
    """Official 300VW test categories: ``{1: ids, 2: ids, 3: ids}``; training ids under key 0."""
    d = _load_json("300vw_splits.json")
    out = {0: tuple(d["train"])}
    for c in CATEGORIES:
        out[c] = tuple(d[f"test_cat{c}"])
    return out


@lru_cache(maxsize=1)
def broken_frames() -> dict[str, frozenset[int]]:
    """Video id -> 1-based frame numbers whose ground truth is unreliable (excluded)."""
    return {k: frozenset(int(f) for f in v) for k, v in _load_json("300vw_broken_frames.json").items()}


def category_of(video_id: str) -> int | None:
    """Test category (1, 2, 3) of a video id, 0 for a training video, ``None`` if unknown."""
    for c, ids in splits().items():
        if video_id in ids:
            return c
    return None


def default_reference_dir() -> Path | None:
    """``$FACETRACK_DATA/300vw_reference_errors`` or ``../shared/data/300vw_reference_errors``
    next to the repository, if the folder exists."""
    candidates = []
    if os.environ.get("FACETRACK_DATA"):
        candidates.append(Path(os.environ["FACETRACK_DATA"]) / "300vw_reference_errors")
    candidates.append(Path(__file__).resolve().parents[3] / REFERENCE_SUBDIR)
    return next((c for c in candidates if c.is_dir()), None)


# --------------------------------------------------------------------------------------------
# Predictors: what is evaluated, behind one small protocol
# --------------------------------------------------------------------------------------------

class FramePredictor(Protocol):
    """Landmarks of the evaluated face, frame by frame, one video at a time.

    ``every_frame``: feed every decoded frame (a tracker needs continuity), not only the
    scored ones. ``uses_ground_truth``: ``predict`` receives the frame's ground truth
    (``None`` on frames without a usable one); otherwise it always receives ``None``.
    """

    every_frame: bool
    uses_ground_truth: bool

    def start_video(self, video_id: str) -> None:
        """Forget everything about the previous video."""

    def predict(self, frame_bgr: np.ndarray, timestamp: float, gt: np.ndarray | None) -> np.ndarray | None:
        """``frame_bgr``: ``(H, W, 3)`` uint8; ``timestamp`` seconds; ``gt`` ``(68, 2)`` image px.
        Returns ``(68, 2)`` float32 image px (x, y, 0-based), or ``None`` for no face."""


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _area(b: np.ndarray) -> float:
    return float(max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]))


def _split_model(model: str) -> list[str]:
    """``"aan+mdm"`` -> ``["aan", "mdm"]`` (box fit by the first, refined by the second);
    an existing path is never split."""
    if "+" in model and not Path(model).expanduser().exists():
        return [m for m in model.split("+") if m]
    return [model]


class _Fitter:
    """Box -> landmarks with one model, or a cascade (``aan+mdm``: AAN from the box, MDM
    refining from AAN's shape)."""

    def __init__(self, model: str, backend: str) -> None:
        from facetrack.tracker.landmarker import Landmarker
        from facetrack.tracker.models import resolve_model

        self.stages = [Landmarker(resolve_model(m), backend) for m in _split_model(model)]

    def fit(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        fit = self.stages[0].fit_box(gray, box)
        for stage in self.stages[1:]:
            fit = stage.fit_shape(gray, fit.landmarks)
        return np.asarray(fit.landmarks, np.float32)


class TrackPredictor:
    """``track`` mode: the user's Tracker, smoothing off, reset per video."""

    every_frame = True
    uses_ground_truth = True  # only to pick the annotated face among several tracked ones

    def __init__(self, model: str, backend: str) -> None:
        from facetrack.tracker.tracker import Tracker, TrackerConfig

        self.tracker = Tracker(TrackerConfig(model=model, backend=backend, smooth=False))

    def start_video(self, video_id: str) -> None:
        self.tracker.reset()

    def predict(self, frame_bgr: np.ndarray, timestamp: float, gt: np.ndarray | None) -> np.ndarray | None:
        faces = [f for f in self.tracker.process(frame_bgr, timestamp).faces if f.success]
        if not faces:
            return None
        if len(faces) > 1 and gt is not None:
            g = box_of(gt)
            face = max(faces, key=lambda f: _iou(box_of(f.landmarks), g))
        else:
            face = max(faces, key=lambda f: _area(box_of(f.landmarks)))
        return np.asarray(face.landmarks, np.float32)


class GtBoxPredictor:
    """``gt-box`` mode: each scored frame cropped from its ground truth's tight box."""

    every_frame = False
    uses_ground_truth = True

    def __init__(self, model: str, backend: str) -> None:
        self.fitter = _Fitter(model, backend)

    def start_video(self, video_id: str) -> None:
        pass

    def predict(self, frame_bgr: np.ndarray, timestamp: float, gt: np.ndarray | None) -> np.ndarray | None:
        if gt is None:
            return None
        # The tight box of the 68 points is by definition landmark-equivalent: identity calibration.
        return self.fitter.fit(to_gray(frame_bgr), box_of(gt))


class DetectorPredictor:
    """``detector`` mode: detect on every scored frame, fit the detection matching the face."""

    every_frame = False
    uses_ground_truth = True  # only to pick the detection of the annotated face

    def __init__(self, model: str, backend: str) -> None:
        from facetrack.tracker.detect import default_detector

        self.detector = default_detector()
        self.fitter = _Fitter(model, backend)

    def start_video(self, video_id: str) -> None:
        pass

    def predict(self, frame_bgr: np.ndarray, timestamp: float, gt: np.ndarray | None) -> np.ndarray | None:
        gray = to_gray(frame_bgr)
        dets = self.detector.detect(gray)
        if not dets:
            return None
        boxes = [np.asarray(self.detector.calibration(d.box), np.float32) for d in dets]
        best = max(range(len(boxes)), key=lambda i: _area(boxes[i]))
        if gt is not None:
            g = box_of(gt)
            ious = [_iou(b, g) for b in boxes]
            if max(ious) > 0:
                best = int(np.argmax(ious))
        return self.fitter.fit(gray, boxes[best])


def make_predictor(mode: str, model: str = "mdm", backend: str = "auto") -> FramePredictor:
    """The real predictor of an evaluation mode (imports the runtime lazily)."""
    table: dict[str, Callable[[str, str], FramePredictor]] = {
        "track": TrackPredictor, "gt-box": GtBoxPredictor, "detector": DetectorPredictor}
    if mode not in table:
        raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    return table[mode](model, backend)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

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
        """``facetrack.tracker.metrics.summarize`` of this video's errors: frames, mean, median, auc, failure."""
        return summarize(self.errors[points], THRESHOLD)


@dataclass(frozen=True, eq=False)
class CategoryResult:
    """One test category. ``figures[points]``: ``facetrack.tracker.metrics.aggregate`` over its videos
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


def _weighted_jitter(results: Iterable[VideoResult]) -> float:
    num = sum(r.jitter * r.jitter_steps for r in results if r.jitter_steps)
    den = sum(r.jitter_steps for r in results if r.jitter_steps)
    return num / den if den else float("nan")


def category_result(category: int, results: Sequence[VideoResult], points: Iterable[int] = (68, 49)) -> CategoryResult:
    """Aggregate finished videos of one category (``facetrack.tracker.metrics.aggregate``)."""
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
    )


# --------------------------------------------------------------------------------------------
# Scoring one video
# --------------------------------------------------------------------------------------------

def _segments_jitter(frames: Sequence[int], preds: Sequence[np.ndarray | None], gts: Sequence[np.ndarray]) -> tuple[float, int]:
    """Jitter over runs of consecutive frame numbers that all have a prediction: the
    step-weighted mean of ``facetrack.tracker.metrics.jitter`` per run, and the number of steps."""
    runs: list[list[int]] = []
    cur: list[int] = []
    for i, f in enumerate(frames):
        if preds[i] is None or (cur and frames[cur[-1]] + 1 != f):
            runs.append(cur)
            cur = []
        if preds[i] is not None:
            cur.append(i)
    runs.append(cur)
    num, steps = 0.0, 0
    for run in runs:
        if len(run) < 2:
            continue
        j = jitter(np.stack([preds[k] for k in run]), np.stack([gts[k] for k in run]))
        if math.isfinite(j):
            num += j * (len(run) - 1)
            steps += len(run) - 1
    return (num / steps if steps else float("nan")), steps


def evaluate_video(video: Video300VW, predictor: FramePredictor, category: int, max_frames: int | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: threading.Event | None = None) -> VideoResult | None:
    """Run ``predictor`` over one video and score it; ``None`` when cancelled.

    ``progress(frame, n_frames)`` is called as frames go by (1-based frame numbers).
    Raises ``OSError`` / :class:`facetrack.tracker.io.LandmarkFileError` naming the bad file.
    """
    import cv2

    t_start = time.perf_counter()
    vid = video.video_id
    annotated = [f for f in video.annotated_frames() if max_frames is None or f <= max_frames]
    broken = broken_frames().get(vid, frozenset())
    scored = [f for f in annotated if f not in broken]
    excluded = tuple(f for f in annotated if f in broken)
    scored_set = set(scored)
    last = annotated[-1] if annotated else 0
    if not annotated:
        log.warning("%s: no annotations (annot/*.pts), nothing to score", video.root)

    cap = cv2.VideoCapture(str(video.video_path))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    fps = fps if fps and fps > 0 else 30.0

    gts: dict[int, np.ndarray] = {f: video.annotation(f) for f in scored}
    preds: dict[int, np.ndarray | None] = {}
    predictor.start_video(vid)
    tsec, n_pred, n_dec = 0.0, 0, 0
    for n, frame in (video.frames() if annotated else iter(())):
        if n > last:
            break
        if cancel is not None and cancel.is_set():
            return None
        n_dec += 1
        if n in scored_set or predictor.every_frame:
            gt = gts.get(n) if predictor.uses_ground_truth else None
            t0 = time.perf_counter()
            p = predictor.predict(frame, (n - 1) / fps, gt)
            tsec += time.perf_counter() - t0
            n_pred += 1
            if n in scored_set:
                if p is not None:
                    p = np.asarray(p, np.float32).reshape(68, 2)
                    if not np.isfinite(p).all():
                        p = None
                preds[n] = p
        if progress is not None:
            progress(n, last)
    missing = [f for f in scored if f not in preds]
    if missing:
        log.warning("%s: %d annotated frames beyond the decoded video (first %d), counted as no prediction",
                    video.video_path, len(missing), missing[0])

    pred_list = [preds.get(f) for f in scored]
    gt_list = [gts[f] for f in scored]
    errors: dict[int, np.ndarray] = {}
    for pts in STORED_POINTS:
        e = np.full(len(scored), np.inf)
        for i, (p, g) in enumerate(zip(pred_list, gt_list)):
            if p is not None:
                e[i] = float(nme(p, g, points=pts))
        errors[pts] = e
    errors_diag: dict[int, np.ndarray] = {}
    for pts in DIAG_POINTS:
        e = np.full(len(scored), np.inf)
        for i, (p, g) in enumerate(zip(pred_list, gt_list)):
            if p is not None:
                e[i] = float(nme(p, g, points=pts, norm="diag"))
        errors_diag[pts] = e
    jit, steps = _segments_jitter(scored, pred_list, gt_list)
    return VideoResult(vid, category, tuple(scored), excluded, errors, jit, steps, n_pred, n_dec,
                       tsec, time.perf_counter() - t_start, errors_diag)


# --------------------------------------------------------------------------------------------
# Per-video files (resume)
# --------------------------------------------------------------------------------------------

def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _settings(mode: str, model: str, backend: str, max_frames: int | None) -> dict:
    return {"version": VIDEO_FILE_VERSION, "mode": mode, "model": str(model), "backend": backend, "max_frames": max_frames}


def save_video(path: Path, result: VideoResult, settings: Mapping) -> None:
    """Write ``videos/<id>.json`` atomically: settings, frame lists, per-frame errors
    (``null`` = no prediction), jitter and timings."""
    data = dict(settings)
    data.update({
        "video": result.video_id, "category": result.category,
        "frames": list(result.frame_numbers), "excluded_frames": list(result.excluded_frames),
        "errors": {str(p): [_num(v) for v in e] for p, e in result.errors.items()},
        "errors_diag": {str(p): [_num(v) for v in e] for p, e in result.errors_diag.items()},
        "jitter": _num(result.jitter), "jitter_steps": result.jitter_steps,
        "predicted_frames": result.predicted_frames, "decoded_frames": result.decoded_frames,
        "tracker_seconds": result.tracker_seconds, "total_seconds": result.total_seconds,
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def load_video(path: Path, settings: Mapping | None = None) -> VideoResult | None:
    """Read a per-video file; ``None`` if it is unreadable or was made with other settings."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if settings is not None and any(d.get(k) != v for k, v in settings.items()):
            log.info("%s: made with other settings, recomputing", path)
            return None
        def arrays(table: Mapping) -> dict[int, np.ndarray]:
            return {int(p): np.array([np.inf if v is None else v for v in e], np.float64) for p, e in table.items()}

        errors, errors_diag = arrays(d["errors"]), arrays(d.get("errors_diag", {}))
        if any(p not in errors for p in STORED_POINTS) or any(p not in errors_diag for p in DIAG_POINTS):
            return None
        return VideoResult(d["video"], int(d["category"]), tuple(d["frames"]), tuple(d["excluded_frames"]), errors,
                           float("nan") if d["jitter"] is None else float(d["jitter"]), int(d["jitter_steps"]),
                           int(d["predicted_frames"]), int(d["decoded_frames"]),
                           float(d["tracker_seconds"]), float(d["total_seconds"]), errors_diag)
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable (%s), recomputing", path, e)
        return None


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------

def evaluate_300vw(root: str | os.PathLike, categories: Iterable[int] = CATEGORIES, videos: Iterable[str] | None = None,
                   model: str = "mdm", backend: str = "auto", mode: str = "track", points: Iterable[int] = (68, 49),
                   out_dir: str | os.PathLike | None = None, progress: Callable[[ProgressEvent], None] | None = None,
                   cancel: threading.Event | None = None, max_frames: int | None = None, force: bool = False,
                   reference_dir: str | os.PathLike | None | bool = True,
                   predictor: FramePredictor | None = None) -> Report:
    """Evaluate on the 300VW videos under ``root`` of the given test ``categories``.

    ``videos``: restrict to these ids. ``out_dir``: per-video files ``videos/<id>.json``
    written as each video finishes (reused on a rerun with the same settings unless
    ``force``) and, at the end, ``per_video.csv``, ``summary.json``, ``summary.md`` and
    ``ced_category<N>.png``. ``reference_dir``: published error files for the plots
    (``True``: :func:`default_reference_dir`; ``None``/``False``: none). ``progress``: called
    with :class:`ProgressEvent` (at most ~10 times a second per video, and at each video's
    end); ``cancel``: set it to stop after the current frame (the partial video is dropped).
    ``predictor``: evaluate this instead of the real model of ``mode`` (tests, custom).
    Safe to run in a worker thread.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    cats = sorted({int(c) for c in categories})
    bad = [c for c in cats if c not in CATEGORIES]
    if bad:
        raise ValueError(f"unknown 300VW test category {bad[0]} (choose from 1, 2, 3)")
    pts = tuple(int(p) for p in points)
    if any(p not in SUBSETS for p in pts):
        raise ValueError(f"unsupported point count in {pts} (choose from 68, 51, 49)")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    root = Path(root)
    present = {v.video_id: v for v in list_300vw(root)}
    wanted = set(videos) if videos is not None else None
    if wanted is not None:
        for vid in sorted(wanted - set(present)):
            log.warning("%s: video %s not found", root, vid)

    todo: list[tuple[Video300VW, int]] = []
    skipped: list[str] = []
    for vid, v in present.items():
        if wanted is not None and vid not in wanted:
            continue
        c = category_of(vid)
        if c in cats:
            todo.append((v, c))
        else:
            skipped.append(vid)
    if skipped:
        log.info("skipped %d videos not in categories %s: %s", len(skipped), cats, " ".join(skipped))
    for c in cats:
        if not any(cc == c for _, cc in todo):
            log.info("category %d: no videos under %s", c, root)

    settings = _settings(mode, model, backend, max_frames)
    out = Path(out_dir) if out_dir is not None else None
    results: dict[str, VideoResult] = {}
    cancelled = False
    pred = predictor
    for i, (video, cat) in enumerate(todo):
        vid = video.video_id
        vfile = out / "videos" / f"{vid}.json" if out is not None else None
        if vfile is not None and vfile.exists() and not force:
            r = load_video(vfile, settings)
            if r is not None:
                log.info("%s: finished earlier, reusing %s (--force recomputes)", vid, vfile)
                results[vid] = r
                if progress is not None:
                    progress(ProgressEvent(vid, i, len(todo), r.frames, r.frames, resumed=True))
                continue
        if pred is None:
            pred = make_predictor(mode, model, backend)
        last_emit = [0.0]

        def _frame_progress(frame: int, n_frames: int, _vid: str = vid, _i: int = i) -> None:
            now = time.monotonic()
            if progress is not None and (frame >= n_frames or now - last_emit[0] >= 0.1):
                last_emit[0] = now
                progress(ProgressEvent(_vid, _i, len(todo), frame, n_frames))

        r = evaluate_video(video, pred, cat, max_frames, _frame_progress, cancel)
        if r is None:
            cancelled = True
            log.info("evaluation cancelled during video %s", vid)
            break
        results[vid] = r
        if vfile is not None:
            save_video(vfile, r, settings)

    cat_results = {c: category_result(c, [r for r in results.values() if r.category == c], pts) for c in cats}
    report = Report(root, mode, str(model), backend, pts, cat_results, results, tuple(skipped), cancelled, max_frames)
    if out is not None:
        ref = default_reference_dir() if reference_dir is True else (Path(reference_dir) if reference_dir else None)
        files = write_report(report, out, ref)
        report = Report(root, mode, str(model), backend, pts, cat_results, results, tuple(skipped), cancelled,
                        max_frames, THRESHOLD, tuple(files))
    return report


# --------------------------------------------------------------------------------------------
# Writing the report
# --------------------------------------------------------------------------------------------

def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _video_row(r: VideoResult, points: Sequence[int]) -> dict:
    row = {"category": r.category, "video": r.video_id, "frames": r.frames, "excluded": r.excluded,
           "no_prediction": r.no_prediction}
    for p in points:
        s = r.stats(p)
        row.update({f"nme{p}_mean": _num(s["mean"]), f"nme{p}_median": _num(s["median"]),
                    f"auc{p}": _num(s["auc"]), f"failure{p}": _num(s["failure"])})
    row.update({"jitter": _num(r.jitter), "fps_tracker": _num(r.fps_tracker), "fps_end_to_end": _num(r.fps_end_to_end)})
    return row


def _category_dict(c: CategoryResult) -> dict:
    return {
        "present": c.present, "videos": list(c.videos), "frames": c.frames, "excluded": c.excluded,
        "no_prediction": c.no_prediction,
        "nme": {str(p): {k: (_num(v) if isinstance(v, float) else v) for k, v in f.items()} for p, f in c.figures.items()},
        "jitter": _num(c.jitter), "fps_tracker": _num(c.fps_tracker), "fps_end_to_end": _num(c.fps_end_to_end),
    }


NOTES = [
    "NME: mean point-to-point error / outer-eye-corner distance (points 36, 45) of the ground truth.",
    "mean (pooled): over all scored frames of the category; mean of videos: mean of per-video means; median: over pooled frames.",
    f"AUC: area under the CED up to {THRESHOLD} divided by {THRESHOLD}; failure: share of frames with NME > {THRESHOLD}.",
    "A frame with no prediction (no face) counts as a failure with error = inf (in AUC and failure rate); "
    "mean and median are over frames with a prediction, their count is in 'no face'.",
    "Frames whose ground truth is unreliable (facetrack/tracker/data/300vw_broken_frames.json) are excluded and counted.",
    "Jitter: mean frame-to-frame displacement of the prediction minus that of the ground truth, per point, "
    "normalised by the outer-eye distance, over consecutive scored frames with predictions (68 points).",
    "fps tracker: predictor calls per second of predictor time (decoding excluded); fps end to end: decoded frames per wall second.",
    "CED plots: published curves (Chrysos et al. 2017, dashed) are drawn as shipped; their normalisation is not stated "
    "in the files and looks like the ground-truth box diagonal, so our 49-point curve normalised that way is drawn too.",
]


def write_report(report: Report, out_dir: str | os.PathLike, reference_dir: Path | None = None) -> list[Path]:
    """``per_video.csv``, ``summary.json``, ``summary.md`` and ``ced_category<N>.png`` (one per
    category with videos; skipped with a warning if matplotlib is missing). Returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pts = report.points
    files: list[Path] = []
    rows = [_video_row(r, pts) for r in sorted(report.videos.values(), key=lambda r: (r.category, r.video_id))]
    header = ["category", "video", "frames", "excluded", "no_prediction"]
    for p in pts:
        header += [f"nme{p}_mean", f"nme{p}_median", f"auc{p}", f"failure{p}"]
    header += ["jitter", "fps_tracker", "fps_end_to_end"]
    with open(out / "per_video.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    files.append(out / "per_video.csv")

    summary = {
        "root": str(report.root), "mode": report.mode, "model": report.model, "backend": report.backend,
        "points": list(pts), "threshold": report.threshold, "max_frames": report.max_frames,
        "cancelled": report.cancelled, "skipped_videos": list(report.skipped), "notes": NOTES,
        "categories": {str(c): _category_dict(cr) for c, cr in report.categories.items()},
        "videos": {r["video"]: r for r in rows},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    files.append(out / "summary.json")
    (out / "summary.md").write_text(summary_markdown(report), encoding="utf-8")
    files.append(out / "summary.md")

    refs_note_logged = False
    for c, cr in report.categories.items():
        if not cr.present:
            continue
        name = f"facetrack {model_label(report.model)} ({report.mode})"
        curves = {f"{name}, {p} pts": np.concatenate([report.videos[v].errors[p] for v in cr.videos]) for p in pts}
        refs = {}
        if reference_dir is not None and Path(reference_dir).is_dir():
            from facetrack.tracker.plots import load_reference_errors

            refs = load_reference_errors(reference_dir, c)
            if refs:
                curves[f"{name}, 49 pts, box-diagonal norm."] = np.concatenate(
                    [report.videos[v].errors_diag[49] for v in cr.videos])
        elif not refs_note_logged:
            log.info("no published reference errors found (%s): CED plots show facetrack only", reference_dir)
            refs_note_logged = True
        try:
            from facetrack.tracker.plots import plot_ced

            title = f"300VW category {c}: {len(cr.videos)} video(s), {cr.frames} frames"
            files.append(plot_ced(curves, out / f"ced_category{c}.png", title=title, references=refs))
        except ImportError as e:
            log.warning("CED plot skipped: matplotlib is not installed (%s); pip install 'facetrack[plot]'", e)
            break
    return files


def model_label(model: str) -> str:
    """A model value for labels: shipped names as they are, paths by their file stems
    (``/x/aan.onnx+/x/mdm-rt.onnx`` -> ``aan+mdm-rt``)."""
    def one(m: str) -> str:
        return Path(m).stem if ("/" in m or os.sep in m or m.endswith((".onnx", ".pt", ".engine"))) else m

    return "+".join(one(m) for m in _split_model(model))


def summary_markdown(report: Report) -> str:
    """The report as Markdown: one table per point count over the categories, then per video."""
    lines = [f"# 300VW evaluation: {report.model}, mode {report.mode}, backend {report.backend}", ""]
    if report.cancelled:
        lines += ["**Cancelled**: the figures cover the finished videos only.", ""]
    if report.max_frames:
        lines += [f"Only the first {report.max_frames} frames of each video were evaluated.", ""]
    for p in report.points:
        lines += [f"## {p} points", "",
                  "| category | videos | frames | excluded | no face | NME mean (pooled) | NME mean of videos | "
                  "NME median | AUC@0.08 | failure@0.08 | jitter | fps tracker | fps end to end |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c, cr in report.categories.items():
            if not cr.present:
                lines.append(f"| {c} | 0 | no videos of this category under the root | | | | | | | | | | |")
                continue
            f = cr.figures[p]
            lines.append(f"| {c} | {len(cr.videos)} | {cr.frames} | {cr.excluded} | {cr.no_prediction} | "
                         f"{_fmt(f['mean_pooled'])} | {_fmt(f['mean_of_videos'])} | {_fmt(f['median_pooled'])} | "
                         f"{_fmt(f['auc'])} | {_fmt(f['failure'])} | {_fmt(cr.jitter)} | "
                         f"{_fmt(cr.fps_tracker, 1)} | {_fmt(cr.fps_end_to_end, 1)} |")
        lines.append("")
    lines += ["## Per video", "",
              "| category | video | frames | excluded | no face | " + " | ".join(
                  f"NME{p} mean | NME{p} median | AUC{p} | failure{p}" for p in report.points) + " | jitter | fps tracker |",
              "|" + "---|" * (5 + 4 * len(report.points) + 2)]
    for r in sorted(report.videos.values(), key=lambda r: (r.category, r.video_id)):
        cells = []
        for p in report.points:
            s = r.stats(p)
            cells += [_fmt(s["mean"]), _fmt(s["median"]), _fmt(s["auc"]), _fmt(s["failure"])]
        lines.append(f"| {r.category} | {r.video_id} | {r.frames} | {r.excluded} | {r.no_prediction} | "
                     + " | ".join(cells) + f" | {_fmt(r.jitter)} | {_fmt(r.fps_tracker, 1)} |")
    if report.skipped:
        lines += ["", f"Skipped (not in the chosen categories): {', '.join(report.skipped)}."]
    lines += ["", "## Definitions", ""] + [f"- {n}" for n in NOTES] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facetrack eval-300vw``."""
    parser.add_argument("root", type=Path, help="300VW root: ROOT/<video>/vid.avi and annot/NNNNNN.pts")
    parser.add_argument("--category", type=int, nargs="+", default=list(CATEGORIES), choices=CATEGORIES,
                        help="test categories to evaluate (default: 1 2 3)")
    parser.add_argument("--videos", nargs="+", metavar="ID", help="only these video ids")
    parser.add_argument("--model", default="mdm", help="mdm | aan | aan+mdm | PATH (default: mdm)")
    parser.add_argument("--backend", default="auto", help="auto | onnxruntime | onnxruntime-cuda | torch | tensorrt")
    parser.add_argument("--mode", default="track", choices=MODES,
                        help="track: the tracker as a user runs it; gt-box: crop every frame from the ground "
                             "truth's box; detector: detect on every frame (default: track)")
    parser.add_argument("--points", type=int, nargs="+", default=[68, 49], choices=(68, 51, 49),
                        help="point subsets to report (default: 68 49)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report/)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="only the first N frames of each video")
    parser.add_argument("--force", action="store_true", help="recompute videos finished by an earlier run")
    parser.add_argument("--reference-dir", type=Path,
                        help="published per-frame errors for the CED plots "
                             "(default: ../shared/data/300vw_reference_errors next to the repository, if present)")


class _ProgressBar:
    """One progress line per video on stderr."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream, self.width = stream or sys.stderr, width
        self.t0 = time.monotonic()
        self.current: str | None = None

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.video_id != self.current:
            self.current, self.t0 = ev.video_id, time.monotonic()
        done = ev.frame / ev.n_frames if ev.n_frames else 1.0
        bar = "#" * int(round(done * self.width))
        elapsed = time.monotonic() - self.t0
        tail = "finished earlier, reused" if ev.resumed else (f"{ev.frame / elapsed:5.1f} frames/s" if elapsed > 0.5 else "")
        self.stream.write(f"\r[{ev.video_index + 1}/{ev.n_videos}] {ev.video_id} |{bar:<{self.width}}| "
                          f"{ev.frame}/{ev.n_frames} {tail}")
        if ev.frame >= ev.n_frames:
            self.stream.write("\n")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    """``facetrack eval-300vw``: evaluate, write the report, print the summary table."""
    from facetrack.tracker.io import LandmarkFileError

    ref: Path | bool | None = args.reference_dir if args.reference_dir is not None else True
    if args.reference_dir is not None and not args.reference_dir.is_dir():
        print(f"facetrack eval-300vw: {args.reference_dir}: no such folder (--reference-dir)", file=sys.stderr)
        return 2
    try:
        report = evaluate_300vw(args.root, args.category, args.videos, model=args.model, backend=args.backend,
                                mode=args.mode, points=args.points, out_dir=args.out, progress=_ProgressBar(),
                                max_frames=args.max_frames, force=args.force, reference_dir=ref)
    except (OSError, LandmarkFileError, ValueError, RuntimeError) as e:
        print(f"facetrack eval-300vw: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"facetrack eval-300vw: cannot load the runtime ({e})", file=sys.stderr)
        return 1
    if not report.videos:
        print(f"facetrack eval-300vw: no videos of categories {' '.join(map(str, args.category))} under {args.root}",
              file=sys.stderr)
        return 1
    print(summary_markdown(report).split("## Per video")[0].rstrip())
    print(f"\nwritten: {', '.join(str(p) for p in report.outputs)}")
    return 0
