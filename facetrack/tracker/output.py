"""Landmark output files: OpenFace-layout CSV and JSON lines, flushed after every frame.

CSV columns (OpenFace 2 ``FeatureExtraction`` layout, landmark part only; no spaces after
the commas so any CSV reader gives clean names)::

    frame, face_id, timestamp, confidence, success, x_0 .. x_67, y_0 .. y_67

- ``frame``: 1-based frame number in the video (as OpenFace); ``face_id``: 0-based.
- ``timestamp``: seconds, 3 decimals; ``confidence``: [0, 1], 3 decimals; ``success``: 0/1.
- ``x_i, y_i``: 0-based image pixels, 3 decimals.
- A frame with no face gets one row for face 0 with ``success`` 0. Rows with ``success`` 0
  carry the **last known landmarks of that face id** (zeros if it never had any), so the file
  holds no empty cells and no NaN.

Each frame's rows are encoded first and written with one unbuffered write, then flushed to
the OS: a run killed at any moment leaves whole lines, up to the last completed frame.
JSON lines: one object per frame ``{"frame", "timestamp", "cut", "faces": [{"face_id",
"confidence", "success", "state", "box", "landmarks": [[x, y] * 68]}]}``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, Sequence

import numpy as np

N_POINTS = 68
COLUMNS: tuple[str, ...] = (("frame", "face_id", "timestamp", "confidence", "success")
                            + tuple(f"x_{i}" for i in range(N_POINTS)) + tuple(f"y_{i}" for i in range(N_POINTS)))
HEADER = ",".join(COLUMNS) + "\n"


class OutputFileError(ValueError):
    """An output/landmark CSV that cannot be used; the message names the file and the problem."""


class _Face(Protocol):
    face_id: int
    landmarks: np.ndarray
    confidence: float
    success: bool


@dataclass(frozen=True)
class Row:
    """One output row. ``frame``: 1-based; ``landmarks``: ``(68, 2)`` float32 image px."""

    frame: int
    face_id: int
    timestamp: float
    confidence: float
    success: bool
    landmarks: np.ndarray


def _finite(v: float) -> float:
    return float(v) if np.isfinite(v) else 0.0


def format_row(row: Row) -> str:
    """One CSV line (with ``\\n``) in the layout of :data:`COLUMNS`."""
    pts = np.nan_to_num(np.asarray(row.landmarks, np.float64).reshape(N_POINTS, 2), nan=0.0, posinf=0.0, neginf=0.0)
    head = f"{int(row.frame)},{int(row.face_id)},{_finite(row.timestamp):.3f},{_finite(row.confidence):.3f},{int(bool(row.success))}"
    xs = ",".join(f"{v:.3f}" for v in pts[:, 0])
    ys = ",".join(f"{v:.3f}" for v in pts[:, 1])
    return f"{head},{xs},{ys}\n"


class _FrameWriter:
    """Shared part of the writers: rows per frame, last-known landmarks, whole-frame writes."""

    def __init__(self, path: str | os.PathLike, append: bool = False) -> None:
        self.path = Path(path)
        try:
            self._f: IO[bytes] = open(self.path, "ab" if append else "wb", buffering=0)
        except IsADirectoryError:
            raise OutputFileError(f"{self.path}: is a directory") from None
        except FileNotFoundError as e:
            if self.path.parent.is_dir():  # e.g. /proc: the folder exists but takes no new files
                raise OutputFileError(f"{self.path}: cannot be created ({e.strerror})") from None
            raise OutputFileError(f"{self.path}: folder does not exist") from None
        except PermissionError:
            raise OutputFileError(f"{self.path}: not writable (permission denied)") from None
        except OSError as e:
            raise OutputFileError(f"{self.path}: cannot be written ({e.strerror})") from None
        self._last: dict[int, np.ndarray] = {}
        self.frames_written = 0

    def rows_for(self, frame: int, timestamp: float, faces: Sequence[_Face]) -> list[Row]:
        """Rows of one frame (``frame`` 1-based): one per face, or a ``success=0`` row for
        face 0 when there is none; failed faces carry their last known landmarks."""
        if not faces:
            return [Row(frame, 0, timestamp, 0.0, False, self._last.get(0, np.zeros((N_POINTS, 2), np.float32)))]
        rows = []
        for f in faces:
            ok = bool(f.success)
            pts = np.asarray(f.landmarks, np.float32)
            if ok and pts.shape == (N_POINTS, 2) and np.isfinite(pts).all():
                self._last[int(f.face_id)] = pts
            else:
                ok = False
                pts = self._last.get(int(f.face_id), np.zeros((N_POINTS, 2), np.float32))
            rows.append(Row(frame, int(f.face_id), timestamp, float(f.confidence), ok, pts))
        return rows

    def _write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        try:
            while data:
                n = self._f.write(data)
                data = data[n:]
            self._f.flush()
        except OSError as e:  # disk full, quota, I/O error: one line naming the file
            raise OutputFileError(f"{self.path}: write failed ({e.strerror or e})") from None

    def close(self) -> None:
        """Close the file (every frame is already on disk)."""
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "_FrameWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CsvWriter(_FrameWriter):
    """OpenFace-layout CSV writer. ``append=True`` continues an existing file (``--resume``)
    without writing the header again; a new file gets the header once."""

    def __init__(self, path: str | os.PathLike, append: bool = False) -> None:
        super().__init__(path, append=append)
        if not append or self.path.stat().st_size == 0:
            self._write(HEADER)

    def write_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], **_: Any) -> None:
        """Write and flush one frame's rows; ``frame`` is 1-based."""
        self._write("".join(format_row(r) for r in self.rows_for(frame, timestamp, faces)))
        self.frames_written += 1


class JsonLinesWriter(_FrameWriter):
    """One JSON object per frame per line (layout in the module docstring)."""

    def write_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], cut: bool = False, **_: Any) -> None:
        """Write and flush one frame's object; ``frame`` is 1-based."""
        rows = self.rows_for(frame, timestamp, faces)
        extra = {int(f.face_id): f for f in faces}
        out = []
        for r in rows:
            f = extra.get(r.face_id)
            box = getattr(f, "box", None) if f is not None else None
            out.append({
                "face_id": r.face_id, "confidence": round(_finite(r.confidence), 3), "success": int(r.success),
                "state": getattr(f, "state", "lost") if f is not None else "lost",
                "box": None if box is None else [round(_finite(v), 3) for v in np.asarray(box).ravel()],
                "landmarks": np.round(np.nan_to_num(np.asarray(r.landmarks, np.float64)), 3).tolist(),
            })
        obj = {"frame": int(frame), "timestamp": round(_finite(timestamp), 3), "cut": bool(cut), "faces": out}
        self._write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.frames_written += 1


WRITERS = {"csv": CsvWriter, "json": JsonLinesWriter}


def open_writer(path: str | os.PathLike, fmt: str = "csv", append: bool = False) -> _FrameWriter:
    """A writer for ``fmt`` (``"csv"`` or ``"json"``) on ``path``."""
    try:
        cls = WRITERS[fmt]
    except KeyError:
        raise ValueError(f"unknown output format {fmt!r} (choose from {', '.join(WRITERS)})") from None
    return cls(path, append=append)


@dataclass(frozen=True)
class LandmarkTable:
    """Rows of a landmark CSV. ``frame`` 1-based ``(R,)`` int; ``landmarks`` ``(R, 68, 2)``
    float32 image px; ``complete_bytes``: file offset just after the last complete line."""

    frame: np.ndarray
    face_id: np.ndarray
    timestamp: np.ndarray
    confidence: np.ndarray
    success: np.ndarray
    landmarks: np.ndarray
    complete_bytes: int

    @property
    def last_frame(self) -> int:
        """Last complete frame number (1-based), 0 when there are no rows."""
        return int(self.frame.max()) if len(self.frame) else 0


def read_landmarks_csv(path: str | os.PathLike) -> LandmarkTable:
    """Read a CSV written by :class:`CsvWriter` (e.g. to resume a killed run).

    A last line without its newline (a run killed mid-write) is ignored; since each frame's
    rows are written in one write, the last complete line ends a complete frame. Raises :class:`OutputFileError`
    naming the file for a missing file, a wrong header or a malformed complete line.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise OutputFileError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise OutputFileError(f"{p}: is a directory") from None
    end = data.rfind(b"\n") + 1
    text = data[:end].decode("utf-8", errors="replace")
    lines = text.splitlines()
    if not lines:
        raise OutputFileError(f"{p}: empty file, no header")
    header = next(csv.reader([lines[0]]))
    if tuple(h.strip() for h in header) != COLUMNS:
        raise OutputFileError(f"{p}: not a facetrack/OpenFace landmark CSV (unexpected header)")
    rows = list(csv.reader(io.StringIO("\n".join(lines[1:]))))
    ncol = len(COLUMNS)
    vals = np.zeros((len(rows), ncol), np.float64)
    for i, r in enumerate(rows):
        if len(r) != ncol:
            raise OutputFileError(f"{p}: line {i + 2} has {len(r)} fields, expected {ncol}")
        try:
            vals[i] = [float(v) for v in r]
        except ValueError:
            raise OutputFileError(f"{p}: line {i + 2}: non-numeric value") from None
    lm = np.stack([vals[:, 5:5 + N_POINTS], vals[:, 5 + N_POINTS:]], axis=-1).astype(np.float32)
    return LandmarkTable(vals[:, 0].astype(np.int64), vals[:, 1].astype(np.int64), vals[:, 2], vals[:, 3],
                         vals[:, 4].astype(bool), lm, end)


def truncate_to_complete(path: str | os.PathLike) -> LandmarkTable:
    """Cut a partly written last line off ``path`` (so appended rows start on a new line) and
    return its table."""
    table = read_landmarks_csv(path)
    if Path(path).stat().st_size != table.complete_bytes:
        with open(path, "r+b") as f:
            f.truncate(table.complete_bytes)
    return table
