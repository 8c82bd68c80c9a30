"""Scoring one video: run a predictor over its frames (decoded once) and score the annotated ones."""
from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable, Sequence

import numpy as np

from facetrack.eval.vw300.dataset import VideoFrames, broken_frames
from facetrack.eval.vw300.predictors import FramePredictor
from facetrack.eval.vw300.results import DIAG_POINTS, STORED_POINTS, VideoResult
from facetrack.io.landmarks import Video300VW
from facetrack.eval.metrics import flicker, jitter, nme

log = logging.getLogger(__name__)


def _segments_jitter(frames: Sequence[int], preds: Sequence[np.ndarray | None], gts: Sequence[np.ndarray],
                     metric: Callable[[np.ndarray, np.ndarray], float] = jitter) -> tuple[float, int]:
    """Jitter (or ``metric``, e.g. ``flicker``) over runs of consecutive frame numbers that all have a
    prediction: the step-weighted mean of ``facetrack.eval.metrics.jitter`` per run, and the number of steps."""
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
        j = metric(np.stack([preds[k] for k in run]), np.stack([gts[k] for k in run]))
        if math.isfinite(j):
            num += j * (len(run) - 1)
            steps += len(run) - 1
    return (num / steps if steps else float("nan")), steps


def evaluate_video(video: Video300VW, predictor: FramePredictor, category: int, max_frames: int | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: threading.Event | None = None) -> VideoResult | None:
    """Run ``predictor`` over one video and score it; ``None`` when cancelled.

    ``progress(frame, n_frames)`` is called as frames go by (1-based frame numbers).
    Raises ``OSError`` / :class:`facetrack.io.landmarks.LandmarkFileError` naming the bad file.
    """
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

    gts: dict[int, np.ndarray] = {f: video.annotation(f) for f in scored}
    preds: dict[int, np.ndarray | None] = {}
    predictor.start_video(vid)
    tsec, n_pred, n_dec = 0.0, 0, 0
    if annotated:
        with VideoFrames(video) as frames:  # one decoder for the frame rate and the frames
            for n, frame in frames:
                if n > last:
                    break
                if cancel is not None and cancel.is_set():
                    return None
                n_dec += 1
                if n in scored_set or predictor.every_frame:
                    gt = gts.get(n) if predictor.uses_ground_truth else None
                    t0 = time.perf_counter()
                    p = predictor.predict(frame, (n - 1) / frames.fps, gt)
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
        log.warning("%s: %d annotated frames beyond the decoded frames (first %d), counted as no prediction",
                    video.root, len(missing), missing[0])

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
    flick, _ = _segments_jitter(scored, pred_list, gt_list, flicker)
    return VideoResult(vid, category, tuple(scored), excluded, errors, jit, steps, n_pred, n_dec,
                       tsec, time.perf_counter() - t_start, errors_diag, flick)
