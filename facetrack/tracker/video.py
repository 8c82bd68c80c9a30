"""Frame sources for the tracker: a video file or a camera, iterated as
``(index, timestamp_s, frame)`` with ``index`` 0-based, ``timestamp_s`` seconds from the start
of the video (files: ``index / fps``; cameras: wall-clock since opening) and ``frame`` a BGR
``uint8`` ``(H, W, 3)`` image as OpenCV decodes it.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

log = logging.getLogger(__name__)

# FFmpeg inside OpenCV prints its own complaints about damaged files on stderr ("moov atom not
# found", "Invalid NAL unit size", ...); facetrack reports them in one line naming the file and
# the frame. Read by OpenCV when its first FFmpeg capture opens; a user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


class VideoError(OSError):
    """A video or camera that cannot be used; the message is one line naming it."""


class VideoReadError(VideoError):
    """Reading failed before the end the frame count announced (a damaged file).

    ``index``: the 0-based index of the first frame that could not be read;
    ``expected``: the frame count the container announced.
    """

    def __init__(self, message: str, index: int, expected: int) -> None:
        super().__init__(message)
        self.index = index
        self.expected = expected


class _Capture:
    """What every frame source shares around its ``read()`` and ``cv2.VideoCapture``
    (``self._cap``): iteration until ``read()`` returns ``None``, ``close()`` and ``with``."""

    _cap: cv2.VideoCapture

    def read(self) -> tuple[int, float, np.ndarray] | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        while (item := self.read()) is not None:
            yield item

    def close(self) -> None:
        """Release the capture device or file."""
        self._cap.release()

    def __enter__(self) -> "_Capture":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoFile(_Capture):
    """A video file opened with ``cv2.VideoCapture``.

    Raises :class:`VideoError` for a missing file, a directory, an unreadable file, a file
    that is not a video, or a video with no frames. ``fps`` (frames per second; 30 when the
    container has none), ``frame_count`` (as the container announces it), ``width``, ``height``.
    Iterating yields frames from ``start`` (see :meth:`seek`) until the end; if frames stop
    more than one frame before ``frame_count``, :class:`VideoReadError` is raised after the
    last good frame.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        p = self.path
        if not p.exists():
            raise VideoError(f"{p}: no such file")
        if p.is_dir():
            raise VideoError(f"{p}: is a directory, not a video")
        if not os.access(p, os.R_OK):
            raise VideoError(f"{p}: not readable (permission denied)")
        if p.stat().st_size == 0:
            raise VideoError(f"{p}: empty file")
        self._cap = cv2.VideoCapture(str(p))
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoError(f"{p}: not a video OpenCV can read")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if np.isfinite(fps) and 0 < fps < 1000 else 30.0
        n = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(n) if np.isfinite(n) and n > 0 else 0
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        ok, first = self._cap.read()
        if not ok or first is None or first.size == 0:
            self._cap.release()
            raise VideoError(f"{p}: no frames could be decoded (not a video, or zero frames)")
        self._pending: np.ndarray | None = first
        self._next = 0

    @property
    def total(self) -> int | None:
        """Frames expected in all (``None`` when the container does not say)."""
        return self.frame_count or None

    def seek(self, index: int) -> None:
        """Continue from 0-based frame ``index``. Uses the container's seek when it lands
        exactly, else decodes forward from the start (slow but exact)."""
        index = int(index)
        if index < 0:
            raise ValueError(f"{self.path}: negative start frame {index}")
        if self.frame_count and index >= self.frame_count:
            raise VideoError(f"{self.path}: start frame {index} is past the end ({self.frame_count} frames)")
        if index == self._next:
            return
        self._pending = None
        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, index) and int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) == index:
            self._next = index
            return
        log.info("%s: inexact seek; decoding forward to frame %d", self.path, index)
        self._cap.release()
        self._cap = cv2.VideoCapture(str(self.path))
        for i in range(index):
            if not self._cap.grab():
                raise VideoError(f"{self.path}: could not reach frame {index} (stopped at {i})")
        self._next = index

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """The next ``(index, timestamp_s, frame)``, or ``None`` at the normal end.

        Raises :class:`VideoReadError` when frames stop early (see the class docstring).
        """
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                # containers' counts can be one off at the end; more than that is damage
                if self.frame_count and self._next < self.frame_count - 1:
                    raise VideoReadError(f"{self.path}: read failed at frame {self._next + 1} of {self.frame_count} "
                                         f"(1-based); the file may be damaged", self._next, self.frame_count)
                return None
        i = self._next
        self._next += 1
        return i, i / self.fps, frame


class Camera(_Capture):
    """A camera by index (``cv2.VideoCapture(index)``); timestamps are seconds since opening.

    Raises :class:`VideoError` ("camera N: cannot be opened") when there is no such camera.
    """

    def __init__(self, index: int) -> None:
        self.index = int(index)
        self.path = Path(f"camera {self.index}")
        cvlog = getattr(getattr(cv2, "utils", None), "logging", None)
        level = cvlog.getLogLevel() if cvlog is not None else None
        if cvlog is not None:  # OpenCV logs several lines per backend it tries; our error says it in one
            cvlog.setLogLevel(cvlog.LOG_LEVEL_SILENT)
        try:
            self._cap = cv2.VideoCapture(self.index)
        finally:
            if cvlog is not None:
                cvlog.setLogLevel(level)
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoError(f"camera {self.index}: cannot be opened")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.frame_count = 0
        self._t0 = time.monotonic()
        self._next = 0

    total = None

    def seek(self, index: int) -> None:
        """Cameras cannot seek; only ``index == 0`` is accepted."""
        if index:
            raise VideoError(f"camera {self.index}: cannot seek (--start needs a video file)")

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """The next frame, or ``None`` when the camera stops delivering."""
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        i = self._next
        self._next += 1
        return i, time.monotonic() - self._t0, frame


def open_source(video: str | os.PathLike | None = None, camera: int | None = None) -> VideoFile | Camera:
    """A :class:`VideoFile` for ``video`` or a :class:`Camera` for ``camera``."""
    if camera is not None:
        return Camera(camera)
    if video is None:
        raise ValueError("give a video file or a camera index")
    return VideoFile(video)
