"""What the tracker reports: one face in one frame, one frame, and a face's state."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from facetrack.tracker.pose import HeadPose


class FaceState(str, Enum):
    """A reported face's state; compares equal to its value (``state == "lost"``), which is also
    what the CSV, JSON and the app show."""

    DETECTED = "detected"  # new this frame (found by a search or re-acquired)
    TRACKING = "tracking"  # followed from the previous frame
    LOST = "lost"  # lost this frame: the landmarks are the last ones before the loss

    __str__ = str.__str__
    __format__ = str.__format__


@dataclass(frozen=True)
class FaceResult:
    """One face in one frame.

    ``landmarks``: ``(68, 2)`` float32 image px, finite (for ``state == "lost"``: the last
    landmarks before the loss). ``confidence`` in [0, 1] (0 when a sanity check failed).
    ``box``: tight box ``(x0, y0, x1, y1)`` float32 of ``landmarks``.
    ``state``: a :class:`FaceState`.
    ``pose``: the head pose from ``landmarks`` (:class:`facetrack.tracker.pose.HeadPose`:
    OpenFace's ``pose_*`` and ``p_*`` values; failed, all zeros, for a lost face); ``None``
    when the tracker computes no pose (``TrackerConfig.pose`` off).
    """

    face_id: int
    landmarks: np.ndarray
    confidence: float
    success: bool
    box: np.ndarray
    state: FaceState
    pose: HeadPose | None = None


@dataclass(frozen=True)
class FrameResult:
    """One processed frame. ``index``: 0-based count of frames given to this tracker since the
    last reset; ``timestamp``: seconds; ``timings``: stage (``detect``, ``crop``, ``infer``,
    ``post``, ``total``) -> milliseconds; ``cut``: a shot cut was detected before this frame."""

    index: int
    timestamp: float
    faces: tuple[FaceResult, ...]
    timings: dict[str, float]
    detector_ran: bool
    cut: bool

    @property
    def success(self) -> bool:
        """True when at least one face was fitted in this frame."""
        return any(f.success for f in self.faces)
