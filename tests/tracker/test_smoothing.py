"""One Euro filter: less jitter at rest, little lag in motion, resolution independence."""
from __future__ import annotations

import numpy as np
import pytest

from facetrack.io.landmarks import read_pts
from facetrack.tracker.geometry import face_size
from facetrack.tracker.smoothing import OneEuroFilter

FPS = 30.0


@pytest.fixture(scope="module")
def shape(data_dir) -> np.ndarray:
    return read_pts(sorted((data_dir / "images68" / "helen_test").glob("*.pts"))[0])


def _run(f: OneEuroFilter, seq: np.ndarray) -> np.ndarray:
    return np.stack([f(x, i / FPS) for i, x in enumerate(seq)])


def test_reduces_jitter_on_noisy_constant_signal(shape):
    rng = np.random.default_rng(0)
    size = face_size(shape)
    noisy = shape[None] + rng.normal(0, 0.01 * size, (120, 68, 2)).astype(np.float32)
    out = _run(OneEuroFilter(min_cutoff=1.0, beta=10.0), noisy)
    err_in = np.abs(noisy[30:] - shape).mean()
    err_out = np.abs(out[30:] - shape).mean()
    step_in = np.abs(np.diff(noisy[30:], axis=0)).mean()
    step_out = np.abs(np.diff(out[30:], axis=0)).mean()
    assert err_out < 0.6 * err_in  # measured 0.44
    assert step_out < 0.35 * step_in  # measured 0.22


def test_little_lag_on_ramp(shape):
    size = face_size(shape)
    speed = 1.0 * size  # one face size per second: a quick head movement
    t = np.arange(60) / FPS
    ramp = shape[None] + (speed * t)[:, None, None] * np.array([1.0, 0.0], np.float32)
    out = _run(OneEuroFilter(min_cutoff=1.0, beta=10.0), ramp.astype(np.float32))
    lag = np.abs(out[30:, :, 0] - ramp[30:, :, 0]).mean()
    assert lag < 0.03 * size  # under 3 % of the face size behind
    slow = _run(OneEuroFilter(min_cutoff=1.0, beta=0.0), ramp.astype(np.float32))  # beta=0: a plain low-pass
    assert lag < 0.3 * np.abs(slow[30:, :, 0] - ramp[30:, :, 0]).mean()


def test_same_behaviour_at_any_resolution(shape):
    rng = np.random.default_rng(1)
    seq = shape[None] + np.cumsum(rng.normal(0, 1.0, (40, 68, 2)), 0).astype(np.float32)
    small = _run(OneEuroFilter(), seq)
    big = _run(OneEuroFilter(), seq * 4.0)
    np.testing.assert_allclose(big, small * 4.0, rtol=1e-4, atol=1e-2)


def test_first_sample_passes_and_reset(shape):
    f = OneEuroFilter()
    np.testing.assert_array_equal(f(shape, 0.0), shape)
    moved = f(shape + 10.0, 1 / FPS)
    assert np.all(moved[:, 0] < shape[:, 0] + 10.0)  # filtered
    f.reset()
    np.testing.assert_array_equal(f(shape + 10.0, 2 / FPS), shape + 10.0)


def test_bad_parameters():
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(ValueError):
        OneEuroFilter(beta=-1.0)


def _moving_face(shape: np.ndarray, frames: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A still expression under a smooth similarity motion (turning 20 degrees, shrinking 10 %
    and travelling one face size in 3 s), and the same with fit-like noise (1.5 % of the face
    size per point and frame)."""
    size = face_size(shape)
    c = shape.mean(0)
    truth = []
    for k in range(frames):
        u = k / (frames - 1)
        a, s = np.deg2rad(20.0) * u, 1.0 - 0.1 * u
        r = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        truth.append((shape - c) @ r.T + c + np.array([size * u, 0.3 * size * np.sin(np.pi * u)]))
    truth = np.array(truth, np.float64)
    noisy = truth + np.random.default_rng(seed).normal(0, 0.015 * size, truth.shape)
    return truth, noisy


def test_pose_shape_filter_steadies_a_moving_face_more_than_per_point_filtering(shape):
    from facetrack.eval.metrics import flicker, nme
    from facetrack.tracker.smoothing import PoseShapeFilter

    truth, noisy = _moving_face(shape)
    split = _run(PoseShapeFilter(1.0, 40.0, 1.0, 10.0), noisy)
    points = _run(OneEuroFilter(1.0, 40.0), noisy)
    f_in, f_split, f_points = flicker(noisy, truth), flicker(split, truth), flicker(points, truth)
    err = lambda seq: float(np.mean([nme(p, g) for p, g in zip(seq[10:], truth[10:])]))  # noqa: E731
    # measured: flicker 5.3 % in, 4.0 % per point, 1.6 % split; error 3.4 %, 2.8 %, 1.7 %
    assert f_split < 0.7 * f_points < 0.7 * f_in, (f_in, f_points, f_split)
    assert err(split) < err(points) < err(noisy), (err(noisy), err(points), err(split))


def test_pose_shape_filter_follows_a_fast_expression_without_moving_the_head(shape):
    """The mouth opens by 20 % of the face size in 0.2 s while the head is still: the shape
    part follows it (little lag, shape beta), and the eyes stay where they are."""
    from facetrack.tracker.smoothing import PoseShapeFilter

    size = face_size(shape)
    seq = np.repeat(shape[None].astype(np.float64), 40, 0)
    opening = np.clip((np.arange(40) - 10) / 6.0, 0.0, 1.0)  # frames 10-16
    seq[:, 57:60, 1] += (0.2 * size * opening)[:, None]  # lower lip and chin side of the mouth
    seq[:, 65:68, 1] += (0.2 * size * opening)[:, None]
    out = _run(PoseShapeFilter(), seq)
    lip_lag = np.abs(out[16:30, 57, 1] - seq[16:30, 57, 1]).max()
    # measured 1.7 % of the face size (per-point filtering at beta 40: 0.5 %, the price of steadier shapes)
    assert lip_lag < 0.03 * size, lip_lag / size
    eyes = np.abs(out[:, 36:48] - seq[:, 36:48]).max()
    assert eyes < 0.01 * size, eyes / size  # measured 0.3 %


def test_pose_shape_filter_first_sample_reset_and_resolution(shape):
    from facetrack.tracker.smoothing import PoseShapeFilter

    f = PoseShapeFilter()
    np.testing.assert_array_equal(f(shape, 0.0), shape.astype(np.float32))
    moved = f(shape + 10.0, 1 / FPS)
    assert np.all(moved[:, 0] < shape[:, 0] + 10.0)  # filtered, behind the jump
    bad = shape.copy()
    bad[3, 0] = np.nan
    assert np.isnan(f(bad, 2 / FPS)[3, 0])  # passed through, and the history is gone:
    np.testing.assert_array_equal(f(shape + 20.0, 3 / FPS), (shape + 20.0).astype(np.float32))
    _, noisy = _moving_face(shape, 30)
    np.testing.assert_allclose(_run(PoseShapeFilter(), noisy * 4.0), _run(PoseShapeFilter(), noisy) * 4.0, rtol=1e-4, atol=2e-2)
    with pytest.raises(ValueError, match=r"needs \(68, 2\) landmarks"):
        f(shape[:10], 4 / FPS)


def test_moving_the_filter_with_the_face_removes_its_lag_and_keeps_it_steady(shape):
    """Told how the face moved (here the true similarity between frames, as the flow measures
    it), the pose filter smooths a fit's jitter (the whole face shaken by 1.5 % of its size,
    as fits shake) without lagging: less error and less flicker than the same filter unmoved,
    and than a faster unmoved filter."""
    from facetrack.tracker.geometry import umeyama
    from facetrack.eval.metrics import flicker, nme
    from facetrack.tracker.smoothing import PoseShapeFilter

    truth, _ = _moving_face(shape)
    rng = np.random.default_rng(3)
    size = face_size(shape)
    shake = rng.normal(0, 0.015 * size, (len(truth), 1, 2)) + rng.normal(0, 0.003 * size, truth.shape)
    noisy = truth + shake
    moved_filter, still_filter = PoseShapeFilter(1.0, 10.0), PoseShapeFilter(1.0, 10.0)
    moved, still = [], []
    for k, x in enumerate(noisy):
        if k:
            moved_filter.move(umeyama(truth[k - 1], truth[k]))
        moved.append(moved_filter(x, k / FPS))
        still.append(still_filter(x, k / FPS))
    fast = _run(PoseShapeFilter(1.0, 40.0), noisy)
    err = lambda seq: float(np.mean([nme(p, g) for p, g in zip(seq[10:], truth[10:])]))  # noqa: E731
    # measured: error 3.5 % in, 1.8 % moved, 2.6 % unmoved, 2.9 % unmoved at beta 40; flicker 5.1, 1.5, 2.7, 3.8 %
    assert err(moved) < 0.75 * min(err(still), err(fast)), (err(moved), err(still), err(fast))
    assert flicker(moved, truth) < 0.8 * min(flicker(still, truth), flicker(fast, truth))


def test_one_euro_move_carries_the_state_and_does_nothing_before_a_sample(shape):
    f = OneEuroFilter(min_cutoff=0.1, beta=0.0)  # a slow low-pass: without the move it would stay behind
    f.move(np.array([[1.0, 0.0, 50.0], [0.0, 1.0, 0.0]]))  # nothing to move yet
    np.testing.assert_array_equal(f(shape, 0.0), shape)
    shift = np.array([[1.0, 0.0, 30.0], [0.0, 1.0, -20.0]])
    f.move(shift)
    np.testing.assert_allclose(f(shape + [30.0, -20.0], 1 / FPS), shape + [30.0, -20.0], atol=1e-3)


def test_a_fit_far_from_where_the_filter_expects_the_face_restarts_it_and_jitter_does_not(shape):
    """``reset_at``: motion the flow missed (here none is given to the filter) larger than that
    share of the face size is the head's: the fit passes through unfiltered, where a filter
    without the reset lags behind it; a fit's own jitter (1.5 % of the face size) never resets."""
    from facetrack.tracker.smoothing import PoseShapeFilter

    size = face_size(shape)
    rng = np.random.default_rng(5)
    jitter = shape + rng.normal(0, 0.015 * size, (40, 1, 2))
    f = PoseShapeFilter(1.0, 10.0, reset_at=0.1)
    out = _run(f, jitter)
    assert f.resets == 0 and np.abs(np.diff(out, axis=0)).mean() < 0.6 * np.abs(np.diff(jitter, axis=0)).mean()
    jump = shape + (0.3 * size, 0.0)  # a third of the face size in one frame, unseen by the flow
    assert np.array_equal(f(jump, 40 / FPS), jump.astype(np.float32)) and f.resets == 1
    g = PoseShapeFilter(1.0, 10.0)
    _run(g, jitter)
    behind = g(jump, 40 / FPS)
    # without the reset the report stays behind the head (measured: 0.065 of the face size, a fifth of the jump)
    assert (jump - behind)[:, 0].mean() > 0.04 * size
    with pytest.raises(ValueError):
        PoseShapeFilter(reset_at=-1)
