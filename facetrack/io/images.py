"""Still images as tracker input: one image file, or every image in a folder (sorted by name).

Iterated like a video (:mod:`facetrack.io.video`): ``(index, 0.0, frame)`` with ``index``
0-based in the sorted list and ``frame`` a BGR ``uint8`` image; :attr:`ImageFiles.current`
is the file of the last image read. Each image is decoded from its bytes
(``cv2.imdecode``), so any file name works, including names that are not UTF-8.

In a folder, an image that cannot be used is skipped with one warning line naming it and why
(empty, not decodable, unreadable, a FIFO or device or symlink loop, over the pixel limit), and
the rest are read; :attr:`ImageFiles.failures` lists them so the caller can say that some
inputs failed. A single image file is checked and decoded when it is opened, so such a file is
refused (:class:`VideoError`) before anything is written. Images over ``max_pixels``
(default :data:`facetrack.io.video.MAX_PIXELS`, 100 Mpx) are refused from their header, before
decoding, for PNG, JPEG, BMP, TIFF and WebP (:func:`image_size`); other formats after decoding.
"""
from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from facetrack.io.video import MAX_PIXELS, VideoError, check_input, check_pixels, display_name, videos_in

log = logging.getLogger(__name__)

#: file suffixes read as images (lower case)
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def images_in(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` (by :data:`IMAGE_SUFFIXES`, not its subfolders), sorted by
    name as bytes (the twin of :func:`facetrack.io.video.videos_in`); empty for a file or a
    missing folder. Entries named like images that are not regular files (a FIFO, a device, a
    broken symlink, a symlink loop) are listed too, so that reading them says why they are skipped."""
    p = Path(folder)
    if not p.is_dir():
        return []
    return sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.is_dir()), key=lambda f: os.fsencode(f.name))


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    """Width and height from a JPEG's first start-of-frame segment (``f`` after the SOI marker)."""
    for _ in range(10_000):  # segments before the frame header: APPn, DQT, DHT, COM ...
        b = f.read(1)
        while b and b != b"\xff":  # tolerate fill bytes between segments
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan before any frame header
            return None
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sof = f.read(5)
            if len(sof) < 5:
                return None
            h, w = struct.unpack(">HH", sof[1:5])
            return w, h
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)
    return None


def _tiff_size(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    """Width and height from the first image directory of a (classic) TIFF."""
    e = "<" if head[:2] == b"II" else ">"
    f.seek(struct.unpack(e + "I", head[4:8])[0])
    raw = f.read(2)
    if len(raw) < 2:
        return None
    n = struct.unpack(e + "H", raw)[0]
    entries = f.read(12 * min(n, 4096))
    size: dict[int, int] = {}
    for k in range(len(entries) // 12):
        tag, typ, count = struct.unpack(e + "HHI", entries[12 * k:12 * k + 8])
        if tag in (256, 257) and count >= 1:
            value = entries[12 * k + 8:12 * k + 12]
            size[tag] = struct.unpack(e + "H", value[:2])[0] if typ == 3 else struct.unpack(e + "I", value)[0] if typ == 4 else -1
    w, h = size.get(256, -1), size.get(257, -1)
    return (w, h) if w >= 0 and h >= 0 else None


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` of an image file read from its header only (a few bytes; no decoding),
    by its content, not its name: PNG, JPEG, BMP, TIFF, WebP. ``None`` for other formats or a
    header that does not say."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return w, h
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                return _jpeg_size(f)
            if head[:2] == b"BM" and len(head) >= 26:
                if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 core header: 16-bit sides
                    w, h = struct.unpack("<HH", head[18:22])
                else:
                    w, h = struct.unpack("<ii", head[18:26])
                return abs(w), abs(h)
            if head[:4] in (b"II*\x00", b"MM\x00*"):
                return _tiff_size(f, head)
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                chunk = head[12:16]
                if chunk == b"VP8X":
                    return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
                if chunk == b"VP8L":
                    bits = int.from_bytes(head[21:25], "little")
                    return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
                if chunk == b"VP8 ":
                    rest = f.read(32)
                    frame = head[20:32] + rest
                    w, h = struct.unpack("<HH", frame[6:10])
                    return w & 0x3FFF, h & 0x3FFF
    except (OSError, struct.error, ValueError):
        return None
    return None


def is_image_input(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read as images: a folder, or a file with an image suffix."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES


def load_image(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """One image file decoded as BGR ``uint8`` ``(H, W, 3)``, or :class:`VideoError` in one line
    naming it: not a regular file (:func:`facetrack.io.video.check_input`), empty, unreadable,
    over ``max_pixels`` (from the header where :func:`image_size` reads it, else after decoding;
    ``None`` or 0: no limit), or not an image OpenCV can decode."""
    name = display_name(path)
    st = check_input(path, "image")
    if st.st_size == 0:
        raise VideoError(f"{name}: empty file")
    size = image_size(path)
    if size is not None:
        check_pixels(name, size[0], size[1], max_pixels)
    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError) as e:
        raise VideoError(f"{name}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    try:
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV's own size limits, an empty buffer, a codec's assertion
        log.debug("%s: %s", name, e)
        frame = None
    if frame is None or frame.size == 0:
        raise VideoError(f"{name}: not an image OpenCV can decode")
    check_pixels(name, frame.shape[1], frame.shape[0], max_pixels)
    return frame


class ImageFiles:
    """One image or a folder of images (not its subfolders), in name order.

    Raises :class:`VideoError` for a missing path, a symlink loop, a FIFO or device, a folder
    without images, and (for a single image) any problem :func:`load_image` finds. ``fps`` is a
    nominal 30 (timestamps are 0); ``total`` the number of image files; ``skipped`` the files of a
    folder that could not be used so far and ``failures`` each with its one-line reason (each
    was also logged as a warning). ``max_pixels``: the largest image read (default 100 Mpx).
    """

    fps = 30.0  # nominal: images have no time axis (timestamps are 0); the tracker wants a rate

    def __init__(self, path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> None:
        self.path = Path(path)
        self.name = display_name(self.path)
        self.max_pixels = max_pixels
        st = check_input(self.path, "image", folder_ok=True)
        self._pending: np.ndarray | None = None
        if os.path.isdir(self.path):
            self.files = images_in(self.path)
            if not self.files:
                videos = videos_in(self.path)
                if videos:  # a folder of recordings: one CSV per video
                    raise VideoError(f"{self.name}: no images in this folder but {len(videos)} video(s): "
                                     f"track them with --out-dir DIR (one CSV each)")
                raise VideoError(f"{self.name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        else:
            self.files = [self.path]
            self._pending = load_image(self.path, max_pixels)  # refused now, before anything is written
        self.current: Path | None = None
        self.skipped: list[Path] = []
        self.failures: list[tuple[Path, str]] = []
        self._next = 0

    @property
    def total(self) -> int:
        return len(self.files)

    def seek(self, index: int) -> None:
        """Continue from image ``index`` (0-based)."""
        if not 0 <= index < len(self.files):
            raise VideoError(f"{self.name}: start image {index} is past the end ({len(self.files)} images)")
        if index != self._next:
            self._pending = None
        self._next = int(index)

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """The next usable ``(index, 0.0, frame)``, or ``None`` after the last image; every
        image that cannot be used is logged (one warning line) and skipped."""
        while self._next < len(self.files):
            i, p = self._next, self.files[self._next]
            self._next += 1
            if self._pending is not None:
                frame, self._pending = self._pending, None
            else:
                try:
                    frame = load_image(p, self.max_pixels)
                except VideoError as e:
                    log.warning("%s; skipped", e)
                    self.skipped.append(p)
                    self.failures.append((p, str(e)))
                    continue
            self.current = p
            return i, 0.0, frame
        return None

    def __iter__(self):
        while (item := self.read()) is not None:
            yield item

    def close(self) -> None:
        """Nothing to release (each image is read whole)."""

    def __enter__(self) -> "ImageFiles":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
