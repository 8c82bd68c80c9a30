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


def _shape(side: float, at: tuple[float, float]) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.uniform(0, side, (68, 2)) + np.array(at)).astype(np.float32)


def test_scales_agree_on_the_face_and_not_on_a_part_of_it() -> None:
    from facetrack.tracker.acquire import scaled_box, scales_agree

    face = _shape(100, (50, 50))
    near = face * 1.05 + 2.0  # the same face, refitted a little larger and moved 2 px
    assert scales_agree(face, [near, face])
    mouth = _shape(30, (85, 110))
    # refitted from boxes around the mouth fit, the model finds the whole face: no agreement
    assert not scales_agree(mouth, [face, mouth])
    assert not scales_agree(face, [face + 40.0])  # same size, but moved by 40 % of the face
    assert not scales_agree(face, [np.full((68, 2), np.nan, np.float32)])
    b = scaled_box(np.array([[0, 0], [10, 20]], np.float32), 1.5)
    np.testing.assert_allclose(b, [-2.5, -5.0, 12.5, 25.0])
