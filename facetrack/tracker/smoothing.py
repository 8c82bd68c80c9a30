"""One Euro filter over 68-point landmarks (Casiraghi, Roussel, Vogel, "1 € Filter: A Simple
Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012).

Each coordinate is low-pass filtered with a cutoff that rises with its speed:
``cutoff = min_cutoff + beta * |speed|``. Here the speed of a point is measured in *face sizes
per second* (face size: geometric mean of the landmarks' tight box sides), so the same
``beta`` behaves the same on a 4K close-up and on a small face far away.
"""
from __future__ import annotations

import math

import numpy as np

from facetrack.tracker.geometry import face_size as geometry_face_size


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt)


def face_size(landmarks: np.ndarray) -> float:
    """:func:`facetrack.tracker.geometry.face_size`, at least 1 px (the filter divides by it)."""
    return max(1.0, geometry_face_size(landmarks))


class OneEuroFilter:
    """One Euro filter for ``(N, 2)`` landmark arrays (float32 image px).

    ``min_cutoff``: Hz, cutoff at rest (lower: steadier, more lag when slow).
    ``beta``: speed coefficient, Hz per (face size / s) (higher: less lag when fast).
    ``d_cutoff``: Hz, cutoff of the speed estimate.
    ``default_dt``: seconds between samples used when timestamps are missing or not increasing.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 10.0, d_cutoff: float = 1.0, default_dt: float = 1 / 30) -> None:
        if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0 and default_dt > 0):
            raise ValueError(f"One Euro parameters must be positive (min_cutoff={min_cutoff}, beta={beta}, d_cutoff={d_cutoff})")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.default_dt = float(default_dt)
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None
        self._dt = self.default_dt

    def __call__(self, landmarks: np.ndarray, timestamp: float | None = None) -> np.ndarray:
        """Filter one sample ``(N, 2)`` taken at ``timestamp`` seconds; returns float32 ``(N, 2)``.

        Non-finite input resets the filter and is returned unchanged.
        """
        x = np.asarray(landmarks, np.float64)
        if not np.isfinite(x).all():
            self.reset()
            return x.astype(np.float32)
        if timestamp is not None and self._t is not None and timestamp > self._t:
            self._dt = float(timestamp - self._t)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            self._t = timestamp
            return x.astype(np.float32)
        dt = self._dt
        if timestamp is not None:
            self._t = timestamp if self._t is None else max(self._t, timestamp)
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) / face_size(x)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = a * x + (1 - a) * self._x
        return self._x.astype(np.float32)
