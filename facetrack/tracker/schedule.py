"""When the tracker searches for new faces, in which copy of the frame, and how a search is
spread over frames (:class:`SearchSchedule`).

Searches run while fewer than ``max_faces`` faces are tracked: at once on a cut or a lost face,
then at intervals that start at ``detect_every`` frames and double (up to ``search_backoff``)
while searches find nothing; for ``search_after_loss`` frames after a face is lost they do not
double. Searches at a doubled interval, the search at a cut and the search after losing only
large faces look at a copy scaled by ``backoff_scale``; when the one at a cut leaves faces to
find, the full-size frame follows at the next frame. With a face tracked a search is spread
over frames, one of the detector's ``parts`` per frame, so no tracked frame waits for a whole
search. Why these rules, with the figures: docs/DETECTORS.md.
"""
from __future__ import annotations

from typing import Any


class SearchSchedule:
    """The search cycle's state. ``config``: a :class:`~facetrack.tracker.config.TrackerConfig`.
    ``parts`` (below): the detector's number of parts, one per frame while faces are tracked;
    read at each call, as a caller may swap the detector."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.eager_until = 0  # searches do not back off before this frame index (a face was lost)
        self.eager_scale = 1.0  # the scale of those searches (the half-size copy after losing a large face)
        self.start()

    def start(self, coarse: bool = False, then_full: bool = False) -> None:
        """Start a new search cycle at this frame, at the shortest interval. ``coarse``: the
        cycle looks at the ``backoff_scale`` copy; ``then_full``: when it leaves fewer than
        ``max_faces`` faces tracked, a cycle on the full frame follows at the next frame."""
        c = self.config
        self.interval = c.detect_every
        self.since = self.interval
        self.part = 0
        self.found = False
        coarse = coarse and c.backoff_scale < 1.0
        self.scale_now = c.backoff_scale if coarse else 1.0
        self.then_full = coarse and then_full

    def tick(self) -> None:
        """One more frame since the last cycle ended."""
        self.since += 1

    def due(self) -> bool:
        """Whether this frame searches (given that a face slot is free): a cycle is under way or
        its interval has passed."""
        return self.part > 0 or self.since >= self.interval

    def scale(self) -> float:
        """The scale of the copy this frame's part of the search looks at: ``backoff_scale``
        once the interval has doubled (faces missed at full size are seldom found at the next
        search, and the copy costs a fraction; faces that come in are usually large), else the
        cycle's own (see :meth:`start`)."""
        return self.config.backoff_scale if self.interval > self.config.detect_every else self.scale_now

    def whole_now(self, tracking: bool, parts: int) -> bool:
        """Whether this frame runs the whole cycle at once: no face is tracked, so no frame waits
        for it. Then the cycle's remaining parts are counted as done."""
        if tracking or self.part != 0:
            return False
        self.part = max(1, int(parts)) - 1
        return True

    def eager(self, until: int, scale: float) -> None:
        """A face was lost and not found around its last place: until frame index ``until`` the
        searches do not back off, and look at the copy of ``scale``."""
        self.eager_until, self.eager_scale = until, scale

    def end_part(self, found: bool, faces_left: bool, index: int, parts: int) -> None:
        """Count one part of the cycle (``found``: it found a face; ``faces_left``: fewer than
        ``max_faces`` faces are tracked; ``index``: frames processed). At the end of a cycle that
        found nothing the interval to the next one doubles (up to ``search_backoff``)."""
        c = self.config
        self.found |= found
        self.part += 1
        if self.part < max(1, int(parts)):
            return
        then_full, self.then_full, self.scale_now = self.then_full, False, 1.0
        if then_full and faces_left:
            self.part, self.since = 0, self.interval  # the full-size cycle at the next frame
            return
        if self.found:
            self.interval = c.detect_every
        elif index < self.eager_until:
            # a face just lost is likely still there: look again soon, in the copy its size allows
            self.interval, self.scale_now = c.detect_every, self.eager_scale
        else:
            self.interval = min(2 * self.interval, max(c.search_backoff, c.detect_every))
        self.part, self.since, self.found = 0, 0, False
