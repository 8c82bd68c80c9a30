"""Frame sources for the app: a seekable video file or a camera, and the camera list.

Thin adapters over :mod:`facetrack.io.video` (the CLI's sources) with one error type for the
window (one line naming the file or camera and the problem). Frames are BGR ``uint8``
``(H, W, 3)``; indices are 0-based.
"""
from __future__ import annotations

import glob
import logging
import os
import sys

import cv2
import numpy as np

from facetrack.gui.frames import SourceInfo

log = logging.getLogger(__name__)


class SourceError(OSError):
    """A source that cannot be opened or read; the message names it and the problem."""


class VideoFileSource:
    """A video file (:class:`facetrack.io.video.VideoFile`) with a clamped ``seek``."""

    def __init__(self, path: str | os.PathLike) -> None:
        from facetrack.io.video import VideoError, VideoFile, display_name

        try:
            self._video = VideoFile(path)
        except VideoError as e:
            raise SourceError(str(e)) from None
        v = self._video
        self.info = SourceInfo(display_name(v.path.name), v.width, v.height, v.fps, max(v.frame_count, 1))

    @property
    def position(self) -> int:
        """0-based index of the frame the next :meth:`read` returns."""
        return self._video._next

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """Next frame as ``(index, timestamp_s, image)`` (video time: ``index / fps``), or
        ``None`` at the end of the file."""
        from facetrack.io.video import VideoError

        try:
            return self._video.read()
        except VideoError as e:
            raise SourceError(str(e)) from None

    def seek(self, index: int) -> None:
        """Make ``index`` (clamped to the file) the next frame :meth:`read` returns."""
        from facetrack.io.video import VideoError

        try:
            self._video.seek(int(min(max(index, 0), self.info.frame_count - 1)))
        except VideoError as e:
            raise SourceError(str(e)) from None

    def close(self) -> None:
        self._video.close()


class CameraSource:
    """A camera (:class:`facetrack.io.video.Camera`); not seekable. ``read`` raises
    :class:`SourceError` when the camera stops delivering frames (unplugged)."""

    def __init__(self, index: int) -> None:
        from facetrack.io.video import Camera, VideoError

        try:
            self._camera = Camera(index)
        except VideoError as e:
            raise SourceError(f"{e} (no such camera, or it is in use)") from None
        self.index = int(index)
        got = self._camera.read()
        if got is None:
            self._camera.close()
            raise SourceError(f"camera {index}: opened but delivers no frames")
        self._first: tuple[float, np.ndarray] | None = (got[1], got[2])
        h, w = got[2].shape[:2]
        self.info = SourceInfo(f"camera {index}", w, h, self._camera.fps, 0)
        self._next = 0

    @property
    def position(self) -> int:
        return self._next

    def read(self) -> tuple[int, float, np.ndarray]:
        """Next frame as ``(index, timestamp_s since opening, image)``."""
        if self._first is not None:
            (ts, frame), self._first = self._first, None
        else:
            got = self._camera.read()
            if got is None:
                raise SourceError(f"camera {self.index}: stopped delivering frames (unplugged?)")
            ts, frame = got[1], got[2]
        idx = self._next
        self._next += 1
        return idx, ts, frame

    def seek(self, index: int) -> None:
        raise SourceError(f"camera {self.index}: a camera cannot seek")

    def close(self) -> None:
        self._camera.close()


def list_cameras(max_index: int = 4) -> list[int]:
    """Indices of cameras that open. On Linux only ``/dev/video*`` nodes are tried (quick);
    elsewhere indices ``0..max_index-1`` are probed with OpenCV."""
    if sys.platform.startswith("linux"):
        candidates = sorted(int(p[len("/dev/video"):]) for p in glob.glob("/dev/video*") if p[len("/dev/video"):].isdigit())
    else:
        candidates = list(range(max_index))
    found = []
    for i in candidates[:max_index * 4]:
        cap = cv2.VideoCapture(i)
        try:
            if cap.isOpened():
                found.append(i)
        finally:
            cap.release()
    log.info("cameras found: %s", found)
    return found
