"""Shot cuts: a frame that starts a new shot drops every track (landmarks are never dragged
across a cut) and starts a search."""
from __future__ import annotations

import cv2
import numpy as np


class CutDetector:
    """Shot-cut test: normalised correlation of 32x32 area-averaged grey thumbnails of
    consecutive frames. A flat (uniform) frame correlates 1 with a flat frame of similar
    brightness and 0 with anything else."""

    SIZE = 32

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        self.last_score: float = 1.0
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame."""
        self._prev: tuple[np.ndarray, float, float] | None = None

    def __call__(self, gray: np.ndarray) -> bool:
        """True when ``gray`` (``uint8`` ``(H, W)``) starts a new shot."""
        # a strided subsample first: the area filter over a whole HD frame costs more than the rest of the check
        step = max(1, min(gray.shape[:2]) // (4 * self.SIZE))
        t = cv2.resize(gray[::step, ::step], (self.SIZE, self.SIZE), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
        mean = float(t.mean())
        v = t - mean
        norm = float(np.linalg.norm(v))
        prev, self._prev = self._prev, (v, norm, mean)
        if prev is None:
            self.last_score = 1.0
            return False
        pv, pn, pm = prev
        flat, pflat = norm < 1e-3 * self.SIZE, pn < 1e-3 * self.SIZE
        if flat and pflat:
            score = 1.0 if abs(mean - pm) < 10.0 else 0.0
        elif flat or pflat:
            score = 0.0
        else:
            score = float(v @ pv / (norm * pn))
        self.last_score = score
        return score < self.threshold
