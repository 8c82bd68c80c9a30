"""The 300VW dataset as evaluation sees it: the official split and broken frames (package
data), the test category of a video, and the frames of a video (decoded once)."""
from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from facetrack.io.landmarks import Video300VW

log = logging.getLogger(__name__)

CATEGORIES = (1, 2, 3)
#: Frame rate assumed for a video that does not state one (and for JPEG frame folders).
DEFAULT_FPS = 30.0
#: The environment variable naming the shared data folder (as the tests use it); its
#: ``300vw_reference_errors/`` holds the published per-frame errors drawn beside ours.
DATA_ENV = "FACETRACK_DATA"
REFERENCE_SUBDIR = "300vw_reference_errors"


def _load_json(name: str) -> dict:
    ref = resources.files("facetrack.tracker") / "data" / name
    try:
        return json.loads(ref.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise RuntimeError(f"facetrack/tracker/data/{name}: package data missing or unreadable ({e})") from None


@lru_cache(maxsize=1)
def splits() -> dict[int, tuple[str, ...]]:
    """Official 300VW test categories: ``{1: ids, 2: ids, 3: ids}``; training ids under key 0."""
    d = _load_json("300vw_splits.json")
    out = {0: tuple(d["train"])}
    for c in CATEGORIES:
        out[c] = tuple(d[f"test_cat{c}"])
    return out


@lru_cache(maxsize=1)
def broken_frames() -> dict[str, frozenset[int]]:
    """Video id -> 1-based frame numbers whose ground truth is unreliable (excluded)."""
    return {k: frozenset(int(f) for f in v) for k, v in _load_json("300vw_broken_frames.json").items()}


def category_of(video_id: str) -> int | None:
    """Test category (1, 2, 3) of a video id, 0 for a training video, ``None`` if unknown."""
    for c, ids in splits().items():
        if video_id in ids:
            return c
    return None


def reference_dir_from_env() -> Path | None:
    """``$FACETRACK_DATA/300vw_reference_errors`` when the variable is set and the folder
    exists; nothing is looked up relative to the installation."""
    data = os.environ.get(DATA_ENV)
    if not data:
        return None
    d = Path(data) / REFERENCE_SUBDIR
    if not d.is_dir():
        log.info("%s: no such folder ($%s): CED plots show facetrack only", d, DATA_ENV)
        return None
    return d


def jpeg_frames(video: Video300VW) -> list[Path]:
    """``imgs/NNNNNN.jpg`` frames of a video stored as images (sorted by frame number)."""
    d = video.root / "imgs"
    return sorted((p for p in d.glob("*.jpg") if p.stem.isdigit()), key=lambda p: int(p.stem)) if d.is_dir() else []


class VideoFrames:
    """The frames of one video, opened once: ``fps`` and iteration over ``(1-based frame number,
    BGR image)``; a context manager that releases the decoder.

    From ``vid.avi`` / ``vid.mp4``, or, without one, from ``imgs/NNNNNN.jpg`` (numbered by file
    name, :data:`DEFAULT_FPS`). Raises ``OSError`` naming the file that cannot be opened or read.
    """

    def __init__(self, video: Video300VW) -> None:
        import cv2

        self._cv2 = cv2
        self._cap = None
        self.images = [] if video.video_path.exists() else jpeg_frames(video)
        self.fps = DEFAULT_FPS
        if not self.images:
            self.path = video.video_path
            cap = cv2.VideoCapture(str(self.path))
            if not cap.isOpened():
                cap.release()
                raise OSError(f"{self.path}: cannot open video")
            self._cap = cap
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and fps > 0 else DEFAULT_FPS

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self.images:
            for p in self.images:
                img = self._cv2.imread(str(p), self._cv2.IMREAD_COLOR)
                if img is None:
                    raise OSError(f"{p}: cannot read image")
                yield int(p.stem), img
            return
        n = 0
        while self._cap is not None:
            ok, frame = self._cap.read()
            if not ok:
                break
            n += 1
            yield n, frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoFrames":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
