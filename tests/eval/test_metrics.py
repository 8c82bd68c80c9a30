"""Metrics against values worked out by hand on small arrays written here."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facetrack.eval import metrics as mt
from facetrack.io.landmarks import read_pts


def _face() -> np.ndarray:
    """A toy 68-point "face" with hand-chosen eyes and chin (float64).

    Eye A (36..41): (0,0) (2,-1) (4,-1) (6,0) (4,1) (2,1) -> centre (3, 0); eye B = eye A + (20, 0)
    -> centre (23, 0). Outer corners 36 = (0, 0), 45 = (26, 0): outer distance 26, pupil
    distance 20. Chin 8 = (13, 30), every other point (10, 5): tight box x 0..26, y -1..30.
    """
    g = np.full((68, 2), [10.0, 5.0])
    eye = np.array([[0, 0], [2, -1], [4, -1], [6, 0], [4, 1], [2, 1]], float)
    g[36:42] = eye
    g[42:48] = eye + [20, 0]
    g[8] = [13, 30]
    return g


def test_normalisers_by_hand() -> None:
    g = _face()
    assert mt.normaliser(g, "outer") == pytest.approx(26.0)
    assert mt.normaliser(g, "pupil") == pytest.approx(20.0)
    assert mt.normaliser(g, "diag") == pytest.approx(math.hypot(26, 31))
    with pytest.raises(ValueError, match="normalisation"):
        mt.normaliser(g, "iod")  # type: ignore[arg-type]
    batch = np.stack([g, 2 * g])
    np.testing.assert_allclose(mt.normaliser(batch), [26.0, 52.0])


def test_nme_by_hand_for_each_subset_and_norm() -> None:
    g = _face()
    p = g.copy()
    p[0] += [3, 4]  # jaw: error 5, in the 68 only
    p[60] += [6, 8]  # inner mouth corner: error 10, in 68 and 51, not in 49
    p[30] += [0, 2]  # nose tip: error 2, in all three
    assert mt.nme(p, g) == pytest.approx((5 + 10 + 2) / 68 / 26)
    assert mt.nme(p, g, points=51) == pytest.approx((10 + 2) / 51 / 26)
    assert mt.nme(p, g, points=49) == pytest.approx(2 / 49 / 26)
    assert mt.nme(p, g, norm="pupil") == pytest.approx(17 / 68 / 20)
    assert mt.nme(p, g, points=49, norm="diag") == pytest.approx(2 / 49 / math.hypot(26, 31))
    # the normaliser comes from the ground truth, not from the prediction
    q = g.copy()
    q[45] += [26, 0]
    assert mt.nme(q, g) == pytest.approx(26 / 68 / 26)
    assert mt.nme(g, g) == 0.0


def test_nme_batches_and_degenerate_gt() -> None:
    g = _face()
    p = g + [1.0, 0.0]
    out = mt.nme(np.stack([p, g]), np.stack([g, g]))
    np.testing.assert_allclose(out, [1 / 26, 0.0])
    bad = g.copy()
    bad[45] = bad[36]
    assert np.isnan(mt.nme(p, bad))


def test_nme_on_real_faces(data_dir: Path) -> None:
    gt = read_pts(data_dir / "images68/afw/134212_1.pts")
    iod = float(np.linalg.norm(gt[36] - gt[45]))
    # a shift of 1 % of the inter-ocular distance is an NME of 1 % for every subset
    p = gt + np.array([0.6, 0.8], np.float32) * 0.01 * iod
    for points in (68, 51, 49):
        assert mt.nme(p, gt, points=points) == pytest.approx(0.01, rel=1e-4)


ERRORS = np.array([0.0, 0.02, 0.04, 0.1, np.nan])


def test_auc_by_hand() -> None:
    # per-frame contributions max(0, 1 - e / 0.08): 1, 0.75, 0.5, 0, 0 (NaN is a failure)
    assert mt.auc(ERRORS) == pytest.approx(2.25 / 5)
    assert mt.auc(ERRORS, threshold=0.04) == pytest.approx(1.5 / 5)
    assert mt.auc([0.0, 0.0]) == 1.0
    assert mt.auc([0.5]) == 0.0
    assert math.isnan(mt.auc([]))


def test_auc_equals_the_area_under_the_ced() -> None:
    rng = np.random.default_rng(3)
    e = np.abs(rng.normal(0.04, 0.03, 500))
    t = np.linspace(0, 0.08, 8001)
    area = np.trapezoid(mt.ced(e, t), t) / 0.08
    assert mt.auc(e) == pytest.approx(area, abs=2e-3)


def test_failure_rate_by_hand() -> None:
    assert mt.failure_rate(ERRORS) == pytest.approx(2 / 5)  # 0.1 and NaN
    assert mt.failure_rate([0.08, 0.0800001]) == pytest.approx(0.5)  # at the threshold is no failure
    assert mt.failure_rate(ERRORS, threshold=0.01) == pytest.approx(4 / 5)
    assert math.isnan(mt.failure_rate([]))


def test_ced_by_hand() -> None:
    np.testing.assert_allclose(mt.ced(ERRORS, [0.0, 0.02, 0.05, 0.2]), [1 / 5, 2 / 5, 3 / 5, 4 / 5])
    np.testing.assert_allclose(mt.ced([], [0.1, 0.2]), [0.0, 0.0])
    c = mt.ced(np.random.default_rng(0).random(100), np.linspace(0, 1, 50))
    assert (np.diff(c) >= 0).all() and c[-1] == 1.0


def test_summarize_by_hand() -> None:
    s = mt.summarize(ERRORS)
    assert s["frames"] == 5
    assert s["mean"] == pytest.approx(0.04)  # finite frames only
    assert s["median"] == pytest.approx(0.03)
    assert s["auc"] == pytest.approx(0.45)
    assert s["failure"] == pytest.approx(0.4)


def test_aggregate_by_hand() -> None:
    per_video = {"a": np.array([0.01, 0.02]), "b": np.array([0.03, 0.10, 0.20, np.nan])}
    r = mt.aggregate(per_video)
    assert r["videos"] == 2 and r["frames"] == 6
    assert r["mean_pooled"] == pytest.approx((0.01 + 0.02 + 0.03 + 0.10 + 0.20) / 5)  # 0.072
    assert r["mean_of_videos"] == pytest.approx((0.015 + 0.11) / 2)  # 0.0625
    assert r["median_pooled"] == pytest.approx(0.03)
    assert r["auc"] == pytest.approx((0.875 + 0.75 + 0.625) / 6)
    assert r["failure"] == pytest.approx(3 / 6)
    empty = mt.aggregate({})
    assert empty["videos"] == 0 and empty["frames"] == 0 and math.isnan(empty["mean_pooled"])
    # a video with only failed frames counts in the pooled failure rate, not in the mean of means
    r2 = mt.aggregate({"a": np.array([0.02]), "lost": np.array([np.nan, np.nan])})
    assert r2["mean_of_videos"] == pytest.approx(0.02) and r2["failure"] == pytest.approx(2 / 3)


def _moving(t: int, velocity: tuple[float, float]) -> np.ndarray:
    return np.stack([_face() + np.array(velocity) * i for i in range(t)])


def test_jitter_constant_velocity() -> None:
    seq = _moving(6, (3.0, 4.0))
    assert mt.jitter(seq, seq) == pytest.approx(0.0, abs=1e-12)  # truth moves the same: no jitter
    assert mt.jitter(seq) == pytest.approx(5.0 / 26)  # no truth: all motion counts
    assert math.isnan(mt.jitter(seq[:1]))


def test_jitter_zig_zag() -> None:
    gt = _moving(7, (0.0, 0.0))
    sign = np.array([(-1) ** i for i in range(7)], float)[:, None, None]
    pred = gt + sign * np.array([0.5, 0.0])  # +-0.5 px in x: a 1 px step every frame
    assert mt.jitter(pred, gt) == pytest.approx(1.0 / 26)
    assert mt.jitter(pred) == pytest.approx(1.0 / 26)
    assert mt.jitter(pred, gt, norm=np.full(7, 10.0)) == pytest.approx(0.1)


def test_jitter_on_a_moving_face_counts_only_the_deviation() -> None:
    # truth moves 3 px right per frame; the prediction also zig-zags 2 px up and down
    gt = _moving(5, (3.0, 0.0))
    sign = np.array([(-1) ** i for i in range(5)], float)[:, None, None]
    pred = gt + sign * np.array([0.0, 1.0])
    assert mt.jitter(pred, gt) == pytest.approx(2.0 / 26)
    # a frozen prediction of a moving face is not steadier than the truth: it lags by 3 px a frame
    frozen = np.repeat(gt[:1], 5, axis=0)
    assert mt.jitter(frozen, gt) == pytest.approx(3.0 / 26)
    # moving the wrong way at the right speed is not "no jitter" either
    backwards = gt[::-1].copy()
    assert mt.jitter(backwards, gt) == pytest.approx(6.0 / 26)


def test_jitter_skips_lost_frames() -> None:
    gt = _moving(6, (0.0, 0.0))
    sign = np.array([(-1) ** i for i in range(6)], float)[:, None, None]
    pred = gt + sign * np.array([0.5, 0.0])
    pred[3] = np.nan  # lost: the steps 2->3 and 3->4 are left out
    assert mt.jitter(pred, gt) == pytest.approx(1.0 / 26)
    assert math.isnan(mt.jitter(np.full((3, 68, 2), np.nan)))


def test_nme_rejects_an_unknown_subset() -> None:
    with pytest.raises(ValueError, match="points must be one of"):
        mt.nme(_face(), _face(), points=66)


def test_flicker_is_zero_for_a_steady_error_and_counts_error_changes() -> None:
    gt = _moving(6, (3.0, 4.0))
    assert mt.flicker(gt, gt) == pytest.approx(0.0, abs=1e-12)
    off = gt + np.array([2.0, -1.0])  # wrong, but wrong the same way every frame: no flicker
    assert mt.flicker(off, gt) == pytest.approx(0.0, abs=1e-12)
    sign = np.array([(-1) ** i for i in range(6)], float)[:, None, None]
    zig = gt + sign * np.array([0.5, 0.0])  # the error flips by 1 px every frame
    assert mt.flicker(zig, gt) == pytest.approx(1.0 / 26)


def test_flicker_weighs_a_few_jumping_points_more_than_jitter() -> None:
    gt = _moving(3, (0.0, 0.0))
    pred = gt.copy()
    pred[1, :4] += [4.0, 0.0]  # 4 of 68 points jump 4 px in frame 1, then back
    step = math.sqrt(4 * 16 / 68) / 26  # RMS over points, per step; both steps alike
    assert mt.flicker(pred, gt) == pytest.approx(step)
    assert mt.jitter(pred, gt) == pytest.approx(4 * 4 / 68 / 26)
    assert mt.flicker(pred, gt) > mt.jitter(pred, gt)


def test_flicker_skips_lost_frames_and_checks_shapes() -> None:
    gt = _moving(6, (0.0, 0.0))
    sign = np.array([(-1) ** i for i in range(6)], float)[:, None, None]
    pred = gt + sign * np.array([0.5, 0.0])
    pred[3] = np.nan
    assert mt.flicker(pred, gt) == pytest.approx(1.0 / 26)
    assert math.isnan(mt.flicker(pred[:1], gt[:1]))
    with pytest.raises(ValueError, match="one shape"):
        mt.flicker(pred[:3], gt)


def test_gross_failures_by_hand() -> None:
    # errors 0.02, 0.05 (good), 0.10 (failed), 0.30 (gross), NaN (missed): failure 3/5, gross 2/5
    e = np.array([0.02, 0.05, 0.10, 0.30, np.nan])
    c = np.array([0.9, 0.2, 0.9, 0.7, np.nan])
    g = mt.gross_failures(e, c, accept=0.5)
    assert g["failure"] == pytest.approx(3 / 5) and g["failure_gross"] == pytest.approx(2 / 5)
    # only the 0.30 fit is reported at >= 0.5 with NME > 0.20; the missed face is no confident failure
    assert g["confident_failures"] == 1 and g["confident_failure_rate"] == pytest.approx(1 / 5)
    assert mt.gross_failures(e, c, accept=0.8)["confident_failures"] == 0  # 0.7 is under 0.8
    assert mt.gross_failures(e, c, accept=0.7)["confident_failures"] == 1  # at the threshold counts
    assert mt.confident_failures([0.2, 0.2000001], [1.0, 1.0], 0.5).tolist() == [False, True]  # at 20 % is no gross failure
    assert "confident_failures" not in mt.gross_failures(e)
    with pytest.raises(ValueError, match="one confidence per error"):
        mt.confident_failures(e, c[:2], 0.5)


def test_summarize_and_aggregate_report_gross_failures() -> None:
    s = mt.summarize(ERRORS)
    assert s["failure_gross"] == pytest.approx(1 / 5)  # only the NaN is over 20 %
    s = mt.summarize([0.01, 0.25, 0.5], confidence=[0.9, 0.9, 0.1])
    assert s["failure_gross"] == pytest.approx(2 / 3) and s["confident_failures"] == 1
    r = mt.aggregate({"a": np.array([0.01, 0.25]), "b": np.array([np.nan])})
    assert r["failure_gross"] == pytest.approx(2 / 3)
