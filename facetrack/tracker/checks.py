"""The checks every fit passes before the tracker reports it: a plausible face in the frame,
confident enough, and not a face already tracked."""
from __future__ import annotations

from typing import Any

import numpy as np

from facetrack.tracker.geometry import box_iou, box_overlap, face_size
from facetrack.tracker.landmarker import Fit


class FaceChecks:
    """The checks of a :class:`~facetrack.tracker.config.TrackerConfig` (``config``)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def sane(self, fit: Fit, hw: tuple[int, int], prev: np.ndarray | None) -> bool:
        """Whether ``fit`` is a plausible face in a frame of ``hw`` = (height, width): valid and
        finite, at least ``min_inside`` of its points inside the frame, at least ``min_face_px``
        large and, against ``prev`` (the face's previous landmarks, if any), at most
        ``max_scale_change`` larger or smaller."""
        c = self.config
        pts = fit.landmarks
        if not fit.valid or not np.isfinite(pts).all() or not np.isfinite(fit.confidence):
            return False
        h, w = hw
        inside = ((pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)).mean()
        if inside < c.min_inside:
            return False
        size = face_size(pts, 1.0)
        if size < c.min_face_px:
            return False
        if prev is not None:
            ratio = size / face_size(prev, 1.0)
            if not (1.0 / c.max_scale_change <= ratio <= c.max_scale_change):
                return False
        return True

    def accept(self, fit: Fit, hw: tuple[int, int], prev: np.ndarray | None) -> bool:
        """:meth:`sane` and confident: ``confidence_threshold`` or more."""
        return fit.confidence >= self.config.confidence_threshold and self.sane(fit, hw, prev)

    def same_face(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether two boxes are taken for one face: IoU over ``iou_threshold``, or the smaller box
        inside the larger by more than ``overlap_threshold`` of its area (a fit on a face's upper
        half, which IoU alone lets through)."""
        c = self.config
        return box_iou(a, b) > c.iou_threshold or box_overlap(a, b) > c.overlap_threshold
