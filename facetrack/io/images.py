"""Still images as tracker input: one image file, or every image in a folder (sorted by name).

Iterated like a video (:mod:`facetrack.io.video`): ``(index, 0.0, frame)`` with ``index``
0-based in the sorted list and ``frame`` a BGR ``uint8`` image; :attr:`ImageFiles.current`
is the file of the last image read. Each image is decoded from its bytes
(``cv2.imdecode``), so any file name works, including names that are not UTF-8.
An image that cannot be decoded is skipped with a warning naming it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from facetrack.io.video import VideoError, display_name, videos_in

log = logging.getLogger(__name__)

#: file suffixes read as images (lower case)
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def images_in(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` (by :data:`IMAGE_SUFFIXES`, not its subfolders), sorted by
    name as bytes (the twin of :func:`facetrack.io.video.videos_in`); empty for a file or a
    missing folder."""
    p = Path(folder)
    if not p.is_dir():
        return []
    return sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()), key=lambda f: os.fsencode(f.name))


def is_image_input(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read as images: a folder, or a file with an image suffix."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES


class ImageFiles:
    """One image or a folder of images (not its subfolders), in name order.

    Raises :class:`VideoError` for a missing path or a folder without images. ``fps`` is a nominal 30
    (timestamps are 0); ``total`` the number of image files; ``skipped`` the files that could not
    be decoded so far.
    """

    fps = 30.0  # nominal: images have no time axis (timestamps are 0); the tracker wants a rate

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = display_name(self.path)
        if not self.path.exists():
            raise VideoError(f"{self.name}: no such file or folder")
        if self.path.is_dir():
            self.files = images_in(self.path)
            if not self.files:
                videos = videos_in(self.path)
                if videos:  # a folder of recordings: one CSV per video
                    raise VideoError(f"{self.name}: no images in this folder but {len(videos)} video(s): "
                                     f"track them with --out-dir DIR (one CSV each)")
                raise VideoError(f"{self.name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        else:
            self.files = [self.path]
        self.current: Path | None = None
        self.skipped: list[Path] = []
        self._next = 0

    @property
    def total(self) -> int:
        return len(self.files)

    def seek(self, index: int) -> None:
        """Continue from image ``index`` (0-based)."""
        if not 0 <= index < len(self.files):
            raise VideoError(f"{self.name}: start image {index} is past the end ({len(self.files)} images)")
        self._next = int(index)

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """The next decodable ``(index, 0.0, frame)``, or ``None`` after the last image."""
        while self._next < len(self.files):
            i, p = self._next, self.files[self._next]
            self._next += 1
            try:
                frame = cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR)
            except (OSError, ValueError) as e:
                frame = None
                log.debug("%s: %s", display_name(p), e)
            if frame is None or frame.size == 0:
                log.warning("%s: not an image OpenCV can decode; skipped", display_name(p))
                self.skipped.append(p)
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
