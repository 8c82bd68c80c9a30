"""300VW evaluation: per-video and per-category NME, AUC, failure rate, jitter, speed, CED plots.

The official layout ``ROOT/<video>/vid.avi`` + ``annot/NNNNNN.pts`` (1-based frame numbers),
or the frames as JPEG files ``ROOT/<video>/imgs/NNNNNN.jpg`` (the layout of the 300VW sample in
the shared data). Test categories come from the official split
(``facetrack/tracker/data/300vw_splits.json``); frames whose ground truth is unreliable
(``facetrack/tracker/data/300vw_broken_frames.json``, video id -> 1-based frame numbers) are
excluded from scoring and counted.

Modes (how the face is found on each frame):

- ``track``: the :class:`facetrack.tracker.tracker.Tracker` as a user runs it on a video (the
  ``video`` preset of :mod:`facetrack.tracker.presets`: detector on the first frame,
  previous-frame initialisation after, re-detection on loss, the turned view, smoothing). It
  sees every decoded frame, excluded ones too. The ground truth is used only to pick which
  tracked face is the annotated one when several are tracked.
- ``gt-box``: every scored frame is cropped from the tight box of its ground truth (identity
  calibration), as most published per-category numbers are.
- ``detector``: the default detector on every scored frame; the detection overlapping the
  ground truth's box best (IoU of its calibrated box), else the largest, is fitted.

Errors are normalised by the ground truth's outer-eye-corner distance (points 36, 45), over
68 and 49 points. A scored frame with no prediction (no face) counts as a failure with error
``inf``: it lowers AUC and raises the failure rate; the mean and median are over the frames
that have a prediction (``facetrack.eval.metrics.summarize``) and the count of such frames
is reported beside them.

Modules, one job each: :mod:`.dataset` (package data, categories, frames of a video),
:mod:`.predictors` (what is evaluated), :mod:`.results` (result types and aggregation),
:mod:`.scoring` (one video), :mod:`.persistence` (per-video files for resuming),
:mod:`.report` (CSV, JSON, Markdown, CED plots), :mod:`.evaluate` (the whole run); the command, ``facetrack eval-300vw``, is
:mod:`facetrack.cli.eval_300vw`.
"""
from __future__ import annotations

from facetrack.eval.vw300.dataset import CATEGORIES, broken_frames, category_of, reference_dir_from_env, splits, VideoFrames
from facetrack.eval.vw300.evaluate import evaluate_300vw
from facetrack.eval.vw300.persistence import load_video, save_video
from facetrack.eval.vw300.predictors import MODES, FramePredictor, make_predictor
from facetrack.eval.vw300.report import NOTES, model_label, summary_markdown, write_report
from facetrack.eval.vw300.results import CategoryResult, ProgressEvent, Report, VideoResult, category_result
from facetrack.eval.vw300.scoring import evaluate_video

__all__ = [
    "CATEGORIES", "MODES", "NOTES", "CategoryResult", "FramePredictor", "ProgressEvent", "Report", "VideoResult",
    "broken_frames", "category_of", "category_result", "evaluate_300vw",
    "evaluate_video", "load_video", "make_predictor", "model_label", "reference_dir_from_env", "save_video",
    "splits", "summary_markdown", "VideoFrames", "write_report",
]
