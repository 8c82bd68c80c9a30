"""The confidence report's figures by hand: AUC, reliability table, error rates, threshold."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from facetrack.train.loops.confidence import choose_threshold, error_rates, refit_head, reliability_table, report, roc_auc


def _pairwise_auc(s: np.ndarray, y: np.ndarray) -> float:
    pos, neg = s[y], s[~y]
    return float(np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]))


def test_roc_auc_by_hand_and_against_pairs() -> None:
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0], bool)) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0], bool)) == 0.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0], bool)) == 0.5
    assert math.isnan(roc_auc(np.array([0.5, 0.6]), np.array([1, 1], bool)))
    rng = np.random.default_rng(0)
    s = np.round(rng.random(60), 1)  # many ties
    y = rng.random(60) < 0.4
    assert roc_auc(s, y) == pytest.approx(_pairwise_auc(s, y))


def test_reliability_table_by_hand() -> None:
    c = np.array([0.05, 0.15, 0.95, 1.0, 0.92])
    good = np.array([0, 0, 1, 1, 0], bool)
    rows = reliability_table(c, good, np.array([0.0, 0.5, 1.0]))
    assert [r["fits"] for r in rows] == [2, 3]  # 1.0 falls in the last bin
    assert rows[0]["share_good"] == 0.0 and rows[1]["share_good"] == pytest.approx(2 / 3)
    assert rows[1]["mean_confidence"] == pytest.approx((0.95 + 1.0 + 0.92) / 3)
    empty = reliability_table(c, good)[3]  # 0.3-0.4: no fits
    assert empty["fits"] == 0 and math.isnan(empty["share_good"])


def test_error_rates_and_threshold_by_hand() -> None:
    c = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.85, 0.2])
    good = np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)
    # at 0.5: bad fits 0.3, 0.85, 0.2 -> one accepted of three; good 0.4 rejected of five
    assert error_rates(c, good, 0.5) == pytest.approx((1 / 3, 1 / 5))
    ch = choose_threshold(c, good, max_false_accept=0.0)  # must reject the bad 0.85
    assert ch["threshold"] == pytest.approx(0.9) and ch["false_accept"] == 0.0 and ch["false_reject"] == pytest.approx(4 / 5)
    ch = choose_threshold(c, good, max_false_accept=0.34)  # one bad of three may pass: lowest such threshold
    assert ch["threshold"] == pytest.approx(0.4) and ch["false_reject"] == 0.0


def test_report_gathers_the_figures() -> None:
    rng = np.random.default_rng(1)
    e = rng.uniform(0.0, 0.2, 200)
    c = np.clip(1.0 - e * 5 + rng.normal(0, 0.05, 200), 0, 1)  # confidence falls with the error
    rep = report({"confidence": c, "nme": e, "drifted": e > 0.1}, 0.05)
    assert rep["fits"] == 200 and rep["auc"] > 0.9
    assert len(rep["reliability"]) == 10 and sum(r["fits"] for r in rep["reliability"]) == 200
    assert rep["chosen"]["false_accept"] <= 0.05


def test_refit_head_learns_outcomes_from_hidden_states() -> None:
    import torch

    from facetrack.train.models.registry import build_model, config_for

    torch.manual_seed(0)
    model = build_model(config_for("mdm-rt"))
    rng = np.random.default_rng(0)
    h = np.tanh(rng.normal(0, 1, (400, model.config.hidden_size))).astype(np.float32)
    y = h[:, 3] - 0.5 * h[:, 7] > 0.1  # outcomes that depend on two hidden units
    with torch.no_grad():
        before = torch.sigmoid(model.confidence_head(torch.from_numpy(h))).numpy().ravel()
    out = refit_head(model, h, y)
    with torch.no_grad():
        after = torch.sigmoid(model.confidence_head(torch.from_numpy(h))).numpy().ravel()
    assert out["loss_after"] < out["loss_before"] and out["fits"] == 400
    assert roc_auc(after, y) > 0.97 > roc_auc(before, y)
