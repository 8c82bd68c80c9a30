"""Any input by what a user names: a camera index or device, an image or folder of images, or a
video file (:func:`open_source`); the readers are in :mod:`facetrack.io.video` and
:mod:`facetrack.io.images`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from facetrack.io.images import ImageFiles, is_image_input
from facetrack.io.video import Camera, VideoFile

Source = Union[VideoFile, Camera, ImageFiles]


def open_source(target: Union[str, int, os.PathLike], threads: int | None = 1) -> Source:
    """The reader of ``target``: an ``int`` (or a string of digits, or ``/dev/video*``) is a
    camera, an image file or a folder of images is read as stills, anything else as a video file
    (``threads``: its decoding threads). Every reader has ``read() -> (index, seconds, BGR frame)
    | None``, iteration, ``fps``, ``total`` (or ``None``), ``name``, ``close()`` and is a context
    manager. Raises :class:`facetrack.io.video.VideoError` (an ``OSError``) in one line naming
    the input when it cannot be opened."""
    if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
        return Camera(int(target))
    text = os.fspath(target)
    if text.startswith("/dev/video"):
        return Camera(text)
    if is_image_input(text):
        return ImageFiles(text)
    return VideoFile(Path(text), threads=threads)


def source_mode(source: Any) -> str:
    """The preset (:mod:`facetrack.tracker.presets`) for a reader of :func:`open_source`:
    ``image``, ``live`` or ``video``."""
    return "image" if isinstance(source, ImageFiles) else "live" if isinstance(source, Camera) else "video"
