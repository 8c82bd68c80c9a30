"""Synthetic head turns: the 3-D mean face, the pose fit, the warp, and the pipeline's use of them."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.tracker.geometry import template
from facetrack.io.landmarks import read_pts
from facetrack.train.data.augment import AugmentConfig
from facetrack.train.data.datasets import load_pseudo_dlib
from facetrack.train.data.pipeline import TrainingFaces
from facetrack.train.data.profile import MAX_YAW, Profiler, fit_pose, mean_shape_3d, yaw_of


def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _known_face() -> np.ndarray:
    """A symmetric 3-D face: the template's 2-D layout, depth falling off from the nose."""
    t = template(112).astype(np.float64)
    t -= t.mean(0)
    z = 30.0 - 0.02 * (t[:, 0] ** 2) - 0.005 * (t[:, 1] ** 2)
    z[27:36] += 12.0  # the nose stands out
    return np.column_stack([t, z])


def _aligned_error(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance of two (68, 3) shapes after centring and unit RMS radius (same frame)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    a /= np.sqrt((a ** 2).sum(1).mean())
    b /= np.sqrt((b ** 2).sum(1).mean())
    return float(np.sqrt(((a - b) ** 2).sum(1).mean()))


def test_the_mean_face_and_each_pose_are_recovered_from_2d_shapes_alone() -> None:
    face = _known_face()
    rng = np.random.default_rng(0)
    shapes, yaws = [], []
    for _ in range(300):
        yaw = rng.uniform(-40, 40)
        r = _rot(yaw, rng.uniform(-15, 15), rng.uniform(-10, 10))
        shapes.append(rng.uniform(1, 3) * face @ r[:2].T + rng.uniform(50, 300, 2) + rng.normal(0, 0.2, (68, 2)))
        yaws.append(yaw)
    model = mean_shape_3d(shapes)
    assert _aligned_error(model, face) < 0.03
    assert model[30, 2] > model[[0, 16], 2].mean()  # the nose tip is in front
    got = [yaw_of(fit_pose(s, model)[1]) for s in shapes[:40]]
    assert np.abs(np.array(got) - np.array(yaws[:40])).max() < 3.0
    assert 0.3 < np.ptp(face[:, 2]) / np.ptp(face[:, 0]) < 2.0  # a face as deep as real ones
    with pytest.raises(ValueError, match="at least 10"):
        mean_shape_3d(shapes[:5])
    # one pose fixes no depth: refused rather than a degenerate face
    frontal = [face[:, :2] * rng.uniform(1, 3) + rng.normal(0, 0.2, (68, 2)) for _ in range(50)]
    with pytest.raises(ValueError, match="vary too little"):
        mean_shape_3d(frontal)


def test_a_turn_moves_the_picture_with_the_landmarks(data_dir: Path) -> None:
    root = data_dir / "pseudo_v2"
    pts = sorted((root / "images").glob("*.pts"))[:200]
    profiler = Profiler.from_shapes([read_pts(p) for p in pts])
    lm = read_pts(pts[0])
    image = cv2.imread(str(pts[0].with_suffix(".jpg")), cv2.IMREAD_GRAYSCALE)
    marked = image.copy()
    for i in (30, 36, 45, 48, 54):  # bright marks on the nose tip, eye and mouth corners
        cv2.circle(marked, tuple(int(round(v)) for v in lm[i]), 2, 255, -1)
    t = profiler.turn(marked, lm, 30.0)
    assert abs(t.yaw_after - t.yaw_before - 30.0) < 1e-6
    moved = np.linalg.norm(t.landmarks - lm, axis=1)
    assert moved[30] > 3.0  # the nose moved
    for i in (30, 36, 45, 48, 54):  # ... and the marks moved with their points
        x, y = np.round(t.landmarks[i]).astype(int)
        assert t.image[y - 1 : y + 2, x - 1 : x + 2].max() >= 250, i
    back = profiler.turn(t.image, t.landmarks, -30.0)
    assert np.abs(back.landmarks - lm).max() < 0.15 * np.linalg.norm(lm[36] - lm[45])
    # the face's own layout decides the sense: yaw_of grows in the sense it was turned
    again = profiler.depths(t.landmarks)[1]
    assert again > t.yaw_before + 15.0


def test_random_turns_go_away_from_the_front_and_stop_at_the_limit(data_dir: Path) -> None:
    root = data_dir / "pseudo_v2"
    pts = sorted((root / "images").glob("*.pts"))[:200]
    profiler = Profiler.from_shapes([read_pts(p) for p in pts])
    rng = np.random.default_rng(1)
    lm = read_pts(pts[3])
    image = cv2.imread(str(pts[3].with_suffix(".jpg")))
    for _ in range(5):
        t = profiler.random_turn(image, lm, rng, 20.0, 55.0)
        assert t.image.shape == image.shape and t.image.dtype == np.uint8
        assert abs(t.yaw_after) >= abs(t.yaw_before) and abs(t.yaw_after) <= MAX_YAW + 1e-6
        assert abs(t.yaw_after - t.yaw_before) >= min(20.0, MAX_YAW - abs(t.yaw_before)) - 1e-6


def test_the_pipeline_turns_the_given_share_and_leaves_other_runs_unchanged(data_dir: Path) -> None:
    faces = load_pseudo_dlib(data_dir)[:12]
    plain = TrainingFaces(faces, 112, AugmentConfig(p_negative=0.0), 2.0 * 0.35 * 112)
    off = TrainingFaces(faces, 112, AugmentConfig(p_negative=0.0, p_profile=0.0), 2.0 * 0.35 * 112)
    on = TrainingFaces(faces, 112, AugmentConfig(p_negative=0.0, p_profile=1.0), 2.0 * 0.35 * 112)
    assert plain.profiler is None and on.profiler is not None
    turned = 0
    for i in range(12):
        a, b, c = plain[(i, 7 + i)], off[(i, 7 + i)], on[(i, 7 + i)]
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # p_profile 0: the batches of before
        # turned: the same crop framing, a larger yaw
        ya = abs(yaw_of(fit_pose(a[1], on.profiler.model)[1]))
        yc = abs(yaw_of(fit_pose(c[1], on.profiler.model)[1]))
        turned += yc > ya + 10.0
    assert turned >= 10
