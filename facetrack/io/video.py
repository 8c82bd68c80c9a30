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


#: file suffixes taken as videos in a folder of recordings (lower case; a single file given by
#: name is opened whatever its suffix)
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg",
                                            ".wmv", ".flv", ".ts", ".mts", ".3gp", ".ogv"})


def videos_in(folder: str | os.PathLike) -> list[Path]:
    """The video files of ``folder`` (by :data:`VIDEO_SUFFIXES`, not its subfolders), sorted by
    name as bytes; empty for a file or a missing folder."""
    p = Path(folder)
    if not p.is_dir():
        return []
    return sorted((f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file()), key=lambda f: os.fsencode(f.name))


def display_name(path: str | os.PathLike) -> str:
    """``path`` as a one-line message shows it: bytes that are not UTF-8 (which Python keeps
    as surrogates) appear as ``\\xe9``, the way ``ls --quoting-style=escape`` writes them."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_utf8_name(path: str | os.PathLike) -> bool:
    """Whether OpenCV can take ``path`` by name. OpenCV's Python binding converts a ``str`` with
    ``PyUnicode_AsUTF8String`` and does not check for failure, so a name holding bytes that are
    not UTF-8 (surrogate escapes in Python) dereferences NULL and kills the process (SIGSEGV)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class OpenCvName:
    """A name under which OpenCV can open ``path`` (for reading) for as long as this object
    lives: the path itself when it is UTF-8, else ``/proc/self/fd/N`` of a descriptor opened
    here by the real name (Linux; elsewhere :class:`VideoError`). ``close()`` releases it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self._fd: int | None = None
        if is_utf8_name(path):
            self.name = str(path)
            return
        if not os.path.isdir("/proc/self/fd"):
            raise VideoError(f"{display_name(path)}: file name is not valid UTF-8, which OpenCV cannot open; rename the file")
        self._fd = os.open(path, os.O_RDONLY)
        self.name = f"/proc/self/fd/{self._fd}"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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

    ``threads``: FFmpeg's decoding threads (``None``: OpenCV's default, one per core). The
    default 1 decodes the same frames for less CPU: 1.5-2.0 against 2.1-2.2 ms per frame on
    ``sbr_demo_selfie.mp4`` and 0.55-0.77 against 0.85-0.95 ms on ``short_hamilton_clip.mp4``
    (2 loaded cores; the spare thread's hand-offs cost more than they save), at some wall time
    when nothing else runs. A backend that takes no thread count (not FFmpeg) opens with its defaults.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = 1) -> None:
        self.path = Path(path)
        p = display_name(self.path)
        self.name = p
        if not self.path.exists():
            raise VideoError(f"{p}: no such file")
        if self.path.is_dir():
            raise VideoError(f"{p}: is a directory, not a video")
        if not os.access(self.path, os.R_OK):
            raise VideoError(f"{p}: not readable (permission denied)")
        if self.path.stat().st_size == 0:
            raise VideoError(f"{p}: empty file")
        self._cv_name = OpenCvName(self.path)
        self.threads = threads
        self._cap = self._open()
        if not self._cap.isOpened():
            self.close()
            raise VideoError(f"{p}: not a video OpenCV can read")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if np.isfinite(fps) and 0 < fps < 1000 else 30.0
        n = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(n) if np.isfinite(n) and n > 0 else 0
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        ok, first = self._cap.read()
        if not ok or first is None or first.size == 0:
            self.close()
            raise VideoError(f"{p}: no frames could be decoded (not a video, or zero frames)")
        self._pending: np.ndarray | None = first
        self._next = 0

    def _open(self) -> cv2.VideoCapture:
        """A capture of the file with :attr:`threads` decoding threads where the backend takes them."""
        if self.threads is not None:
            # only FFmpeg reads CAP_PROP_N_THREADS; other backends refuse a parameter they do not know
            cap = cv2.VideoCapture(self._cv_name.name, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, int(self.threads)])
            if cap.isOpened():
                return cap
            cap.release()
        return cv2.VideoCapture(self._cv_name.name)

    @property
    def total(self) -> int | None:
        """Frames expected in all (``None`` when the container does not say)."""
        return self.frame_count or None

    def seek(self, index: int) -> None:
        """Continue from 0-based frame ``index``. Uses the container's seek when it lands
        exactly, else decodes forward from the start (slow but exact)."""
        index = int(index)
        if index < 0:
            raise ValueError(f"{self.name}: negative start frame {index}")
        if self.frame_count and index >= self.frame_count:
            raise VideoError(f"{self.name}: start frame {index} is past the end ({self.frame_count} frames)")
        if index == self._next:
            return
        self._pending = None
        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, index) and int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) == index:
            self._next = index
            return
        log.info("%s: inexact seek; decoding forward to frame %d", self.name, index)
        self._cap.release()
        self._cap = self._open()
        for i in range(index):
            if not self._cap.grab():
                raise VideoError(f"{self.name}: could not reach frame {index} (stopped at {i})")
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
                    raise VideoReadError(f"{self.name}: read failed at frame {self._next + 1} of {self.frame_count} "
                                         f"(1-based); the file may be damaged", self._next, self.frame_count)
                return None
        i = self._next
        self._next += 1
        return i, i / self.fps, frame

    def close(self) -> None:
        """Release the file (and the descriptor behind a non-UTF-8 name)."""
        super().close()
        self._cv_name.close()


class Camera(_Capture):
    """A camera by index (``0``) or device path (``/dev/video0``, opened through V4L2);
    timestamps are seconds since opening.

    Raises :class:`VideoError` ("camera N: cannot be opened", "/dev/video9: no such camera
    device") when there is no such camera.
    """

    def __init__(self, device: int | str) -> None:
        self.index: int | str = device if isinstance(device, int) else str(device)
        by_path = isinstance(self.index, str)
        self.name = display_name(self.index) if by_path else f"camera {self.index}"
        self.path = Path(self.index) if by_path else Path(self.name)
        if by_path and not os.path.exists(self.index):
            raise VideoError(f"{self.name}: no such camera device")
        if by_path and not is_utf8_name(self.index):
            raise VideoError(f"{self.name}: device name is not valid UTF-8, which OpenCV cannot open")
        cvlog = getattr(getattr(cv2, "utils", None), "logging", None)
        level = cvlog.getLogLevel() if cvlog is not None else None
        if cvlog is not None:  # OpenCV logs several lines per backend it tries; our error says it in one
            cvlog.setLogLevel(cvlog.LOG_LEVEL_SILENT)
        try:
            self._cap = cv2.VideoCapture(self.index, cv2.CAP_V4L2) if by_path else cv2.VideoCapture(self.index)
        finally:
            if cvlog is not None:
                cvlog.setLogLevel(level)
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoError(f"{self.name}: cannot be opened" + (" as a V4L2 camera" if by_path else ""))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.frame_count = 0
        self._t0 = time.monotonic()
        self._next = 0

    total = None

    def seek(self, index: int) -> None:
        """Cameras cannot seek; only ``index == 0`` is accepted."""
        if index:
            raise VideoError(f"{self.name}: cannot seek (--start needs a video file)")

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """The next frame, or ``None`` when the camera stops delivering."""
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        i = self._next
        self._next += 1
        return i, time.monotonic() - self._t0, frame


def camera_arg(text: str) -> int | str:
    """``--camera`` value: an index (``"0"`` -> ``0``) or a device path (``/dev/video0``)."""
    return int(text) if text.strip().isdigit() else text


def open_source(video: str | os.PathLike | None = None, camera: int | str | None = None,
                threads: int | None = 1) -> VideoFile | Camera:
    """A :class:`VideoFile` for ``video`` (``threads``: its decoding threads) or a :class:`Camera`
    for ``camera`` (index or path)."""
    if camera is not None:
        return Camera(camera)
    if video is None:
        raise ValueError("give a video file or a camera index")
    return VideoFile(video, threads=threads)


#: overlay container (by the file's suffix) -> codec. MP4 keeps its index at the end, so a
#: killed run leaves an MP4 nothing can open; Matroska and AVI stay playable up to the last
#: frames written (measured here: a run killed after 100 frames leaves 84 readable frames in
#: .mkv, 97 in .avi, none in .mp4). AVI uses Motion JPEG: every frame stands alone.
OVERLAY_CODECS: dict[str, str] = {".mkv": "mp4v", ".avi": "MJPG", ".mp4": "mp4v"}


def open_video_writer(path: str | os.PathLike, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """An OpenCV writer for ``path`` with the codec :data:`OVERLAY_CODECS` gives its suffix.

    Raises :class:`VideoError` for another suffix, a name OpenCV cannot take (not UTF-8), or a
    writer that does not open."""
    name = display_name(path)
    suffix = Path(path).suffix.lower()
    if suffix not in OVERLAY_CODECS:
        raise VideoError(f"{name}: unknown video type '{suffix}' (choose from {', '.join(OVERLAY_CODECS)})")
    if not is_utf8_name(path):
        raise VideoError(f"{name}: file name is not valid UTF-8, which OpenCV cannot write; choose another name")
    codec = OVERLAY_CODECS[suffix]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), (int(width), int(height)))
    if not vw.isOpened():
        raise VideoError(f"{name}: cannot open a {codec} video writer")
    return vw
