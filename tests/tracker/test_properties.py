"""Property-based tests (hypothesis) of the transforms, the markup and the metrics: random
similarities and random shapes. Kept to a few seconds with ``max_examples``."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from facetrack.tracker import geometry as g
from facetrack.io import landmarks as io
from facetrack.eval import metrics as mt
from facetrack.tracker.markup import mean_shape, mirror_landmarks

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def similarities(draw: st.DrawFn, rotation: bool = True) -> np.ndarray:
    scale = draw(st.floats(0.05, 20.0))
    angle = draw(st.floats(-np.pi, np.pi)) if rotation else 0.0
    tx, ty = draw(finite), draw(finite)
    return g.similarity_matrix(scale, angle, tx, ty)


@st.composite
def faces(draw: st.DrawFn) -> np.ndarray:
    """A plausible face: the mean shape under a random similarity plus per-point noise (float64)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    noise = draw(st.floats(0.0, 15.0))
    pose = draw(similarities())
    shape = mean_shape().astype(np.float64) + rng.normal(0, noise, (68, 2))
    return g.apply_affine(pose, shape).astype(np.float64)


@st.composite
def face_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    gt = draw(faces())
    iod = np.linalg.norm(gt[36] - gt[45])
    assume(iod > 1.0)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pred = gt + rng.normal(0, draw(st.floats(0.0, 0.3)) * iod, (68, 2))
    return pred, gt


point_clouds = arrays(np.float64, (68, 2), elements=finite)


@FAST
@given(face_pairs(), similarities(), st.sampled_from([68, 51, 49]), st.sampled_from(["outer", "pupil"]))
def test_nme_is_invariant_to_a_common_similarity(pair: tuple[np.ndarray, np.ndarray], t: np.ndarray,
                                                 points: int, norm: str) -> None:
    pred, gt = pair
    before = float(mt.nme(pred, gt, points=points, norm=norm))  # type: ignore[arg-type]
    after = float(mt.nme(g.apply_affine(t, pred), g.apply_affine(t, gt), points=points, norm=norm))  # type: ignore[arg-type]
    assert np.isfinite(before) and np.isfinite(after)
    assert abs(before - after) <= 1e-4 * max(1.0, before) + 1e-5


@FAST
@given(face_pairs(), similarities(rotation=False))
def test_diag_nme_is_invariant_to_scale_and_shift(pair: tuple[np.ndarray, np.ndarray], t: np.ndarray) -> None:
    # the box diagonal is not rotation invariant, so only scale and translation here
    pred, gt = pair
    before = float(mt.nme(pred, gt, norm="diag"))
    after = float(mt.nme(g.apply_affine(t, pred), g.apply_affine(t, gt), norm="diag"))
    assert abs(before - after) <= 1e-4 * max(1.0, before) + 1e-5


@FAST
@given(point_clouds, similarities())
def test_umeyama_recovers_and_inverts_a_similarity(x: np.ndarray, t: np.ndarray) -> None:
    assume(np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean()) > 1.0)  # not (nearly) a single point
    y = x @ t[:, :2].T + t[:, 2]  # float64, exact
    est = g.umeyama(x, y)
    inv = g.umeyama(y, x)
    tol = 1e-6 * (1 + np.abs(t).max())
    np.testing.assert_allclose(est, t, atol=tol)
    np.testing.assert_allclose(g.compose_affine(inv, t), [[1, 0, 0], [0, 1, 0]], atol=1e-6)


@FAST
@given(point_clouds, similarities())
def test_inverse_undoes_apply(x: np.ndarray, t: np.ndarray) -> None:
    back = g.apply_affine(g.invert_affine(t), g.apply_affine(t, x))
    # apply_affine returns float32: tolerance relative to the magnitudes involved
    span = max(1.0, float(np.abs(x).max()), float(np.abs(t[:, 2]).max()) / g.similarity_scale(t))
    np.testing.assert_allclose(back, x, atol=1e-5 * span)


@FAST
@given(faces(), similarities())
def test_crop_from_shape_undoes_the_pose_of_a_template(_: np.ndarray, t: np.ndarray) -> None:
    face = g.template(112).astype(np.float64) @ t[:, :2].T + t[:, 2]
    m = g.crop_from_shape(face, 112)
    np.testing.assert_allclose(g.compose_affine(m, t), [[1, 0, 0], [0, 1, 0]], atol=1e-6)


@FAST
@given(point_clouds, st.floats(1.0, 5000.0))
def test_mirror_twice_is_identity(x: np.ndarray, width: float) -> None:
    pts = x.astype(np.float32)
    once = mirror_landmarks(pts, width)
    np.testing.assert_allclose(mirror_landmarks(once, width), pts, atol=1e-3)
    # the mirrored set is the reflected set, point for point up to the permutation
    np.testing.assert_allclose(np.sort(once[:, 0]), np.sort(width - 1 - pts[:, 0]), atol=1e-3)


@FAST
@given(face_pairs())
def test_metrics_never_nan_for_non_degenerate_shapes(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, gt = pair
    for points in (68, 51, 49):
        for norm in ("outer", "pupil", "diag"):
            v = float(mt.nme(pred, gt, points=points, norm=norm))  # type: ignore[arg-type]
            assert np.isfinite(v) and v >= 0
    seq_p, seq_g = np.stack([gt, pred, gt]), np.stack([gt, gt, gt])
    j = mt.jitter(seq_p, seq_g)
    assert np.isfinite(j) and j >= 0
    assert np.isfinite(mt.jitter(seq_p))
    s = mt.summarize(mt.nme(seq_p, seq_g))
    assert all(np.isfinite(v) for v in s.values())


errors = arrays(np.float64, st.integers(1, 60), elements=st.floats(0.0, 0.5))


@FAST
@given(errors, st.floats(0.01, 0.3))
def test_auc_and_failure_are_rates(e: np.ndarray, threshold: float) -> None:
    a, f = mt.auc(e, threshold), mt.failure_rate(e, threshold)
    assert 0.0 <= a <= 1.0 and 0.0 <= f <= 1.0
    # every frame under the threshold is no failure, and its AUC share is positive
    assert f == np.mean(e > threshold)
    assert (a > 0) == bool((e < threshold).any())


@FAST
@given(errors, st.data())
def test_auc_decreases_and_failure_grows_when_errors_grow(e: np.ndarray, data: st.DataObject) -> None:
    grow = data.draw(arrays(np.float64, e.shape, elements=st.floats(0.0, 0.2)))
    worse = e + grow
    assert mt.auc(worse) <= mt.auc(e) + 1e-12
    assert mt.failure_rate(worse) >= mt.failure_rate(e)
    if (grow[e < mt.THRESHOLD - 1e-9] > 1e-9).any():
        assert mt.auc(worse) < mt.auc(e)
    t = np.linspace(0, 0.5, 21)
    assert (mt.ced(worse, t) <= mt.ced(e, t)).all()


@FAST
@given(arrays(np.float32, (68, 2), elements=st.floats(-5000, 5000, width=32)))
def test_pts_round_trip_random(x: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "r.pts"
        io.write_pts(p, x)
        # exact, except that the 1-based format's "+ 1" absorbs values below ~1e-13 px
        np.testing.assert_allclose(io.read_pts(p), x, rtol=0, atol=1e-12)
        big = np.abs(x) >= 1e-3
        np.testing.assert_array_equal(io.read_pts(p)[big], x[big])
        q = Path(d) / "r.ljson"
        io.write_ljson(q, x)
        np.testing.assert_array_equal(io.read_ljson(q), x)


@FAST
@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from([None, 1, 3, 4]),
       st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32]), st.integers(0, 2**32 - 1))
def test_to_gray_always_gives_uint8_grey(h: int, w: int, c: int | None, dtype: type, seed: int) -> None:
    shape = (h, w) if c is None else (h, w, c)
    rng = np.random.default_rng(seed)
    img = (rng.random(shape) * 255).astype(dtype)
    out = g.to_gray(img)
    assert out.shape == (h, w) and out.dtype == np.uint8
