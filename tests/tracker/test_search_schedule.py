"""Which copy of the frame the tracker's searches look at after a cut and after a loss (with the
small fakes of test_tracker.py): the half-size copy when it is enough, the full frame when a
face may be too small for it."""
from __future__ import annotations

import numpy as np

from tests.tracker.test_tracker import BlobDetector, BlobLandmarker, make_tracker, scene


class SizedDetector(BlobDetector):
    """Finds bright squares of at least ``min_side`` px in the image it is given (a detector's
    smallest face), and records the size of every image it searched."""

    def __init__(self, min_side: int = 24) -> None:
        super().__init__()
        self.min_side, self.shapes = min_side, []

    def detect(self, gray):
        self.shapes.append(gray.shape)
        return [d for d in super().detect(gray) if d.box[2] - d.box[0] >= self.min_side]


FULL, HALF = (240, 320), (120, 160)


def test_cut_search_looks_at_the_half_size_copy_first_and_the_full_frame_only_when_needed():
    # a large face after the cut is found in the half-size copy: no full-size search follows
    det = SizedDetector()
    tr, _, _ = make_tracker(det=det, detect_every=100)
    rs = [tr.process(f) for f in [scene([(100, 80)])] + [np.zeros((240, 320, 3), np.uint8)] + [scene([(150, 100)])] * 3]
    assert [r.cut for r in rs] == [False, True, True, False, False]
    # frame 0 searches the full frame (no cut); the cut at 1 (black) finds nothing in the copy,
    # but frame 2 is a cut too: its own search starts in the copy again, and finds the face
    assert det.shapes == [FULL, HALF, HALF]
    assert [r.detector_ran for r in rs] == [True, True, True, False, False]
    assert rs[2].faces[0].state == "detected" and rs[3].faces[0].state == "tracking"
    np.testing.assert_allclose(rs[2].faces[0].box, [150, 100, 210, 160], atol=2.0)

    # a small face (30 px: 15 px in the copy, under the detector's 24) is found one frame later
    det = SizedDetector()
    tr, _, _ = make_tracker(det=det, detect_every=100)
    small = scene([(150, 100)], side=30)
    rs = [tr.process(f) for f in [scene([(100, 80)]), small, small, small]]
    assert det.shapes == [FULL, HALF, FULL] and rs[1].cut and not rs[1].faces[0].success
    assert rs[2].faces[0].state == "detected" and rs[3].faces[0].state == "tracking"
    np.testing.assert_allclose(rs[2].faces[0].box, [150, 100, 180, 130], atol=1.0)


def test_cut_with_room_for_more_faces_searches_the_full_frame_next():
    det = SizedDetector()
    tr, _, _ = make_tracker(det=det, max_faces=2, detect_every=100)
    both = scene([(40, 60), (220, 150)], side=30)
    both[60:120, 40:100] = 230  # the first face is large (60 px), the second small (30 px)
    rs = [tr.process(f) for f in [scene([]), both, both, both]]
    assert rs[1].cut and det.shapes == [FULL, HALF, FULL]
    assert [len([f for f in r.faces if f.success]) for r in rs] == [0, 1, 2, 2]
    assert sorted(f.state for f in rs[2].faces) == ["detected", "tracking"]


def test_loss_search_looks_at_the_half_size_copy_only_for_large_faces():
    for side, copy in ((60, HALF), (30, FULL)):  # 1/4 and 1/8 of the short side (coarse_min_face 1/6)
        det = SizedDetector(min_side=1)
        tr, _, _ = make_tracker(BlobLandmarker(), det=det, detect_every=100, cut_threshold=-2.0, reacquire_frames=0)
        rs = [tr.process(f) for f in [scene([(100, 80)], side=side), scene([])]]
        assert rs[1].faces[0].state == "lost" and rs[1].detector_ran
        assert det.shapes == [FULL, copy], side
    # with coarse_min_face 1 every loss searches the full frame
    det = SizedDetector(min_side=1)
    tr, _, _ = make_tracker(det=det, detect_every=100, cut_threshold=-2.0, reacquire_frames=0, coarse_min_face=1.0)
    [tr.process(f) for f in [scene([(100, 80)]), scene([])]]
    assert det.shapes == [FULL, FULL]


def test_backoff_scale_one_never_searches_twice_at_a_cut():
    det = SizedDetector()
    tr, _, _ = make_tracker(det=det, detect_every=100, backoff_scale=1.0)
    [tr.process(f) for f in [scene([(100, 80)]), np.zeros((240, 320, 3), np.uint8), np.zeros((240, 320, 3), np.uint8)]]
    assert det.shapes == [FULL, FULL]


def test_after_a_loss_searches_do_not_back_off_for_search_after_loss_frames():
    """A face lost (not at a cut) is searched for every ``detect_every`` frames for
    ``search_after_loss`` frames, in the half-size copy for a large face; then the interval
    doubles while nothing is found. Without it the interval doubles at once."""

    def searched(after_loss: int) -> tuple[list[int], list[tuple[int, int]]]:
        det = SizedDetector(min_side=1)
        tr, _, _ = make_tracker(det=det, detect_every=2, cut_threshold=-2.0, reacquire_frames=0, search_after_loss=after_loss)
        ran = [i for i, f in enumerate([scene([(100, 80)])] + [scene([])] * 24) if tr.process(f).detector_ran]
        return ran, det.shapes

    ran, shapes = searched(10)
    # lost at 1; every 2 frames until frame 11, then 4, 8 frames apart
    assert ran == [0, 1, 3, 5, 7, 9, 11, 15, 23], ran
    assert shapes[1:7] == [HALF] * 6  # the lost face was large (60 px of 240)
    assert searched(0)[0] == [0, 1, 5, 13], searched(0)[0]
