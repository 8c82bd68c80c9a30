"""One Euro filter: less jitter at rest, little lag in motion, resolution independence."""
from __future__ import annotations

import numpy as np
import pytest

from facetrack.tracker.io import read_pts
from facetrack.tracker.smoothing import OneEuroFilter, face_size

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
