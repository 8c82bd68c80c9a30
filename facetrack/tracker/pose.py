"""Head pose from the 68 landmarks: OpenFace's ``pose_*`` and rigid ``p_*`` values.

The pose of a rigid 3-D mean face (:func:`default_face_model`, ``facetrack/tracker/data/face3d.json``:
the mean face this project factorises from its own training shapes, scaled to millimetres, made
by ``python -m facetrack.train.loops.face3d``) that best explains the landmarks through a pinhole
camera, solved as OpenFace solves it (``LandmarkDetector::GetPose``): a scaled-orthographic fit
first (it gives OpenFace's rigid parameters), whose rotation and size start OpenCV's
Levenberg-Marquardt refinement of the reprojection error (``cv2.solvePnPRefineLM``, the iterative
``cv2.solvePnP``'s solver with :data:`LM_ITERATIONS` iterations instead of up to 20; SQPnP, which
needs no start, was tried and flips the face on about 5 % of real faces, its object-space cost
favouring a face nearer the camera). Each face is solved from its
own landmarks alone, so the pose of a frame does not depend on the frames before it (a resumed
run writes the same values); in video the landmarks are the tracker's smoothed ones.

Conventions (OpenFace's, so that scripts written for its CSV read ours):

- Camera frame: OpenCV's, origin at the camera, x to the image's right, y down, z forward (away
  from the camera, into the scene). Units: millimetres.
- The face model's own frame: the same axes for a face looking straight into the camera (its
  nose tip nearer the camera than its eyes: smaller z); origin at the centroid of the 68 points.
- ``pose_Tx, pose_Ty, pose_Tz``: the model's origin in the camera frame, mm (``pose_Tz`` > 0 is
  the distance in front of the camera).
- ``pose_Rx, pose_Ry, pose_Rz``: radians, ``R = Rx(pose_Rx) @ Ry(pose_Ry) @ Rz(pose_Rz)`` with
  the right-handed elementary rotations, ``X_camera = R @ X_model + T`` (OpenFace's "XYZ
  convention"). ``pose_Rx`` is the pitch (positive: the face turns down, the chin toward the
  chest), ``pose_Ry`` the yaw (positive: the nose moves toward the image's left, i.e. the person
  turns toward their own right), ``pose_Rz`` the roll (positive: clockwise in the image, the top
  of the head toward the image's right).
- ``p_scale, p_rx, p_ry, p_rz, p_tx, p_ty``: OpenFace's rigid shape parameters, from the
  scaled-orthographic fit (``landmarks ~ p_scale * (R_p @ X_model)[:2] + (p_tx, p_ty)``):
  ``p_scale`` image px per model mm, ``p_rx..p_rz`` the fit's rotation in the same Euler
  convention (radians), ``p_tx, p_ty`` the image px of the model's origin.
- Camera defaults (OpenFace's ``SetCameraIntrinsics``): ``fx = fy`` = the mean of
  ``500 * width / 640`` and ``500 * height / 480``, ``(cx, cy)`` = the image centre
  ``(width / 2, height / 2)``; each can be given instead (:class:`Camera`).

A solve that cannot give a pose (landmarks not finite or collapsed, no PnP solution, a face
behind the camera or turned away from it, a fit whose reprojection error is over
:data:`MAX_REPROJECTION` of the face size) returns :meth:`HeadPose.failed`: all zeros and
``success`` False, never NaN. Numpy and OpenCV only.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

#: OpenFace's CSV names of the pose values, in its column order.
POSE_NAMES: tuple[str, ...] = ("pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")
#: OpenFace's names of the rigid shape parameters, in its column order.
RIGID_NAMES: tuple[str, ...] = ("p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty")
#: Reprojection RMS error (over the face size, the square root of the landmarks' box area) above
#: which a solve is refused: 1,541 ground-truth faces (pseudo_v2, images68) stay under 0.12 (mean
#: 0.05), the tracker's fits of profile faces (the Hamilton clip's audience) reach 0.29, 68 random
#: points in a box give 0.36 and more
MAX_REPROJECTION = 0.3
DEFAULT_PATH = Path(__file__).with_name("data") / "face3d.json"
#: Levenberg-Marquardt iterations from the orthographic start. On 506 pseudo_v2 faces (ground-truth
#: landmarks), against the converged pose (``cv2.solvePnP``'s up to 20 iterations, 3x the time):
#: 1 iteration is up to 7.3 degrees off, 2 up to 1.35, 3 up to 0.27 (95 % within 0.1), 5 up to 0.02
LM_ITERATIONS = 3
_LM_CRITERIA = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, LM_ITERATIONS, 1e-9)


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in image px; ``None``: OpenFace's default for the image size
    (:meth:`resolve`). Lens distortion is not modelled (OpenFace does not either)."""

    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None

    def resolve(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``(fx, fy, cx, cy)`` for an image of ``width`` x ``height`` px: the given values, and
        OpenFace's defaults for the others (``fx`` alone given: ``fy = fx``, and the reverse)."""
        f = 500.0 * (width / 640.0 + height / 480.0) / 2.0
        fx = self.fx if self.fx is not None else self.fy if self.fy is not None else f
        fy = self.fy if self.fy is not None else fx
        cx = self.cx if self.cx is not None else width / 2.0
        cy = self.cy if self.cy is not None else height / 2.0
        return float(fx), float(fy), float(cx), float(cy)

    def matrix(self, width: int, height: int) -> np.ndarray:
        """The ``(3, 3)`` float64 camera matrix for an image of that size."""
        fx, fy, cx, cy = self.resolve(width, height)
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class HeadPose:
    """One face's head pose (module docstring: frames, units, signs).

    ``translation``: ``(3,)`` float64 mm (``pose_Tx, pose_Ty, pose_Tz``); ``rotation``: ``(3,)``
    float64 radians (``pose_Rx, pose_Ry, pose_Rz``); ``rigid``: ``(6,)`` float64 (``p_scale,
    p_rx, p_ry, p_rz, p_tx, p_ty``); ``success``: False for a failed solve (then all zeros);
    ``reprojection``: RMS reprojection error of the solve over the face size (0 when failed).
    """

    translation: np.ndarray
    rotation: np.ndarray
    rigid: np.ndarray
    success: bool
    reprojection: float = 0.0

    @classmethod
    def failed(cls) -> "HeadPose":
        """The pose of a failed solve: zeros, ``success`` False."""
        return cls(np.zeros(3), np.zeros(3), np.zeros(6), False, 0.0)

    @property
    def values(self) -> tuple[float, ...]:
        """The 12 values in OpenFace's column order (:data:`POSE_NAMES` then :data:`RIGID_NAMES`)."""
        return tuple(float(v) for v in np.concatenate([self.translation, self.rotation, self.rigid]))

    def as_dict(self) -> dict[str, float]:
        """OpenFace name -> value for the 12 values."""
        return dict(zip(POSE_NAMES + RIGID_NAMES, self.values))

    @property
    def pitch(self) -> float:
        """``pose_Rx`` in degrees."""
        return float(np.degrees(self.rotation[0]))

    @property
    def yaw(self) -> float:
        """``pose_Ry`` in degrees."""
        return float(np.degrees(self.rotation[1]))

    @property
    def roll(self) -> float:
        """``pose_Rz`` in degrees."""
        return float(np.degrees(self.rotation[2]))

    def matrix(self) -> np.ndarray:
        """The ``(3, 3)`` rotation ``R`` (model frame -> camera frame)."""
        return euler_to_matrix(self.rotation)


def euler_to_matrix(euler: np.ndarray) -> np.ndarray:
    """``R = Rx(a) @ Ry(b) @ Rz(c)`` for ``euler = (a, b, c)`` radians (right-handed rotations)."""
    a, b, c = (float(v) for v in np.asarray(euler, np.float64).reshape(3))
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]])
    ry = np.array([[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]])
    rz = np.array([[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]])
    return rx @ ry @ rz


def matrix_to_euler(r: np.ndarray) -> np.ndarray:
    """``(a, b, c)`` radians with ``r = Rx(a) @ Ry(b) @ Rz(c)``, ``b`` in [-pi/2, pi/2] (the
    decomposition OpenFace's ``RotationMatrix2Euler`` computes through a quaternion)."""
    m = np.asarray(r, np.float64).reshape(3, 3)
    return np.array([np.arctan2(-m[1, 2], m[2, 2]), np.arcsin(np.clip(m[0, 2], -1.0, 1.0)), np.arctan2(-m[0, 1], m[0, 0])])


def _euler(m: np.ndarray) -> tuple[float, float, float]:
    """:func:`matrix_to_euler` with Python floats (a third of the time for one matrix)."""
    return (math.atan2(-m[1, 2], m[2, 2]), math.asin(min(max(float(m[0, 2]), -1.0), 1.0)), math.atan2(-m[0, 1], m[0, 0]))


def _rows_to_rotation(r2: np.ndarray) -> np.ndarray:
    """The rotation whose first two rows are the orthonormal ``r2`` ``(2, 3)``: the third is
    their cross product (written out: ``np.cross`` costs ten times more)."""
    r = np.empty((3, 3))
    r[:2] = r2
    x, y = r2[0], r2[1]
    r[2] = (x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0])
    return r


def _orthonormal(a: np.ndarray) -> np.ndarray:
    """The rotation (determinant 1) whose first two rows are nearest ``a``'s ``(2, 3)``."""
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    return _rows_to_rotation(u @ vt)


@dataclass(frozen=True)
class FaceModel:
    """A rigid 3-D face: ``points`` ``(68, 3)`` float64 mm in the model frame of the module
    docstring (centroid at the origin); ``record``: how it was made."""

    points: np.ndarray
    record: dict[str, Any]

    def __post_init__(self) -> None:
        p = np.asarray(self.points, np.float64)
        if p.shape != (68, 3) or not np.isfinite(p).all():
            raise ValueError(f"a face model is (68, 3) finite points, got shape {p.shape}")
        object.__setattr__(self, "points", p)

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "units": "mm", "frame": "x right, y down, z away from the camera; origin at the centroid",
                "points": np.round(self.points, 4).tolist(), "record": self.record}

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_json()) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FaceModel":
        """``ValueError`` naming the file when it is not a face model of this format."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            if d.get("format") != 1 or d.get("units") != "mm":
                raise ValueError(f"format {d.get('format')}, units {d.get('units')}")
            return cls(np.array(d["points"], np.float64), dict(d.get("record") or {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: not a facetrack 3-D face model ({e})") from None


@lru_cache(maxsize=1)
def default_face_model() -> FaceModel:
    """The shipped model (``facetrack/tracker/data/face3d.json``)."""
    return FaceModel.load(DEFAULT_PATH)


class PoseSolver:
    """Head pose of faces in images of one size or another (module docstring).

    ``model``: the 3-D face (default :func:`default_face_model`); ``camera``: intrinsics
    (default: OpenFace's for each image's size); ``points``: the landmark indices the solve uses
    (default all 68)."""

    def __init__(self, model: FaceModel | None = None, camera: Camera | None = None,
                 points: tuple[int, ...] | None = None) -> None:
        self.model = model if model is not None else default_face_model()
        self.camera = camera if camera is not None else Camera()
        self.index = np.arange(68) if points is None else np.asarray(points, np.intp)
        self._x = np.ascontiguousarray(self.model.points[self.index])
        self._xc = self._x - self._x.mean(0)
        # the orthographic fit's least-squares solve, once: a = pinv(X - mean) applied to the points
        self._pinv = np.linalg.pinv(self._xc)
        self._mean = self._x.mean(0)
        self._k: dict[tuple[int, int], np.ndarray] = {}

    def _camera(self, size: tuple[int, int]) -> np.ndarray:
        k = self._k.get(size)
        if k is None:
            k = self._k[size] = self.camera.matrix(*size)
        return k

    def solve(self, landmarks: np.ndarray, image_size: tuple[int, int]) -> HeadPose:
        """The pose of the face with ``landmarks`` (``(68, 2)`` image px) in an image of
        ``image_size`` = ``(width, height)`` px; :meth:`HeadPose.failed` when there is none."""
        pts = np.asarray(landmarks, np.float64)
        if pts.shape != (68, 2) or not np.isfinite(pts).all():
            return HeadPose.failed()
        p = pts[self.index]
        lo, hi = p.min(0), p.max(0)
        size = math.sqrt(max(float((hi[0] - lo[0]) * (hi[1] - lo[1])), 0.0))
        if not size > 1.0:
            return HeadPose.failed()
        # 1. scaled orthography (OpenFace's rigid parameters): p - mean(p) ~ s * R[:2] @ (X - mean(X))
        c = p.sum(0) / len(p)
        a = (self._pinv @ (p - c)).T  # (2, 3): s * R[:2]
        u, sv, vt = np.linalg.svd(a, full_matrices=False)
        scale = float(sv[0] + sv[1]) / 2.0
        if not (math.isfinite(scale) and scale > 0 and sv[1] > 0.05 * sv[0]):
            return HeadPose.failed()
        r0 = _rows_to_rotation(u @ vt)
        t2 = c - scale * (r0[:2] @ self._mean)  # image px of the model's origin
        rigid = np.array([scale, *_euler(r0), t2[0], t2[1]])
        # 2. perspective: OpenFace's start (the orthographic rotation; the depth at which the model's
        # size matches the image's), then OpenCV's Levenberg-Marquardt on the reprojection error
        k = self._camera((int(image_size[0]), int(image_size[1])))
        z = k[0, 0] / scale
        tvec = np.array([[(t2[0] - k[0, 2]) * z / k[0, 0]], [(t2[1] - k[1, 2]) * z / k[1, 1]], [z]])
        try:
            rvec, tvec = cv2.solvePnPRefineLM(self._x, p, k, None, cv2.Rodrigues(r0)[0], tvec, _LM_CRITERIA)
        except cv2.error:
            return HeadPose.failed()
        if not (np.isfinite(rvec).all() and np.isfinite(tvec).all()):
            return HeadPose.failed()
        r = cv2.Rodrigues(rvec)[0]
        t = tvec.reshape(3)
        # in front of the camera, facing it (the model's z axis, into the head, points away from the camera)
        if not (t[2] > 0 and r[2, 2] > 0):
            return HeadPose.failed()
        cam = self._x @ r.T + t
        if not cam[:, 2].min() > 0:
            return HeadPose.failed()
        proj = cam[:, :2] / cam[:, 2:3] * (k[0, 0], k[1, 1]) + (k[0, 2], k[1, 2])
        err = math.sqrt(float(((proj - p) ** 2).sum()) / len(p)) / size
        if not (math.isfinite(err) and err <= MAX_REPROJECTION):
            return HeadPose.failed()
        return HeadPose(t.copy(), np.array(_euler(r)), rigid, True, err)


def project(points: np.ndarray, pose: HeadPose, camera: Camera, image_size: tuple[int, int]) -> np.ndarray:
    """``points`` ``(N, 3)`` model-frame mm -> ``(N, 2)`` float64 image px through ``pose``."""
    k = camera.matrix(int(image_size[0]), int(image_size[1]))
    cam = np.asarray(points, np.float64).reshape(-1, 3) @ pose.matrix().T + pose.translation
    z = np.where(np.abs(cam[:, 2:3]) > 1e-9, cam[:, 2:3], 1e-9)
    return cam[:, :2] / z * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]


def head_axes(pose: HeadPose, camera: Camera, image_size: tuple[int, int], length_mm: float = 60.0) -> np.ndarray:
    """``(4, 2)`` image px: the model's origin and the ends of its x (toward the image's right
    for a frontal face), y (down) and z axes, the z axis drawn toward the viewer (out of the
    face, along the nose) as head-pose overlays draw it; ``length_mm`` long."""
    ends = np.array([[0.0, 0.0, 0.0], [length_mm, 0.0, 0.0], [0.0, length_mm, 0.0], [0.0, 0.0, -length_mm]])
    return project(ends, pose, camera, image_size)


__all__ = ["Camera", "FaceModel", "HeadPose", "PoseSolver", "POSE_NAMES", "RIGID_NAMES", "MAX_REPROJECTION",
           "default_face_model", "euler_to_matrix", "head_axes", "matrix_to_euler", "project"]
