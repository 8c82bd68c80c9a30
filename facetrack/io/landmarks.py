"""Landmark files and the 300VW layout; the only place that knows their conventions.

In memory landmarks are ``float32`` ``(N, 2)`` (x, y) 0-based pixels. ``.pts`` files are
1-based (300-W); menpo's ``.ljson`` stores (y, x). Both are converted here, once.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


class LandmarkFileError(ValueError):
    """A landmark file that cannot be read; the message names the file and the problem."""


def _read_text(p: Path) -> str:
    """The file's UTF-8 text, or a one-line :class:`LandmarkFileError` naming it."""
    try:
        return p.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise LandmarkFileError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise LandmarkFileError(f"{p}: is a directory, not a landmark file") from None
    except UnicodeDecodeError:
        raise LandmarkFileError(f"{p}: not a text file") from None
    except OSError as e:
        raise LandmarkFileError(f"{p}: cannot read ({e.strerror or e})") from None


def read_pts(path: str | os.PathLike, n_points: int | None = 68) -> np.ndarray:
    """Read a 300-W ``.pts`` file -> ``(N, 2)`` float32, (x, y), 0-based.

    ``n_points``: the count expected (``None`` accepts any). Raises
    :class:`LandmarkFileError` naming the file for a missing file, bad header, missing
    braces, non-numeric values or a wrong count.
    """
    p = Path(path)
    text = _read_text(p)
    m = re.search(r"n_points\s*:\s*(\d+)", text)
    if m is None:
        raise LandmarkFileError(f"{p}: no 'n_points:' header")
    declared = int(m.group(1))
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < 0 or end < start:
        raise LandmarkFileError(f"{p}: missing '{{' or '}}' around the points")
    fields = text[start + 1 : end].split()
    try:
        values = np.array([float(f) for f in fields], dtype=np.float64)
    except ValueError as e:
        raise LandmarkFileError(f"{p}: non-numeric value ({e})") from None
    if values.size % 2:
        raise LandmarkFileError(f"{p}: odd number of coordinates ({values.size})")
    pts = values.reshape(-1, 2)
    if len(pts) != declared:
        raise LandmarkFileError(f"{p}: header says {declared} points, file has {len(pts)}")
    if n_points is not None and len(pts) != n_points:
        raise LandmarkFileError(f"{p}: expected {n_points} points, found {len(pts)}")
    if not np.isfinite(pts).all():
        raise LandmarkFileError(f"{p}: non-finite coordinate")
    return (pts - 1.0).astype(np.float32)


def _coord(one_based: float, zero_based: float) -> str:
    """Six decimals as in 300-W, or the exact repr where six would not read back to the same
    float32 (small magnitudes), so ``read_pts(write_pts(p))`` returns ``p`` exactly (but for
    coordinates below about 1e-13 px, which the 1-based "+ 1" absorbs)."""
    s = f"{one_based:.6f}"
    if np.float32(float(s) - 1.0) != np.float32(zero_based):
        s = repr(float(one_based))
    return s


def write_pts(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write ``(N, 2)`` (x, y) 0-based points as a 300-W ``.pts`` (1-based) file."""
    src = np.asarray(points, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"{path}: points must be (N, 2), got {src.shape}")
    pts = src + 1.0
    lines = ["version: 1", f"n_points: {len(pts)}", "{"]
    lines += [f"{_coord(v, o)} {_coord(w, q)}" for (v, w), (o, q) in zip(pts, src)]
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_ljson(path: str | os.PathLike, group: str | None = None) -> np.ndarray:
    """Read menpo's ``.ljson`` (v1-v3) -> ``(N, 2)`` float32 (x, y), 0-based.

    menpo stores (y, x) (row, column); ``group`` picks a landmark group in v2/v3 files
    (default: the first with 68 points, else the first).
    """
    p = Path(path)
    try:
        data = json.loads(_read_text(p))
    except json.JSONDecodeError as e:
        raise LandmarkFileError(f"{p}: not valid JSON ({e})") from None
    try:
        if "groups" in data:
            groups = data["groups"]
            if group is None:
                group = next((k for k, g in groups.items() if len(g["landmarks"]["points"]) == 68), next(iter(groups)))
            points = groups[group]["landmarks"]["points"]
        else:
            points = data["landmarks"]["points"]
        yx = np.array(points, dtype=np.float64).reshape(-1, 2)
    except (KeyError, TypeError, ValueError, StopIteration) as e:
        raise LandmarkFileError(f"{p}: not a menpo landmark file ({e!r})") from None
    return yx[:, ::-1].astype(np.float32)


def write_ljson(path: str | os.PathLike, points: np.ndarray, group: str = "LJSON") -> None:
    """Write ``(N, 2)`` (x, y) points as a menpo v3 ``.ljson`` (stored as (y, x))."""
    pts = np.asarray(points, dtype=np.float64)[:, ::-1]
    data = {"version": 3, "groups": {group: {"landmarks": {"points": pts.tolist(), "connectivity": []}, "labels": []}}}
    Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")


def read_landmarks(path: str | os.PathLike) -> np.ndarray:
    """``.pts`` or ``.ljson`` by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".pts":
        return read_pts(path)
    if suffix == ".ljson":
        return read_ljson(path)
    raise LandmarkFileError(f"{path}: unknown landmark format '{suffix}' (expected .pts or .ljson)")


def read_box_pts(path: str | os.PathLike) -> np.ndarray:
    """A 4-point box ``.pts`` (300-W / MDM initialisation boxes) -> ``(x0, y0, x1, y1)`` 0-based."""
    pts = read_pts(path, n_points=4)
    return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)


@dataclass(frozen=True)
class Video300VW:
    """One 300VW video: ``<root>/<video_id>/vid.avi`` and ``annot/000001.pts`` ...

    Frame numbers are 1-based as in the dataset: ``annot/000001.pts`` is the first frame
    decoded from ``vid.avi``.
    """

    root: Path

    @property
    def video_id(self) -> str:
        return self.root.name

    @property
    def video_path(self) -> Path:
        for name in ("vid.avi", "vid.mp4"):
            if (self.root / name).exists():
                return self.root / name
        return self.root / "vid.avi"

    def annotated_frames(self) -> list[int]:
        """Sorted 1-based frame numbers that have an ``annot/NNNNNN.pts``."""
        d = self.root / "annot"
        if not d.is_dir():
            return []
        return sorted(int(f.stem) for f in d.glob("*.pts") if f.stem.isdigit())

    def annotation_path(self, frame: int) -> Path:
        return self.root / "annot" / f"{int(frame):06d}.pts"

    def annotation(self, frame: int) -> np.ndarray:
        """Ground truth of 1-based ``frame``: ``(68, 2)`` float32 0-based (x, y)."""
        return read_pts(self.annotation_path(frame))

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Decode ``vid.avi`` -> ``(1-based frame number, BGR uint8 image)``.

        Raises ``OSError`` naming the file if it cannot be opened.
        """
        import cv2

        path = self.video_path
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise OSError(f"{path}: cannot open video")
        try:
            n = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                yield n, frame
        finally:
            cap.release()


def list_300vw(root: str | os.PathLike) -> list[Video300VW]:
    """Videos under a 300VW root (folders holding ``vid.avi``, ``vid.mp4`` or ``annot/``), sorted by id."""
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(f"{r}: not a directory")
    vids = [Video300VW(d) for d in sorted(r.iterdir())
            if d.is_dir() and ((d / "annot").is_dir() or (d / "vid.avi").exists() or (d / "vid.mp4").exists())]
    return vids
