"""The detector benchmark's scoring (facetrack/bench/detectors.py) and the paired CPU
benchmark's helpers (facetrack/bench/cpu.py), on hand-made boxes."""
from __future__ import annotations

import numpy as np

from facetrack.bench import cpu
from facetrack.bench.detectors import matches, score_frame

FACE = np.array([100, 100, 200, 200], np.float64)


def test_a_detection_matches_a_face_when_centres_cross_and_sizes_agree():
    assert matches(np.array([90, 110, 190, 215.0]), FACE)  # another box convention, same face
    assert not matches(np.array([160, 100, 260, 200.0]), FACE)  # its centre is outside the face
    assert not matches(np.array([130, 130, 170, 170.0]), FACE)  # inside, but 2.5x smaller
    assert not matches(np.array([0, 0, 300, 300.0]), FACE)  # around it, 3x larger


def test_each_face_takes_one_detection_and_ignore_boxes_count_neither_way():
    other = np.array([400, 100, 460, 160.0])
    ignore = np.array([600, 300, 640, 340.0])
    dets = [FACE + 2, FACE - 3, other + 1, ignore, np.array([0, 300, 50, 350.0])]
    found, false = score_frame(dets, [FACE, other], [ignore])
    # the second box on the same face is a duplicate, not a false face; the far box is false
    assert found == [True, True] and false == 1
    assert score_frame([], [FACE], []) == ([False], 0)


def test_cpu_median():
    assert cpu.median([3.0, 1.0, 2.0]) == 2.0 and cpu.median([4.0, 1.0, 2.0, 3.0]) == 2.5
