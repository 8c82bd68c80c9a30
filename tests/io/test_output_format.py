"""The CSV row text: every value as ``%.3f``, x_0..x_67 then y_0..y_67, non-finite values as 0."""
from __future__ import annotations

import numpy as np

from facetrack.io.output import COLUMNS, Row, format_row


def _reference(frame, face_id, ts, conf, success, pts) -> str:
    """The row written one value at a time (what the layout means)."""
    pts = np.where(np.isfinite(pts), pts, 0.0)
    values = [f"{v:.3f}" for v in pts[:, 0]] + [f"{v:.3f}" for v in pts[:, 1]]
    return ",".join([str(frame), str(face_id), f"{ts:.3f}", f"{conf:.3f}", str(int(success)), *values]) + "\n"


def test_row_text_matches_the_layout_value_by_value():
    rng = np.random.default_rng(3)
    pts = (rng.normal(0, 300, (68, 2))).astype(np.float32)
    pts[0] = [0.0005, -0.0005]  # rounding and the sign of zero as %.3f writes them
    pts[1] = [1e7, -2.0625]
    line = format_row(Row(7, 2, 0.2335, 0.875, True, pts))
    assert line == _reference(7, 2, 0.2335, 0.875, True, pts.astype(np.float64))
    assert len(line.rstrip("\n").split(",")) == len(COLUMNS)
    x = line.split(",")[5:]
    assert x[0] == f"{float(pts[0, 0]):.3f}" and x[68] == f"{float(pts[0, 1]):.3f}"  # x_0 first, y_0 after the 68 xs


def test_non_finite_values_are_written_as_zero():
    pts = np.full((68, 2), 12.5, np.float32)
    pts[3] = [np.nan, np.inf]
    pts[4, 1] = -np.inf
    line = format_row(Row(1, 0, float("nan"), float("inf"), False, pts))
    assert line == _reference(1, 0, 0.0, 0.0, False, pts.astype(np.float64))
    assert "nan" not in line and "inf" not in line
