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
the OS: a run killed at any moment leaves whole lines, up to the last completed frame. A write
that fails part-way (a full disk accepts part of a frame, then refuses) is cut back to the end of
the previous frame before the error is raised.

What a CSV was made from (input, model, start/end, the options that change rows) is recorded
beside it in ``<file>.run.json`` (:class:`RunRecord`), so that ``--resume`` can refuse to
continue a file made from something else, and a batch can skip finished files.

Image input (:mod:`facetrack.io.images`) writes :data:`IMAGE_COLUMNS`: an ``image`` column
(the file name) before the same columns, ``frame`` being the 1-based position of the image.
JSON lines: one object per frame ``{"frame", "timestamp", "cut", "faces": [{"face_id",
"confidence", "success", "state", "box", "landmarks": [[x, y] * 68]}]}``.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, Sequence

import numpy as np

from facetrack.engines.engine_cache import file_sha256

N_POINTS = 68
COLUMNS: tuple[str, ...] = (("frame", "face_id", "timestamp", "confidence", "success")
                            + tuple(f"x_{i}" for i in range(N_POINTS)) + tuple(f"y_{i}" for i in range(N_POINTS)))
HEADER = ",".join(COLUMNS) + "\n"
IMAGE_COLUMNS: tuple[str, ...] = ("image",) + COLUMNS


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


#: x_0..x_67, y_0..y_67 in one %-format: 0.15 ms a row instead of 0.34 ms for one f-string per value
_XY_FORMAT = ",".join(["%.3f"] * (2 * N_POINTS))


def format_row(row: Row) -> str:
    """One CSV line (with ``\\n``) in the layout of :data:`COLUMNS`."""
    pts = np.asarray(row.landmarks, np.float64).reshape(N_POINTS, 2)
    if not np.isfinite(pts).all():
        pts = np.nan_to_num(pts, nan=0.0, posinf=0.0, neginf=0.0)
    head = f"{int(row.frame)},{int(row.face_id)},{_finite(row.timestamp):.3f},{_finite(row.confidence):.3f},{int(bool(row.success))}"
    return f"{head},{_XY_FORMAT % tuple(pts.T.ravel().tolist())}\n"


def frame_rows(frame: int, timestamp: float, faces: Sequence[_Face], last: dict[int, np.ndarray]) -> list[Row]:
    """Rows of one frame (``frame`` 1-based): one per face, or a ``success=0`` row for face 0
    when there is none; failed faces carry their last known landmarks, kept in ``last`` (face id
    -> ``(68, 2)``, updated here), so every writer and :class:`facetrack.FaceTracker` give the
    same rows."""
    if not faces:
        return [Row(frame, 0, timestamp, 0.0, False, last.get(0, np.zeros((N_POINTS, 2), np.float32)))]
    rows = []
    for f in faces:
        ok = bool(f.success)
        pts = np.asarray(f.landmarks, np.float32)
        if ok and pts.shape == (N_POINTS, 2) and np.isfinite(pts).all():
            last[int(f.face_id)] = pts
        else:
            ok = False
            pts = last.get(int(f.face_id), np.zeros((N_POINTS, 2), np.float32))
        rows.append(Row(frame, int(f.face_id), timestamp, float(f.confidence), ok, pts))
    return rows


def frame_json(frame: int, timestamp: float, faces: Sequence[_Face], rows: Sequence[Row], cut: bool = False) -> dict[str, Any]:
    """One frame's JSON object (layout in the module docstring) from its :func:`frame_rows`."""
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
    return {"frame": int(frame), "timestamp": round(_finite(timestamp), 3), "cut": bool(cut), "faces": out}


class _FrameWriter:
    """Shared part of the writers: rows per frame, last-known landmarks, whole-frame writes."""

    def __init__(self, path: str | os.PathLike, append: bool = False, last: dict[int, np.ndarray] | None = None) -> None:
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
        # face id -> last known landmarks; seeded from the file when resuming, so that a no-face
        # row after a resume repeats them as it would have without the interruption
        self._last: dict[int, np.ndarray] = {int(k): np.asarray(v, np.float32) for k, v in (last or {}).items()}
        self.frames_written = 0

    def rows_for(self, frame: int, timestamp: float, faces: Sequence[_Face]) -> list[Row]:
        """Rows of one frame (:func:`frame_rows`, with this file's last known landmarks)."""
        return frame_rows(frame, timestamp, faces, self._last)

    def _write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        start = self._tell()
        try:
            while data:
                n = self._f.write(data)
                if n is None or n <= 0:
                    raise OSError(errno.EIO, "the file took no bytes")
                data = data[n:]
            self._f.flush()
        except OSError as e:  # disk full, quota, I/O error: one line naming the file
            self._cut_back(start)
            raise OutputFileError(f"{self.path}: write failed ({e.strerror or e})") from None

    def _tell(self) -> int | None:
        try:
            return self._f.tell()
        except OSError:  # a pipe or a character device (/dev/full): no position to return to
            return None

    def _cut_back(self, offset: int | None) -> None:
        """Drop the part of a frame a failed write left (truncating frees space on a full disk)."""
        if offset is None:
            return
        try:
            if self._tell() != offset:
                self._f.truncate(offset)
                self._f.seek(offset)
        except OSError:  # nothing more to do: --resume also cuts a torn last line
            pass

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

    header = HEADER

    def __init__(self, path: str | os.PathLike, append: bool = False, last: dict[int, np.ndarray] | None = None) -> None:
        super().__init__(path, append=append, last=last)
        if not append or self.path.stat().st_size == 0:
            self._write(self.header)

    def write_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], **_: Any) -> None:
        """Write and flush one frame's rows; ``frame`` is 1-based."""
        self._write("".join(format_row(r) for r in self.rows_for(frame, timestamp, faces)))
        self.frames_written += 1


class JsonLinesWriter(_FrameWriter):
    """One JSON object per frame per line (layout in the module docstring)."""

    def write_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], cut: bool = False, **_: Any) -> None:
        """Write and flush one frame's object; ``frame`` is 1-based."""
        obj = frame_json(frame, timestamp, faces, self.rows_for(frame, timestamp, faces), cut)
        self._write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.frames_written += 1


class ImageCsvWriter(CsvWriter):
    """CSV of still images (:data:`IMAGE_COLUMNS`): the image's file name, then the rows of
    :class:`CsvWriter`. Images are independent: an image without a face gets zeros, never the
    landmarks of the previous image."""

    header = ",".join(IMAGE_COLUMNS) + "\n"

    def write_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], image: str = "", **_: Any) -> None:
        """Write one image's rows; ``frame`` is the image's 1-based position, ``image`` its name."""
        self._last.clear()
        cell = _csv_cell(image)
        self._write("".join(f"{cell},{format_row(r)}" for r in self.rows_for(frame, timestamp, faces)))
        self.frames_written += 1


def _csv_cell(text: str) -> str:
    """``text`` as one CSV field (quoted when it holds a comma, quote or line break)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([text])
    return buf.getvalue()


WRITERS = {"csv": CsvWriter, "json": JsonLinesWriter, "image-csv": ImageCsvWriter}


def open_writer(path: str | os.PathLike, fmt: str = "csv", append: bool = False,
                last: dict[int, np.ndarray] | None = None) -> _FrameWriter:
    """A writer for ``fmt`` (``"csv"``, ``"json"`` or ``"image-csv"``) on ``path``; ``last``:
    face id -> last known landmarks ``(68, 2)`` (from :meth:`LandmarkTable.last_landmarks` when
    resuming)."""
    try:
        cls = WRITERS[fmt]
    except KeyError:
        raise ValueError(f"unknown output format {fmt!r} (choose from {', '.join(WRITERS)})") from None
    return cls(path, append=append, last=last)


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

    def last_landmarks(self) -> dict[int, np.ndarray]:
        """face id -> landmarks of its last row (a ``success=0`` row already repeats the last
        known ones), to seed a writer that continues this file."""
        return {int(fid): self.landmarks[np.flatnonzero(self.face_id == fid)[-1]] for fid in np.unique(self.face_id)}


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


# --- what a landmark file was made from ----------------------------------------------------------
RECORD_SUFFIX = ".run.json"
#: record keys that must match for ``--resume`` to continue a file. ``end`` need not: the rows
#: before it are the same whatever the end, and a longer run may continue a shorter one.
IDENTITY_KEYS: tuple[str, ...] = ("input", "model", "start", "options")


def record_path(out: str | os.PathLike) -> Path:
    """The record beside a landmark file: ``landmarks.csv`` -> ``landmarks.csv.run.json``."""
    p = Path(out)
    return p.with_name(p.name + RECORD_SUFFIX)


@dataclass(frozen=True)
class RunRecord:
    """What a landmark file was made from, written beside it (:func:`record_path`).

    ``input``: ``{"name", "bytes", "head_sha256"}`` (content of the first MiB, so a moved
    video still matches); ``model``: the ``--model`` value and the SHA-256 of each model file;
    ``start``/``end``: 0-based frames asked for (``end`` exclusive, ``None``: to the end);
    ``options``: every option that changes the rows; ``complete``: the run reached the end.
    """

    input: dict[str, Any]
    model: dict[str, Any]
    start: int
    end: int | None
    options: dict[str, Any]
    complete: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "model": self.model, "start": self.start, "end": self.end,
                "options": self.options, "complete": self.complete}

    def differences(self, other: "RunRecord") -> list[str]:
        """How ``other`` differs from this record on :data:`IDENTITY_KEYS`, as ``what (this vs
        other)`` texts; empty when a file made as ``self`` may be continued as ``other``."""
        out = []
        same_content = ("bytes", "head_sha256")  # the same video under another name still matches
        if any(self.input.get(k) != other.input.get(k) for k in same_content):
            out.append(f"input ({self.input.get('name')} vs {other.input.get('name')})")
        if self.model.get("sha256") != other.model.get("sha256"):
            out.append(f"model ({self.model.get('name')} vs {other.model.get('name')})")
        if self.start != other.start:
            out.append(f"start frame ({self.start} vs {other.start})")
        for k in sorted(set(self.options) | set(other.options)):
            if self.options.get(k) != other.options.get(k):
                out.append(f"{k} ({self.options.get(k)!r} vs {other.options.get(k)!r})")
        return out


def input_identity(path: str | os.PathLike) -> dict[str, Any]:
    """``{"name", "bytes", "head_sha256"}`` of an input file (a folder: its image names)."""
    p = Path(path)
    name = os.fsencode(p).decode("utf-8", "backslashreplace")
    if p.is_dir():
        import hashlib

        names = sorted(os.fsencode(c.name) for c in p.iterdir())
        return {"name": name, "bytes": len(names), "head_sha256": hashlib.sha256(b"\0".join(names)).hexdigest()}
    return {"name": name, "bytes": p.stat().st_size, "head_sha256": file_sha256(p, 1 << 20)}


def write_record(out: str | os.PathLike, record: RunRecord) -> None:
    """Write ``record`` beside ``out`` atomically (a temporary file renamed over it)."""
    dst = record_path(out)
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        tmp.write_text(json.dumps(record.to_json(), indent=1) + "\n")
        os.replace(tmp, dst)
    except OSError as e:
        raise OutputFileError(f"{dst}: cannot be written ({e.strerror or e})") from None


def read_record(out: str | os.PathLike) -> RunRecord | None:
    """The record beside ``out``; ``None`` when there is none. :class:`OutputFileError` when
    it is not a record."""
    src = record_path(out)
    try:
        d = json.loads(src.read_text())
        return RunRecord(d["input"], d["model"], int(d["start"]), None if d["end"] is None else int(d["end"]),
                         dict(d["options"]), bool(d.get("complete", False)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OutputFileError(f"{src}: not a facetrack run record ({e})") from None
