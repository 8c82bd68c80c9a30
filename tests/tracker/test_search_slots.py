"""Which new faces take the free slots of a search."""
from __future__ import annotations

import pytest

from tests.tracker.test_tracker import BlobDetector, Det, make_tracker, scene


class SmallFirstDetector(BlobDetector):
    """The blob detector scoring small blobs higher: a detector surer of the smaller face."""

    def detect(self, gray):
        return [Det(d.box, 1e6 / d.score) for d in super().detect(gray)]


@pytest.mark.parametrize("max_faces, sides", [(1, [90]), (2, [40, 90])])
def test_with_fewer_slots_than_faces_the_largest_faces_are_kept(max_faces, sides):
    """Two faces, the detector surer of the small one: with ``max_faces=1`` the large face is
    reported (it was the small one); with a slot for each, both."""
    img = scene(((20, 20),), side=40, hw=(240, 320))
    img[100:190, 180:270] = 230  # the large face
    tr, _, _ = make_tracker(det=SmallFirstDetector(), max_faces=max_faces)
    faces = [f for f in tr.process(img).faces if f.success]
    got = sorted(int(round(f.box[2] - f.box[0])) for f in faces)
    assert len(got) == len(sides) and all(abs(g - s) <= 4 for g, s in zip(got, sorted(sides))), got
