"""What crosses threads in the app: frozen dataclasses and the one-slot frame queue.

No Qt here, so these are testable without a display. Images are BGR ``uint8`` ``(H, W, 3)``
numpy arrays; landmarks are ``float32`` ``(68, 2)`` (x, y) image pixels, 0-based.
An object is never changed after it is handed to another thread (the arrays included).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class SourceInfo:
    """An opened source. ``frame_count`` is 0 for a camera (not seekable)."""

    name: str
    width: int
    height: int
    fps: float
    frame_count: int = 0

    @property
    def seekable(self) -> bool:
        return self.frame_count > 0


@dataclass(frozen=True)
class FramePacket:
    """One captured frame. ``index``: 0-based frame number in the source; ``timestamp``: seconds
    (video time for a file, since opening for a camera); ``captured_at``: ``time.perf_counter()``
    when it was read, for the capture-to-display latency; ``cut``: a discontinuity before this
    frame (seek, new source), so the tracker must not carry state over it."""

    index: int
    timestamp: float
    image: np.ndarray
    captured_at: float
    cut: bool = False


@dataclass(frozen=True)
class FaceView:
    """One face as the window shows it (a copy of the tracker's ``FaceResult``); ``pose``: its
    :class:`facetrack.tracker.pose.HeadPose` (frozen, never changed), ``None`` without one."""

    face_id: int
    landmarks: np.ndarray
    confidence: float
    success: bool
    box: tuple[float, float, float, float] | None
    state: str  # "tracking" | "detected" | "lost"
    pose: Any = None


@dataclass(frozen=True)
class TrackedFrame:
    """A frame and what the tracker found in it, sent from the inference thread to the window.

    ``timings``: stage -> milliseconds from the tracker; ``latency_ms``: capture to result;
    ``fps``: results per second over the last second; ``dropped``: frames the one-slot queue
    dropped so far; ``model_loaded``: false when no tracker could be built (no faces then).
    """

    index: int
    timestamp: float
    image: np.ndarray
    faces: tuple[FaceView, ...]
    timings: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    fps: float = 0.0
    dropped: int = 0
    detector_ran: bool = False
    model_loaded: bool = True


@dataclass(frozen=True)
class DrawOptions:
    """Overlay toggles of the live view."""

    points: bool = True
    lines: bool = True
    box: bool = True
    info: bool = True
    axes: bool = True  # the head's axes from its pose


class OneSlotQueue(Generic[T]):
    """A queue of capacity one that keeps the newest item: ``put`` replaces a waiting item
    (counted in :attr:`dropped`), so a slow consumer always gets the freshest frame.

    Thread-safe. ``get(timeout)`` blocks up to ``timeout`` seconds and returns ``None`` on timeout
    or after :meth:`close`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> bool:
        """Store ``item``; returns True if it replaced (dropped) an item nobody had taken."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cond.notify_all()
            return replaced

    def get(self, timeout: float | None = None) -> T | None:
        """Take the waiting item (blocking up to ``timeout`` s; ``None`` = no wait)."""
        with self._cond:
            if self._item is None and not self._closed and timeout:
                self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def empty(self) -> bool:
        with self._cond:
            return self._item is None

    def clear(self) -> None:
        """Forget a waiting item without counting it as dropped (e.g. after a seek)."""
        with self._cond:
            self._item = None

    def close(self) -> None:
        """Wake every waiter; later ``get`` calls return what is left, then ``None``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
