"""New-face acceptance: one face found twice is the larger fit (issue 30)."""
from __future__ import annotations

import numpy as np

from facetrack.tracker.acquire import larger_of_same
from facetrack.tracker.checks import FaceChecks
from facetrack.tracker.config import TrackerConfig

SAME = FaceChecks(TrackerConfig()).same_face
B = lambda *v: np.array(v, np.float32)  # noqa: E731


def test_a_fit_inside_a_larger_one_gives_way_to_it() -> None:
    mouth, face, other = B(140, 200, 180, 230), B(60, 60, 260, 300), B(400, 60, 500, 180)
    # the mouth fit came first (a surer detection): the whole face takes its place, the other face keeps its own
    assert larger_of_same([mouth, other, face], SAME) == [2, 1]
    # the face first: the mouth is the same face and is dropped
    assert larger_of_same([face, mouth, other], SAME) == [0, 2]


def test_faces_that_do_not_clash_keep_their_order() -> None:
    a, b, c = B(0, 0, 50, 50), B(100, 0, 150, 50), B(200, 0, 250, 50)
    assert larger_of_same([c, a, b], SAME) == [0, 1, 2]
    assert larger_of_same([], SAME) == []


def test_a_large_fit_over_two_small_ones_replaces_both() -> None:
    eye_l, eye_r, face = B(100, 100, 130, 120), B(170, 100, 200, 120), B(60, 60, 240, 260)
    assert larger_of_same([eye_l, eye_r, face], SAME) == [2]
