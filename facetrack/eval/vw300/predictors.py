"""What is evaluated: the landmarks of the annotated face, frame by frame, behind one protocol
(:class:`FramePredictor`), one class per mode. Each fits faces through the model choice's
:class:`facetrack.tracker.models.FitChain` (``track`` through the tracker, which uses it too)."""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from facetrack.tracker.geometry import box_iou, box_of, to_gray

#: Evaluation modes, in the order the CLI and the GUI offer them.
MODES = ("track", "gt-box", "detector")


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


def _area(b: np.ndarray) -> float:
    return float(max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]))


class TrackPredictor:
    """``track`` mode: the tracker a user runs on a video (the ``video`` preset: turned view,
    smoothing, its detector) with ``model``, reset per video."""

    every_frame = True
    uses_ground_truth = True  # only to pick the annotated face among several tracked ones

    def __init__(self, model: str, backend: str) -> None:
        from facetrack.tracker.detect import make_detector
        from facetrack.tracker.presets import preset
        from facetrack.tracker.tracker import Tracker

        video = preset("video").with_options(model=model)
        self.tracker = Tracker(video.tracker_config(backend=backend), detector=make_detector(video.detector))

    def start_video(self, video_id: str) -> None:
        self.tracker.reset()

    def predict(self, frame_bgr: np.ndarray, timestamp: float, gt: np.ndarray | None) -> np.ndarray | None:
        faces = [f for f in self.tracker.process(frame_bgr, timestamp).faces if f.success]
        if not faces:
            return None
        if len(faces) > 1 and gt is not None:
            g = box_of(gt)
            face = max(faces, key=lambda f: box_iou(box_of(f.landmarks), g))
        else:
            face = max(faces, key=lambda f: _area(box_of(f.landmarks)))
        return np.asarray(face.landmarks, np.float32)


class GtBoxPredictor:
    """``gt-box`` mode: each scored frame cropped from its ground truth's tight box."""

    every_frame = False
    uses_ground_truth = True

    def __init__(self, model: str, backend: str) -> None:
        from facetrack.tracker.models import open_chain

        self.chain = open_chain(model, backend)

    def start_video(self, video_id: str) -> None:
        pass

    def predict(self, frame_bgr: np.ndarray, timestamp: float, gt: np.ndarray | None) -> np.ndarray | None:
        if gt is None:
            return None
        from facetrack.tracker.landmarker import TIGHT_BOX  # the ground truth's tight box is a landmark box

        return np.asarray(self.chain.fit_box(to_gray(frame_bgr), box_of(gt), calibration=TIGHT_BOX).landmarks, np.float32)


class DetectorPredictor:
    """``detector`` mode: detect on every scored frame, fit the detection matching the face."""

    every_frame = False
    uses_ground_truth = True  # only to pick the detection of the annotated face

    def __init__(self, model: str, backend: str) -> None:
        from facetrack.tracker.detect import default_detector
        from facetrack.tracker.models import open_chain

        self.detector = default_detector()
        self.chain = open_chain(model, backend)

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
            ious = [box_iou(b, g) for b in boxes]
            if max(ious) > 0:
                best = int(np.argmax(ious))
        return np.asarray(self.chain.fit_box(gray, dets[best].box, calibration=self.detector.calibration).landmarks, np.float32)


def make_predictor(mode: str, model: str = "mdm", backend: str = "auto") -> FramePredictor:
    """The real predictor of an evaluation mode (imports the runtime lazily)."""
    table: dict[str, Callable[[str, str], FramePredictor]] = {
        "track": TrackPredictor, "gt-box": GtBoxPredictor, "detector": DetectorPredictor}
    if mode not in table:
        raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    return table[mode](model, backend)
