"""One Euro filter over 68-point landmarks (Casiraghi, Roussel, Vogel, "1 € Filter: A Simple
Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012).

Each coordinate is low-pass filtered with a cutoff that rises with its speed:
``cutoff = min_cutoff + beta * |speed|``. Here the speed of a point is measured in *face sizes
per second* (face size: geometric mean of the landmarks' tight box sides), so the same
``beta`` behaves the same on a 4K close-up and on a small face far away.

:class:`PoseShapeFilter` (what ``--smooth`` uses) filters the face's *pose* and its *shape*
apart: a head that moves fast keeps its expression, and an expression that changes fast keeps
the head where it is, so each part gets the cutoff its own speed asks for. Measured on the
moved-face clips (``python -m facetrack.bench.smoothing``, 7 faces x 60 frames, the stage-4
mdm-rt weights): pose 1 Hz / beta 40 with shape 1 Hz / beta 10: flicker 0.96 %, NME 4.06 %; every
point on its own at 1 Hz / beta 40 (the same fits filtered offline): 1.14 %, 4.08 %;
unsmoothed: 1.45 %, 4.04 %.

The tracker moves the pose filter with the face (:meth:`PoseShapeFilter.move`, by the motion
:func:`facetrack.tracker.motion.face_motion` measures on the image) before each new fit, so
the pose filter smooths only the fits' own errors and a slow setting no longer lags: stage-6
mdm-rt, pose 1 Hz / beta 10, moved: flicker 0.31 %, NME 3.63 %; unmoved at beta 40 (the best
without the flow): 0.88 %, 3.75 %.
"""
from __future__ import annotations

import math

import numpy as np

from facetrack.tracker.geometry import template
from facetrack.tracker.geometry import face_size


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt)


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

    @property
    def started(self) -> bool:
        """Whether a sample has been filtered since the last reset (the next one is smoothed)."""
        return self._x is not None

    def __call__(self, landmarks: np.ndarray, timestamp: float | None = None, size: float | None = None) -> np.ndarray:
        """Filter one sample ``(N, 2)`` taken at ``timestamp`` seconds; returns float32 ``(N, 2)``.
        ``size``: the face size (px) speeds are measured in; default: :func:`face_size` of the
        sample (give it when the points are not a whole face).

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
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) / (face_size(x, 1.0) if size is None else max(1.0, float(size)))
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = a * x + (1 - a) * self._x
        return self._x.astype(np.float32)

    def move(self, matrix: np.ndarray) -> None:
        """The image moved by the affine ``(2, 3)`` ``matrix`` (image px of the last sample to
        image px of the next): move the filtered state with it, so the next sample is smoothed
        against where the last one went and only motion the matrix leaves out counts as speed."""
        if self._x is None:
            return
        m = np.asarray(matrix, np.float64)
        self._x = self._x @ m[:, :2].T + m[:, 2]
        self._dx = self._dx @ m[:, :2].T


class PoseShapeFilter:
    """One Euro filtering of a face's pose and shape apart, for ``(68, 2)`` landmarks.

    The *pose* is the similarity (Umeyama's least squares) that maps the template (the mean
    shape) onto the landmarks; it is filtered as two points in image px, the images of the
    template's centre and of a point one face size to its right (so its speeds are in face sizes
    per second like any point's), with ``min_cutoff`` / ``beta``, and read back as the
    similarity those two points define. The *shape* is the landmarks mapped by the inverse of
    that similarity into the template's frame (expression, and what a 3-D turn does that a
    similarity cannot); it is filtered there with ``shape_min_cutoff`` / ``shape_beta``. The output is the filtered shape
    under the filtered pose. The first sample, and any after non-finite input (which resets
    both), passes through unchanged. ``reset_at`` (0: never): a sample whose pose points lie
    more than this many face sizes from the filter's (after :meth:`move`) restarts both filters
    and passes through: motion the flow missed is the head's, not the fit's noise.
    """

    _TEMPLATE = template(100).astype(np.float64)
    _SIZE = face_size(_TEMPLATE, 1.0)
    _CENTRE = _TEMPLATE.mean(0)
    _T0 = _TEMPLATE - _CENTRE  # the template about its centre, for the closed-form similarity below
    _N2 = float((_T0**2).sum())

    def __init__(self, min_cutoff: float = 1.0, beta: float = 40.0, shape_min_cutoff: float = 1.0, shape_beta: float = 10.0,
                 d_cutoff: float = 1.0, default_dt: float = 1 / 30, reset_at: float = 0.0) -> None:
        if not reset_at >= 0:
            raise ValueError(f"reset_at must be >= 0, got {reset_at}")
        self.pose = OneEuroFilter(min_cutoff, beta, d_cutoff, default_dt)
        self.shape = OneEuroFilter(shape_min_cutoff, shape_beta, d_cutoff, default_dt)
        self.reset_at = float(reset_at)
        self.resets = 0  # samples that disagreed by more than reset_at and were passed through

    def reset(self) -> None:
        """Forget the history of both parts."""
        self.pose.reset()
        self.shape.reset()

    def move(self, matrix: np.ndarray) -> None:
        """The face moved by the similarity ``(2, 3)`` ``matrix`` (image px of the last sample to
        image px of the next, e.g. :func:`facetrack.tracker.motion.face_motion`): the pose's
        state moves with it, so the pose filter smooths only what the motion leaves out and does
        not lag behind it. The shape lives in the template's frame, which a similarity leaves
        as it is."""
        self.pose.move(matrix)

    def __call__(self, landmarks: np.ndarray, timestamp: float | None = None) -> np.ndarray:
        """Filter one ``(68, 2)`` sample taken at ``timestamp`` seconds; float32 ``(68, 2)``."""
        x = np.asarray(landmarks, np.float64)
        if x.shape != self._TEMPLATE.shape:
            raise ValueError(f"PoseShapeFilter needs (68, 2) landmarks, got {x.shape}")
        if not np.isfinite(x).all():
            self.reset()
            return x.astype(np.float32)
        # the least-squares similarity template -> landmarks (geometry.umeyama's closed form, with the
        # template's sums precomputed: this runs for every face in every frame of a video)
        centre = x.mean(0)
        d = x - centre
        a = float((self._T0 * d).sum()) / self._N2
        b = float((self._T0[:, 0] * d[:, 1] - self._T0[:, 1] * d[:, 0]).sum()) / self._N2
        scale2 = a * a + b * b
        if not scale2 > 1e-24:  # all points on one spot: no pose to speak of
            self.reset()
            return x.astype(np.float32)
        # the template's centre maps to the landmarks' centre; its point one size to the right to centre + size * (a, b)
        pose_points = np.array([centre, centre + self._SIZE * np.array([a, b])])
        size = math.sqrt(scale2) * self._SIZE
        if self.reset_at and self.pose.started:
            # the fit is far from where the (flow-moved) filter expects the face: the head moved
            # in a way the flow did not see (blur, a fast turn). A filter would pull the report
            # back toward the old place, so trust the fit: restart both parts from it
            assert self.pose._x is not None
            if float(np.abs(pose_points - self.pose._x).max()) > self.reset_at * size:
                self.reset()
                self.resets += 1
        first = not self.pose.started
        p = self.pose(pose_points, timestamp, size=size).astype(np.float64)
        # the landmarks in the template's frame: the inverse similarity, (a - ib) / |a + ib|^2 about the centres
        inv = np.array([[a, b], [-b, a]]) / scale2
        shape = self.shape(d @ inv.T + self._CENTRE, timestamp, size=self._SIZE).astype(np.float64)
        if first:  # exactly the input, not its round trip through the similarity
            return x.astype(np.float32)
        # the similarity taking the two pose points to their filtered places: (a + ib) = (p1 - p0) / (size, 0)
        fa, fb = (p[1] - p[0]) / self._SIZE
        sr = np.array([[fa, -fb], [fb, fa]])
        return ((shape - self._CENTRE) @ sr.T + p[0]).astype(np.float32)
