"""Drawing helpers: pure (a new image, input untouched), draw where asked, skip bad points."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.tracker import draw
from facetrack.tracker.geometry import template
from facetrack.io.landmarks import read_pts
from facetrack.tracker.markup import DRAW_EDGES


def _face(size: int = 300) -> np.ndarray:
    return template(size).astype(np.float64)


def _lit(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Whether the pixel nearest each point differs from black."""
    ij = np.round(pts).astype(int)
    return img[ij[:, 1], ij[:, 0]].reshape(len(pts), -1).max(1) > 0


def test_draw_landmarks_is_pure_and_draws_at_the_points() -> None:
    img = np.zeros((300, 300, 3), np.uint8)
    before = img.copy()
    pts = _face()
    out = draw.draw_landmarks(img, pts, color=(0, 255, 0), lines=False)
    assert out is not img and out.shape == img.shape and out.dtype == img.dtype
    assert np.array_equal(img, before)
    assert _lit(out, pts).all()
    # the point's centre pixel gets the colour, in the right channel only
    c = out[int(round(pts[30, 1])), int(round(pts[30, 0]))]
    assert c[1] > 200 and c[0] == 0 and c[2] == 0
    # far from every point nothing is drawn
    assert out[:20, :20].max() == 0 and out[-20:, -20:].max() == 0


def test_draw_landmarks_lines() -> None:
    img = np.zeros((300, 300, 3), np.uint8)
    pts = _face()
    only_lines = draw.draw_landmarks(img, pts, points=False, lines=True)
    mids = np.array([(pts[a] + pts[b]) / 2 for a, b in DRAW_EDGES])
    assert _lit(only_lines, mids).mean() > 0.95
    nothing = draw.draw_landmarks(img, pts, points=False, lines=False)
    assert nothing.max() == 0
    only_points = draw.draw_landmarks(img, pts, points=True, lines=False, radius=1)
    # jaw points are ~10 px apart: the midpoint between two stays dark without lines
    assert not _lit(only_points, mids[:16]).all()
    assert (only_lines > 0).sum() > (only_points > 0).sum()


def test_draw_landmarks_skips_non_finite_points() -> None:
    img = np.zeros((300, 300, 3), np.uint8)
    pts = _face()
    bad = pts.copy()
    bad[30] = np.nan
    bad[8] = [np.inf, 5.0]
    out = draw.draw_landmarks(img, bad, radius=1)
    keep = np.ones(68, bool)
    keep[[8, 30]] = False
    assert _lit(out, pts[keep]).all()  # the other 66 are still drawn
    # nothing drawn at the missing nose tip: its lines (29-30, 30-31, 30-35) are skipped too
    x, y = np.round(pts[30]).astype(int)
    assert out[y - 1:y + 2, x - 1:x + 2].max() == 0
    assert draw.draw_landmarks(img, np.full((68, 2), np.nan)).max() == 0
    # points too far to draw are skipped without an OpenCV overflow
    far = pts.copy()
    far[0] = [1e12, -1e12]
    assert _lit(draw.draw_landmarks(img, far), pts[1:]).all()


def test_draw_landmarks_other_inputs(data_dir: Path) -> None:
    grey = np.zeros((300, 300), np.uint8)
    out = draw.draw_landmarks(grey, _face(), color=(255, 255, 255))
    assert out.shape == grey.shape and _lit(out, _face()).all()
    # outside the image: nothing drawn, no error
    assert draw.draw_landmarks(grey, _face() + 5000).max() == 0
    # any count of points: points only
    five = np.array([[20, 20], [40, 40], [60, 60], [80, 80], [100, 100]], float)
    out5 = draw.draw_landmarks(grey, five, color=(255, 255, 255))
    assert _lit(out5, five).all() and not _lit(out5, (five[:-1] + five[1:]) / 2).any()
    assert draw.draw_landmarks(grey, np.zeros((0, 2))).max() == 0
    # a real image and its ground truth
    img = cv2.imread(str(data_dir / "images68/lfpw_test/image_0001.png"))
    gt = read_pts(data_dir / "images68/lfpw_test/image_0001.pts")
    shown = draw.draw_landmarks(img, gt, color=(0, 0, 255))
    ij = np.round(gt).astype(int)
    assert (shown[ij[:, 1], ij[:, 0]] != img[ij[:, 1], ij[:, 0]]).any(1).all()


def test_draw_box() -> None:
    img = np.zeros((100, 120, 3), np.uint8)
    out = draw.draw_box(img, (10, 30, 60, 80), color=(0, 0, 255), label="face 0.93")
    assert img.max() == 0 and out is not img
    for x, y in [(10, 30), (60, 30), (10, 80), (60, 80), (35, 30), (10, 55)]:
        assert out[y, x, 2] > 100, (x, y)
    assert out[55, 35].max() == 0  # inside stays empty
    assert out[10:26, 10:60].max() > 0  # the label above the box
    assert draw.draw_box(img, (np.nan, 0, 1, 1)).max() == 0
    assert draw.draw_box(img, (0, 0, 1)).max() == 0  # type: ignore[arg-type]


def test_draw_text() -> None:
    img = np.full((80, 200, 3), 128, np.uint8)
    out = draw.draw_text(img, ["fps 30.0", "faces 1"])
    assert (img == 128).all()
    assert (out[4:22, 8:80] > 200).any() and (out[4:22, 8:80] < 40).any()  # text and outline
    assert (out[24:40, 8:80] != 128).any()  # the second line, 18 px lower
    assert (out[50:, :] == 128).all()


@pytest.mark.parametrize("fn", ["draw_landmarks", "draw_box", "draw_text"])
def test_helpers_do_not_write_into_read_only_input(fn: str) -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img.setflags(write=False)
    args = {"draw_landmarks": (template(100),), "draw_box": ((5, 5, 50, 50),), "draw_text": (["x"],)}[fn]
    out = getattr(draw, fn)(img, *args)
    assert out.flags.writeable and out.max() > 0
