"""Synthetic head turns for training ("face profiling", as 300W-LP made its large-pose faces).

The labelled faces here are nearly all frontal (pseudo_v2: 101 of 3,036 beyond 30 degrees of
yaw, none beyond 50), so the models never see the turned faces users film. This module turns a
labelled face further about its vertical axis, image and landmarks together:

1. :func:`mean_shape_3d`: a 3-D mean of the 68 points from the training shapes alone, by rank-3
   factorisation of the centred 2-D shapes and the metric upgrade of scaled orthography
   (Tomasi-Kanade): the faces' own spread of poses (up to about 40 degrees) fixes the depths.
2. :func:`fit_pose`: each face's scale and rotation against that mean (an affine camera made
   orthonormal); a point's depth is the mean's, rotated into the face's pose, while its image
   position stays the face's own (its expression and identity are kept).
3. :meth:`Profiler.turn`: the points (and six forehead points) are rotated by the extra yaw and
   projected; the picture follows as a piecewise-affine warp over a fixed triangulation that
   also holds a ring of fixed anchors around the head (the background does not turn).
   Triangles are painted far to near, and those that face away are skipped, so the near
   cheek covers what it hides.

It is an approximation with known faults: a generic depth (not the person's), roll ignored
(the turn is about the image's vertical axis), the far side's jaw points stay where the 3-D mean
puts them (300-W marks the visible outline there; the two differ beyond about 60 degrees, so turns
stop at :data:`MAX_YAW`), and the revealed side of the head is the stretched edge of the
picture. Numpy and OpenCV only; every random choice is made by the caller's generator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from facetrack.tracker.markup import MIRROR_PERMUTATION

#: The largest |yaw| (degrees) a turned face is given.
MAX_YAW = 70.0
#: Brow points that get a forehead point above them.
_BROWS = (17, 19, 21, 22, 24, 26)
#: Anchors on a circle of this many face sides around the face centre (outside any crop).
_RING_RADIUS = 1.3
_RING_POINTS = 16


def _centred(shapes: Sequence[np.ndarray]) -> np.ndarray:
    """``(F, 68, 2)`` shapes, each centred and scaled to unit RMS radius."""
    out = []
    for s in shapes:
        p = np.asarray(s, np.float64).reshape(68, 2)
        p = p - p.mean(0)
        r = np.sqrt((p ** 2).sum(1).mean())
        if np.isfinite(r) and r > 0:
            out.append(p / r)
    if len(out) < 10:
        raise ValueError(f"a 3-D mean shape needs at least 10 shapes, got {len(out)}")
    return np.stack(out)


def mean_shape_3d(shapes: Sequence[np.ndarray]) -> np.ndarray:
    """A ``(68, 3)`` mean face from 2-D shapes (image px, any poses), in the frame of their 2-D
    mean: x right, y down (as the images), z toward the viewer (the nose tip in front), unit RMS
    radius. Rank-3 factorisation, then the metric upgrade of scaled orthography, solved in
    least squares over all shapes, then made symmetric. ``ValueError`` with fewer than 10 usable
    shapes, or shapes whose poses vary too little to fix the depths (the upgrade degenerates)."""
    p = _centred(shapes)
    f = len(p)
    w = np.concatenate([p[:, :, 0], p[:, :, 1]], axis=0)  # (2F, 68): all x rows, then all y rows
    u, sv, vt = np.linalg.svd(w, full_matrices=False)
    m = u[:, :3] * np.sqrt(sv[:3])
    s = np.sqrt(sv[:3])[:, None] * vt[:3]
    a, b = m[:f], m[f:]

    def row(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # coefficients of x^T L y in L's 6 entries
        return np.stack([x[:, 0] * y[:, 0], x[:, 0] * y[:, 1] + x[:, 1] * y[:, 0], x[:, 0] * y[:, 2] + x[:, 2] * y[:, 0],
                         x[:, 1] * y[:, 1], x[:, 1] * y[:, 2] + x[:, 2] * y[:, 1], x[:, 2] * y[:, 2]], 1)

    # each shape's two camera rows are orthogonal and of equal length; their mean length is 1
    g = np.concatenate([row(a, a) - row(b, b), row(a, b), (row(a, a) + row(b, b)).mean(0, keepdims=True) * np.sqrt(f)])
    rhs = np.zeros(len(g))
    rhs[-1] = 2.0 * np.sqrt(f)
    l6 = np.linalg.lstsq(g, rhs, rcond=None)[0]
    lm = np.array([[l6[0], l6[1], l6[2]], [l6[1], l6[3], l6[4]], [l6[2], l6[4], l6[5]]])
    ev, evec = np.linalg.eigh(lm)
    q = evec * np.sqrt(np.clip(ev, 1e-9, None))
    x3 = np.linalg.solve(q, s).T  # (68, 3)
    # into the frame of the mean 2-D shape: the rotation whose first two rows best map onto it
    mean2d = p.mean(0)
    r = _orthonormal(np.linalg.lstsq(x3 - x3.mean(0), mean2d, rcond=None)[0].T)
    x3 = (x3 - x3.mean(0)) @ r.T
    if x3[30, 2] < x3[[0, 16], 2].mean():  # depth is ambiguous in sign: the nose tip is in front
        x3[:, 2] = -x3[:, 2]
    # a mean face is symmetric: average with its mirror image (points renumbered left for right)
    mirror = x3[MIRROR_PERMUTATION] * np.array([-1.0, 1.0, 1.0])
    x3 = (x3 + mirror) / 2
    x3 -= x3.mean(0)
    x3 /= np.sqrt((x3 ** 2).sum(1).mean())
    # shapes of one pose fix no depth: the upgrade then degenerates (flat x-y or a needle)
    flat = mean2d / np.sqrt((mean2d ** 2).sum(1).mean())
    frontal_error = float(np.sqrt(((x3[:, :2] / np.sqrt((x3[:, :2] ** 2).sum(1).mean()) - flat) ** 2).sum(1).mean()))
    depth = float(np.ptp(x3[:, 2]) / np.ptp(x3[:, 0]))
    if not (frontal_error < 0.25 and 0.3 < depth < 2.0):
        raise ValueError(f"the {f} shapes' poses vary too little to fix the depths of a 3-D mean face "
                         f"(front view off by {frontal_error:.2f}, depth/width {depth:.2f})")
    return x3.astype(np.float64)


def _orthonormal(a: np.ndarray) -> np.ndarray:
    """The rotation (3x3, determinant 1) whose first two rows are nearest ``a``'s (2x3)."""
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    r2 = u @ vt
    return np.vstack([r2, np.cross(r2[0], r2[1])])


def fit_pose(points: np.ndarray, model: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(scale, rotation (3, 3), centre (2,))`` with ``points ≈ scale * model @ R[:2].T + centre``
    (scaled orthography; the affine least-squares camera made orthonormal)."""
    pts = np.asarray(points, np.float64)
    mod = np.asarray(model, np.float64)
    c, mc = pts.mean(0), mod.mean(0)
    a = np.linalg.lstsq(mod - mc, pts - c, rcond=None)[0].T  # (2, 3)
    r = _orthonormal(a)
    scale = float(np.linalg.svd(a, compute_uv=False).mean())
    return scale, r, c - scale * (r[:2] @ mc)


def yaw_of(rotation: np.ndarray) -> float:
    """Yaw (degrees, about the vertical axis) of a rotation from :func:`fit_pose`."""
    return float(np.degrees(np.arcsin(np.clip(rotation[0, 2], -1.0, 1.0))))


def _head(model: np.ndarray) -> np.ndarray:
    """The model with forehead points above :data:`_BROWS` (68 + 6 points)."""
    height = model[8, 1] - model[list(_BROWS), 1].mean()  # brows to chin
    fore = model[list(_BROWS)].copy()
    fore[:, 1] -= 0.45 * height
    fore[:, 2] -= 0.08 * height  # the forehead slopes back
    return np.vstack([model, fore])


def _triangles(points2d: np.ndarray) -> np.ndarray:
    """Delaunay triangles ``(T, 3)`` (indices) of 2-D points (OpenCV's subdivision)."""
    lo, hi = points2d.min(0) - 1.0, points2d.max(0) + 1.0
    sub = cv2.Subdiv2D((int(np.floor(lo[0])), int(np.floor(lo[1])), int(np.ceil(hi[0] - lo[0])) + 2, int(np.ceil(hi[1] - lo[1])) + 2))
    index = {}
    for i, p in enumerate(points2d):
        sub.insert((float(p[0]), float(p[1])))
        index[(round(float(p[0]), 3), round(float(p[1]), 3))] = i
    out = []
    for t in sub.getTriangleList():
        key = [(round(float(t[k]), 3), round(float(t[k + 1]), 3)) for k in (0, 2, 4)]
        if all(k in index for k in key):
            out.append([index[k] for k in key])
    return np.array(out, np.int32)


def _ring(centre: np.ndarray, radius: float) -> np.ndarray:
    ang = np.arange(_RING_POINTS) * (2 * np.pi / _RING_POINTS)
    return centre + radius * np.stack([np.cos(ang), np.sin(ang)], 1)


def _area2(p: np.ndarray) -> np.ndarray:
    """Twice the signed area of triangles ``(T, 3, 2)``."""
    return (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])


@dataclass(frozen=True)
class Turned:
    """A turned face: ``image`` (same size and type as the input), ``landmarks`` ``(68, 2)``
    float32 image px, ``yaw`` before and after (degrees)."""

    image: np.ndarray
    landmarks: np.ndarray
    yaw_before: float
    yaw_after: float


class Profiler:
    """Turns faces about their vertical axis with a 3-D mean shape (see the module docstring)."""

    def __init__(self, model: np.ndarray) -> None:
        self.model = np.asarray(model, np.float64).reshape(68, 3)
        self.head = _head(self.model)
        n = len(self.head)
        side = float(np.sqrt(np.prod(self.model[:, :2].max(0) - self.model[:, :2].min(0))))
        layout = np.vstack([self.head[:, :2], _ring(self.model[:, :2].mean(0), _RING_RADIUS * side)])
        self.triangles = _triangles(layout)
        self._anchored = (self.triangles >= n).any(1)  # triangles reaching the fixed ring
        self._front = np.sign(_area2(layout[self.triangles]))

    @classmethod
    def from_shapes(cls, shapes: Sequence[np.ndarray]) -> "Profiler":
        return cls(mean_shape_3d(shapes))

    def depths(self, landmarks: np.ndarray) -> tuple[np.ndarray, float]:
        """``(points (74, 3) image px, yaw degrees)``: the face's own landmarks, six forehead points
        from the model in the face's pose, and every point's depth from the model in that pose."""
        scale, r, c = fit_pose(landmarks, self.model)
        proj = scale * self.head @ r.T  # (74, 3): x, y, z in the face's pose (before the centre shift)
        pts = np.empty((len(self.head), 3))
        pts[:68, :2] = np.asarray(landmarks, np.float64)
        pts[68:, :2] = proj[68:, :2] + c
        pts[:, 2] = proj[:, 2]
        return pts, yaw_of(r)

    def turn(self, image: np.ndarray, landmarks: np.ndarray, degrees: float) -> Turned:
        """``image`` with the face of ``landmarks`` (``(68, 2)`` image px) turned by ``degrees``
        of yaw (positive: the sense :func:`yaw_of` counts as positive)."""
        return self._turn(image, *self.depths(landmarks), degrees)

    def _turn(self, image: np.ndarray, pts: np.ndarray, yaw: float, degrees: float) -> Turned:
        """:meth:`turn` from the face's points and yaw as :meth:`depths` gives them."""
        centre = pts[:68].mean(0)
        t = np.radians(degrees)
        d = pts - centre
        dst = pts.copy()
        dst[:, 0] = centre[0] + d[:, 0] * np.cos(t) + d[:, 2] * np.sin(t)
        dst[:, 2] = centre[2] - d[:, 0] * np.sin(t) + d[:, 2] * np.cos(t)
        side = float(np.sqrt(max(np.prod(pts[:68, :2].max(0) - pts[:68, :2].min(0)), 1.0)))
        ring = _ring(centre[:2], _RING_RADIUS * side)
        src2 = np.vstack([pts[:, :2], ring])
        dst2 = np.vstack([dst[:, :2], ring])
        out = self._warp(image, src2, dst2, np.concatenate([dst[:, 2], np.full(len(ring), -np.inf)]))
        return Turned(out, dst[:68, :2].astype(np.float32), yaw, yaw + degrees)

    def _warp(self, image: np.ndarray, src: np.ndarray, dst: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Piecewise-affine backward warp: each pixel inside the ring takes the affine map of the
        nearest triangle covering it that faces the viewer; pixels outside keep their place."""
        tri = self.triangles
        dt, st = dst[tri], src[tri]
        facing = (np.sign(_area2(dt)) == self._front) | self._anchored
        order = [k for k in np.argsort([-np.inf if self._anchored[k] else depth[tri[k]].mean() for k in range(len(tri))],
                                       kind="stable") if facing[k]]
        lo = np.floor(dst.min(0)).astype(int)
        hi = np.ceil(dst.max(0)).astype(int) + 1
        h, w = image.shape[:2]
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], w), min(hi[1], h)
        if x1 <= x0 or y1 <= y0:
            return image.copy()
        label = np.zeros((y1 - y0, x1 - x0), np.int32)
        maps = np.zeros((len(tri) + 1, 2, 3))
        maps[0] = [[1, 0, 0], [0, 1, 0]]
        for k in order:  # far to near: the nearer triangle overwrites
            d3 = np.vstack([dt[k].T, np.ones(3)])
            if abs(np.linalg.det(d3)) < 1e-6:
                continue
            maps[k + 1] = st[k].T @ np.linalg.inv(d3)
            cv2.fillConvexPoly(label, np.round(dt[k] - [x0, y0]).astype(np.int32), int(k + 1))
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        m = maps[label]
        mx = (m[..., 0, 0] * xx + m[..., 0, 1] * yy + m[..., 0, 2]).astype(np.float32)
        my = (m[..., 1, 0] * xx + m[..., 1, 1] * yy + m[..., 1, 2]).astype(np.float32)
        out = image.copy()
        out[y0:y1, x0:x1] = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return out

    def random_turn(self, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                    low: float = 20.0, high: float = 55.0) -> Turned:
        """Turn by ``low``-``high`` degrees away from the front (the face's own sense; either sense
        for a face within 3 degrees of frontal), at most to :data:`MAX_YAW`."""
        pts, yaw = self.depths(landmarks)  # the pose is fitted once, for the sense and the turn
        sense = float(np.sign(yaw)) if abs(yaw) > 3.0 else float(rng.choice([-1.0, 1.0]))
        amount = min(float(rng.uniform(low, high)), max(MAX_YAW - abs(yaw), 0.0))
        return self._turn(image, pts, yaw, sense * amount)


__all__ = ["MAX_YAW", "Profiler", "Turned", "fit_pose", "mean_shape_3d", "yaw_of"]
