"""Optical flow of a face between two frames: the similarity it moved by, or no answer."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from facetrack.tracker.geometry import apply_affine, face_size, similarity_matrix
from facetrack.io.landmarks import read_pts
from facetrack.tracker.motion import face_motion


@pytest.fixture(scope="module")
def face(data_dir):
    """A real annotated face: (grey image, (68, 2) landmarks)."""
    pts = sorted((data_dir / "images68" / "helen_test").glob("*.pts"))[0]
    img = cv2.imread(str(next(pts.parent.glob(pts.stem + ".*g"))), cv2.IMREAD_GRAYSCALE)
    return img, read_pts(pts)


def _moved(gray: np.ndarray, shape: np.ndarray, scale: float, deg: float, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``gray`` moved by a similarity about the face's centre, and that similarity."""
    c = shape.mean(0)
    m = similarity_matrix(scale, np.deg2rad(deg), 0.0, 0.0)
    m[:, 2] = c - m[:, :2] @ c + np.asarray(shift)
    return cv2.warpAffine(gray, m, gray.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), m


@pytest.mark.parametrize("zoom", [0.5, 1.0, 2.0])  # a small face (no shrinking), the picture as it is, a close-up
@pytest.mark.parametrize("scale,deg,shift", [(1.0, 0.0, (6.0, -4.0)), (1.03, 3.0, (-5.0, 2.0)), (0.97, -2.0, (0.0, 9.0))])
def test_recovers_the_similarity_a_face_moved_by(face, zoom, scale, deg, shift):
    gray, shape = face
    gray = cv2.resize(gray, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
    shape = shape * zoom
    moved, truth = _moved(gray, shape, scale, deg, tuple(zoom * np.asarray(shift)))
    m = face_motion(gray, moved, shape)
    assert m is not None
    err = np.linalg.norm(apply_affine(m, shape) - apply_affine(truth, shape), axis=1).mean() / face_size(shape)
    assert err < 0.005, err  # measured at most 0.19 % of the face size; the fits' own error per frame is several times that


def test_says_nothing_where_there_is_nothing_to_follow(face):
    gray, shape = face
    moved, _ = _moved(gray, shape, 1.0, 0.0, (5.0, 0.0))
    flat = np.full_like(gray, 128)
    assert face_motion(flat, flat, shape) is None  # no texture
    assert face_motion(gray, np.ascontiguousarray(moved[:, :-1]), shape) is None  # frames of different sizes
    assert face_motion(gray, moved, shape + 10 * max(gray.shape)) is None  # the face is off the frame
    bad = shape.copy()
    bad[0] = np.nan
    assert face_motion(gray, moved, bad) is None
    noise = np.random.default_rng(0).integers(0, 255, gray.shape, dtype=np.uint8)
    assert face_motion(gray, noise, shape) is None  # the next frame shows something else: no points agree
