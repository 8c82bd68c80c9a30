"""The fast-motion benchmark: its motions are as fast as it says, and its lag has the right sign."""
from __future__ import annotations

import numpy as np

from facetrack.bench.fast_motion import fast_motions, score, summarise
from facetrack.tracker.geometry import template


def _path(mats):
    return np.array([m[:, 2] for m in mats])


def test_the_motions_are_as_fast_as_documented_and_stay_near_the_face():
    eye = 80.0
    centre = np.array([320.0, 240.0])
    m = fast_motions(90, eye, centre)
    pts = template(200).astype(np.float64) + centre - template(200).mean(0)
    for kind, top in (("pan", 0.56), ("shake", 0.45), ("drift", 0.05)):
        c = np.array([(pts @ a[:, :2].T + a[:, 2]).mean(0) for a in m[kind]])
        speed = np.linalg.norm(np.diff(c, axis=0), axis=1) / eye
        assert 0.7 * top < speed.max() <= top, (kind, speed.max())
        assert np.abs(c - centre).max() <= 1.2 * eye
    # the pan stops dead: a still frame right after a fast one
    c = _path(m["pan"])
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    assert steps[2] >= 0.5 * eye and steps[3] == 0.0


def test_lag_is_positive_behind_the_head_zero_on_it_and_negative_ahead():
    eye_pts = template(100).astype(np.float64)
    truth = np.stack([eye_pts + (5.0 * k, 0.0) for k in range(20)])
    on = score([[t] for t in truth], truth)
    behind = score([[truth[max(k - 1, 0)]] for k in range(20)], truth)
    ahead = score([[t + (5.0, 0.0)] for t in truth], truth)
    eye = float(np.linalg.norm(eye_pts[36] - eye_pts[45]))
    assert abs(summarise([on])["lag_pct"]) < 1e-9 and summarise([on])["nme_pct"] < 1e-9
    assert np.isclose(summarise([behind])["lag_pct"], 100 * 5.0 / eye)
    assert np.isclose(summarise([ahead])["lag_pct"], -100 * 5.0 / eye)
    assert summarise([behind])["moving_frames"] == 19
