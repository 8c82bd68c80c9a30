"""Hard cases of issue 30: start boxes off in size and place, enlarged and cut pictures."""
from __future__ import annotations

import numpy as np
import pytest

from facetrack.tracker.geometry import box_of
from facetrack.train.data.hard_cases import START_KINDS, cut_by_edge, enlarged, start_box, visible_box


def _face(side: float = 100.0, at: tuple[float, float] = (150.0, 120.0)) -> np.ndarray:
    rng = np.random.default_rng(3)
    pts = rng.uniform(0, side, (68, 2)).astype(np.float32)
    pts[0], pts[1] = (0, 0), (side, side)  # the tight box is exactly side x side
    return pts + np.float32(at)


@pytest.mark.parametrize("kind", sorted(START_KINDS))
def test_start_boxes_have_their_size_and_shift(kind: str) -> None:
    pts = _face()
    b0 = box_of(pts)
    (s0, s1), (d0, d1) = START_KINDS[kind]
    rng = np.random.default_rng(0)
    for _ in range(50):
        b = start_box(pts, kind, rng)
        side = (b[2:] - b[:2]) / (b0[2:] - b0[:2])
        assert s0 - 1e-9 <= side[0] <= s1 + 1e-9 and side[0] == pytest.approx(side[1])
        shift = np.linalg.norm(((b[:2] + b[2:]) - (b0[:2] + b0[2:])) / 2) / 100.0
        assert d0 - 1e-9 <= shift <= d1 + 1e-9


def test_enlarged_face_fills_the_frame_and_keeps_its_landmarks() -> None:
    img = np.zeros((300, 400), np.uint8)
    pts = _face()
    x, y = np.round(pts[10]).astype(int)
    img[y - 1 : y + 2, x - 1 : x + 2] = 255  # a bright dot under one landmark
    rng = np.random.default_rng(1)
    for _ in range(5):
        p = enlarged(img, pts, rng)
        h, w = p.image.shape[:2]
        assert 0.99e6 <= h * w <= 3.01e6
        fill = (box_of(p.landmarks)[2:] - box_of(p.landmarks)[:2]).max() / min(h, w)
        assert 0.6 - 1e-6 <= fill <= 0.95 + 1e-6
        assert (p.landmarks >= -1).all() and (p.landmarks[:, 0] <= w) .all() and (p.landmarks[:, 1] <= h).all()
        qx, qy = np.round(p.landmarks[10]).astype(int)
        assert p.image[qy, qx] > 200  # the dot moved with its landmark


def test_cut_by_edge_cuts_the_face_and_keeps_the_points_outside() -> None:
    img = np.zeros((300, 400), np.uint8)
    pts = _face()
    rng = np.random.default_rng(2)
    for _ in range(8):
        c = cut_by_edge(img, pts, rng)
        h, w = c.image.shape[:2]
        outside = ((c.landmarks[:, 0] < 0) | (c.landmarks[:, 0] >= w) | (c.landmarks[:, 1] < 0) | (c.landmarks[:, 1] >= h))
        assert outside.any() and not outside.all()
        vb = visible_box(c.landmarks, c.image.shape)
        assert 0 <= vb[0] < vb[2] <= w - 1 and 0 <= vb[1] < vb[3] <= h - 1
        # the cut removes 15-40 % of the face's box along one side
        full = box_of(c.landmarks)
        kept = (vb[2] - vb[0]) * (vb[3] - vb[1]) / ((full[2] - full[0]) * (full[3] - full[1]))
        assert 0.55 <= kept <= 0.86
