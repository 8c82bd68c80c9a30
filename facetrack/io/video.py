"""Frame sources for the tracker: a video file or a camera, iterated as
``(index, timestamp_s, frame)`` with ``index`` 0-based, ``timestamp_s`` seconds from the start
of the video (files: ``index / fps``; cameras: wall-clock since opening) and ``frame`` a BGR
``uint8`` ``(H, W, 3)`` image as OpenCV decodes it.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

log = logging.getLogger(__name__)

# FFmpeg inside OpenCV prints its complaints about damaged files ("moov atom not found", "error
# while decoding MB 14 3", ...) on stderr at its error level, unless OPENCV_FFMPEG_LOGLEVEL is set
# (then OpenCV prints them itself, on stdout). facetrack catches those lines around its own capture
# calls (:class:`DecoderLog`): a file that does not open is one line naming it, and the frames
# decoded with errors are counted and reported at the end instead of FFmpeg's lines.

#: the most pixels a frame or an image may have before it is refused (100 megapixels: a decoded
#: 100 Mpx BGR image takes 300 MB, and every stage of the tracker copies it at least once)
MAX_PIXELS = 100_000_000


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


def check_input(path: str | os.PathLike, what: str = "video", folder_ok: bool = False) -> os.stat_result:
    """The ``stat`` of an input file ``path`` (followed through symlinks), or :class:`VideoError`
    in one line naming it: no such file, a broken symlink, a symlink loop, permission denied, a
    folder (unless ``folder_ok``), or anything that is not a regular file: a FIFO (reading one
    waits for a writer, maybe forever), a device, a socket. ``what`` names the expected kind."""
    name = display_name(path)
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise VideoError(f"{name}: symlink loop (too many levels of symbolic links)") from None
        if e.errno == errno.ENOENT:
            if os.path.islink(path):
                raise VideoError(f"{name}: broken symlink (to {display_name(os.readlink(path))}, which does not exist)") from None
            raise VideoError(f"{name}: no such file" + (" or folder" if folder_ok else "")) from None
        if e.errno == errno.EACCES:
            raise VideoError(f"{name}: not readable (permission denied)") from None
        if e.errno == errno.ENAMETOOLONG:
            raise VideoError(f"{name}: file name too long") from None
        raise VideoError(f"{name}: cannot be read ({e.strerror or e})") from None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if folder_ok:
            return st
        raise VideoError(f"{name}: is a directory, not a {what}")
    if stat.S_ISREG(mode):
        return st
    if stat.S_ISFIFO(mode):
        kind = "a FIFO (named pipe), not a file: refused (reading one can wait forever)"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device, not a file: refused" + (" (a camera is --camera DEVICE)" if stat.S_ISCHR(mode) and what == "video" else "")
    elif stat.S_ISSOCK(mode):
        kind = "a socket, not a file: refused"
    else:
        kind = "not a regular file: refused"
    raise VideoError(f"{name}: {kind}")


def check_pixels(name: str, width: int, height: int, max_pixels: int | None) -> None:
    """:class:`VideoError` naming ``name`` when ``width`` x ``height`` is over ``max_pixels``
    (``None`` or 0: no limit)."""
    if max_pixels and int(width) * int(height) > max_pixels:
        raise VideoError(f"{name}: {int(width)}x{int(height)} is {int(width) * int(height) / 1e6:.3g} megapixels, "
                         f"over the limit of {max_pixels / 1e6:g} megapixels (--max-pixels)")


#: a line FFmpeg's default logger writes: ``[h264 @ 0x55d993b87440] error while decoding MB 14 3``
_FFMPEG_LINE = re.compile(r"^\[[^\]@]+ @ (0x)?[0-9a-fA-F]+\] ")


class DecoderLog:
    """What FFmpeg (inside OpenCV) writes on stderr while a capture opens or decodes a frame,
    caught instead of printed: :meth:`call` runs one capture call with file descriptor 2 moved
    to a temporary file, keeps FFmpeg's lines (``[codec @ 0x...] message``) and passes any other
    text back to the real stderr. ``frames_with_errors`` counts the calls that produced FFmpeg
    lines (with one decoding thread, the frame being decoded), ``first`` is the first such
    ``(0-based frame, message)``. Costs two ``dup2`` calls per frame. Where file descriptors
    cannot be moved (or OPENCV_FFMPEG_LOGLEVEL is set, which sends FFmpeg's lines to stdout
    through OpenCV's own logger), nothing is caught and nothing is counted: :attr:`active` is False.
    """

    #: the temporary file is emptied when it grows over this
    LIMIT = 1 << 20

    def __init__(self) -> None:
        self.frames_with_errors = 0
        self.first: tuple[int, str] | None = None
        self.messages = 0
        #: FFmpeg's first complaint while opening or seeking, if any
        self.opening: str | None = None
        self._fd: int | None = None
        self._saved: int | None = None
        self._pos = 0
        if os.environ.get("OPENCV_FFMPEG_LOGLEVEL") is not None:
            return
        try:
            self._fd = os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR) if hasattr(os, "O_TMPFILE") else None
        except OSError:
            self._fd = None
        if self._fd is None:
            try:
                fd, tmp = tempfile.mkstemp(prefix="facetrack-ffmpeg-")
                os.unlink(tmp)
                self._fd = fd
            except OSError:
                return
        try:
            self._saved = os.dup(2)
        except OSError:
            os.close(self._fd)
            self._fd = None

    @property
    def active(self) -> bool:
        return self._saved is not None

    def call(self, fn: Callable[..., Any], *args: Any, frame: int | None = None) -> Any:
        """``fn(*args)`` with FFmpeg's lines caught; ``frame``: the 0-based frame it decodes
        (``None``: opening or seeking, which counts no frame)."""
        if self._fd is None or self._saved is None:
            return fn(*args)
        try:
            sys.stderr.flush()  # Python's own buffered text goes out before fd 2 moves
        except (OSError, ValueError, AttributeError):
            pass
        try:
            # inside the try: a signal (Ctrl-C, SIGTERM) right after the move must still put fd 2
            # back, or the run's last line ("interrupted ...") goes to the temporary file
            os.dup2(self._fd, 2)
            return fn(*args)
        finally:
            os.dup2(self._saved, 2)
            self._collect(frame)

    def _collect(self, frame: int | None) -> None:
        assert self._fd is not None and self._saved is not None
        end = os.fstat(self._fd).st_size
        if end <= self._pos:
            return
        data = os.pread(self._fd, end - self._pos, self._pos)
        self._pos = end
        if end > self.LIMIT:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            self._pos = 0
        ffmpeg, other = [], []
        for line in data.decode("utf-8", "replace").splitlines(keepends=True):
            (ffmpeg if _FFMPEG_LINE.match(line) else other).append(line)
        if other:
            try:
                os.write(self._saved, "".join(other).encode("utf-8", "replace"))
            except OSError:
                pass
        if not ffmpeg:
            return
        self.messages += len(ffmpeg)
        text = _FFMPEG_LINE.sub("", ffmpeg[0]).strip()
        log.debug("FFmpeg%s: %s", "" if frame is None else f" (frame {frame + 1})", " | ".join(l.strip() for l in ffmpeg))
        if frame is not None:
            self.frames_with_errors += 1
            if self.first is None:
                self.first = (frame, text)
        elif self.opening is None:
            self.opening = text

    def summary(self, name: str, frames: int | None = None) -> str | None:
        """The one line that reports the frames decoded with errors (``None``: there were none):
        ``x.mp4: 2 of 275 frames decoded with errors (first: frame 70, error while decoding MB 14 3)``."""
        if not self.frames_with_errors or self.first is None:
            return None
        n = self.frames_with_errors
        count = f"{n} of {frames} frames" if frames else f"{n} frame{'s' if n != 1 else ''}"
        return (f"{name}: {count} decoded with errors (first: frame {self.first[0] + 1}, "
                f"{self.first[1]}); the file is damaged and the rows of those frames (and of frames after them until the "
                f"next key frame) may be wrong")

    def close(self) -> None:
        for fd in (self._fd, self._saved):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._saved = None


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

    Raises :class:`VideoError` for a missing file, a directory, an unreadable file, anything
    not a regular file (a FIFO, a device, a symlink loop: :func:`check_input`), a file that is
    not a video, frames over ``max_pixels`` (from the header, before a frame is decoded), or a
    video with no frames. FFmpeg's errors while decoding are counted, not printed
    (:attr:`frames_with_errors`, :meth:`decode_errors`). ``fps`` (frames per second; 30 when the
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

    def __init__(self, path: str | os.PathLike, threads: int | None = 1, max_pixels: int | None = MAX_PIXELS) -> None:
        self.path = Path(path)
        p = display_name(self.path)
        self.name = p
        st = check_input(self.path, "video")
        if not os.access(self.path, os.R_OK):
            raise VideoError(f"{p}: not readable (permission denied)")
        if st.st_size == 0:
            raise VideoError(f"{p}: empty file")
        self._cv_name = OpenCvName(self.path)
        self.threads = threads
        #: FFmpeg's complaints, counted per frame (:meth:`decode_errors` reports them)
        self.decoder_log = DecoderLog()
        self._cap = self.decoder_log.call(self._open)
        if not self._cap.isOpened():
            self.close()
            raise VideoError(f"{p}: not a video OpenCV can read")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if np.isfinite(fps) and 0 < fps < 1000 else 30.0
        n = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(n) if np.isfinite(n) and n > 0 else 0
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:
            check_pixels(p, self.width, self.height, max_pixels)  # from the header, before a frame is decoded
        except VideoError:
            self.close()
            raise
        ok, first = self.decoder_log.call(self._cap.read, frame=0)
        if not ok or first is None or first.size == 0:
            self.close()
            raise VideoError(f"{p}: no frames could be decoded (not a video, or zero frames)")
        self._pending: np.ndarray | None = first
        self._first_counted = True  # frame 0's decoding errors, if any, are in decoder_log already
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

    @property
    def frames_with_errors(self) -> int:
        """Frames read so far during whose decoding FFmpeg reported errors (0 where its log
        cannot be caught: see :class:`DecoderLog`)."""
        return self.decoder_log.frames_with_errors

    def decode_errors(self) -> str | None:
        """One line for the end of a run when frames were decoded with errors, else ``None``:
        ``x.mp4: 2 of 275 frames decoded with errors (first: frame 70, ...)``."""
        return self.decoder_log.summary(self.name, self.frame_count or None)

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
        if self._first_counted:  # frame 0 was decoded on opening but is not read: its errors do not count
            self._first_counted = False
            log_ = self.decoder_log
            if log_.first is not None and log_.first[0] == 0:
                log_.frames_with_errors -= 1
                log_.first = None
        call = self.decoder_log.call
        if call(self._cap.set, cv2.CAP_PROP_POS_FRAMES, index) and int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) == index:
            self._next = index
            return
        log.info("%s: inexact seek; decoding forward to frame %d", self.name, index)
        self._cap.release()
        self._cap = call(self._open)
        for i in range(index):
            if not call(self._cap.grab):
                raise VideoError(f"{self.name}: could not reach frame {index} (stopped at {i})")
        self._next = index

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """The next ``(index, timestamp_s, frame)``, or ``None`` at the normal end.

        Raises :class:`VideoReadError` when frames stop early (see the class docstring).
        """
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            ok, frame = self.decoder_log.call(self._cap.read, frame=self._next)
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
        if hasattr(self, "_cap"):
            super().close()
        self._cv_name.close()
        self.decoder_log.close()


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
                threads: int | None = 1, max_pixels: int | None = MAX_PIXELS) -> VideoFile | Camera:
    """A :class:`VideoFile` for ``video`` (``threads``: its decoding threads; ``max_pixels``: the
    largest frame it opens) or a :class:`Camera` for ``camera`` (index or path)."""
    if camera is not None:
        return Camera(camera)
    if video is None:
        raise ValueError("give a video file or a camera index")
    return VideoFile(video, threads=threads, max_pixels=max_pixels)


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
