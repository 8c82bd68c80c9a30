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

With the head pose (the CLI's default, ``--pose on``: :data:`POSE_CSV_COLUMNS`), OpenFace's pose
columns come after ``success`` and its rigid shape parameters after the landmarks, in its order::

    frame, face_id, timestamp, confidence, success, pose_Tx, pose_Ty, pose_Tz,
    pose_Rx, pose_Ry, pose_Rz, x_0 .. x_67, y_0 .. y_67, p_scale, p_rx, p_ry, p_rz, p_tx, p_ty

(conventions, units and signs: :mod:`facetrack.tracker.pose`; ``pose_T*`` mm with 2 decimals,
``pose_R*`` and ``p_r*`` radians with 4, ``p_scale`` with 5, ``p_tx, p_ty`` px with 3). A row
with ``success`` 0 has zeros there, and a face whose pose cannot be solved is written with
``success`` 0 (its landmarks then the last known ones): no row with ``success`` 1 holds a pose
that is not one.

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
"confidence", "success", "state", "box", "landmarks": [[x, y] * 68]}]}``; with the pose, each
face also has ``"pose": {"pose_Tx": .., ..., "p_ty": ..}`` (the CSV's 12 names and values).
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import sys
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
#: OpenFace's head-pose columns (after ``success``) and rigid shape parameters (after the landmarks)
POSE_COLUMNS: tuple[str, ...] = ("pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")
RIGID_COLUMNS: tuple[str, ...] = ("p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty")
#: the layout with the pose (the CLI's default)
POSE_CSV_COLUMNS: tuple[str, ...] = COLUMNS[:5] + POSE_COLUMNS + COLUMNS[5:] + RIGID_COLUMNS


def columns(pose: bool = False, image: bool = False) -> tuple[str, ...]:
    """The CSV columns with or without the pose, with the ``image`` column first for stills."""
    return (("image",) if image else ()) + (POSE_CSV_COLUMNS if pose else COLUMNS)


class OutputFileError(ValueError):
    """An output/landmark CSV that cannot be used; the message names the file and the problem."""


class _Face(Protocol):
    face_id: int
    landmarks: np.ndarray
    confidence: float
    success: bool


@dataclass(frozen=True)
class Row:
    """One output row. ``frame``: 1-based; ``landmarks``: ``(68, 2)`` float32 image px;
    ``pose``: the 12 values of :data:`POSE_COLUMNS` and :data:`RIGID_COLUMNS` (``None``: a
    layout without the pose)."""

    frame: int
    face_id: int
    timestamp: float
    confidence: float
    success: bool
    landmarks: np.ndarray
    pose: tuple[float, ...] | None = None


def _finite(v: float) -> float:
    return float(v) if np.isfinite(v) else 0.0


#: x_0..x_67, y_0..y_67 in one %-format: 0.15 ms a row instead of 0.34 ms for one f-string per value
_XY_FORMAT = ",".join(["%.3f"] * (2 * N_POINTS))
_POSE_FORMAT = ",".join(["%.2f"] * 3 + ["%.4f"] * 3)
_RIGID_FORMAT = ",".join(["%.5f"] + ["%.4f"] * 3 + ["%.3f"] * 2)
_NO_POSE = (0.0,) * 12


def format_row(row: Row) -> str:
    """One CSV line (with ``\\n``) in the layout of :data:`COLUMNS`."""
    pts = np.asarray(row.landmarks, np.float64).reshape(N_POINTS, 2)
    if not np.isfinite(pts).all():
        pts = np.nan_to_num(pts, nan=0.0, posinf=0.0, neginf=0.0)
    head = f"{int(row.frame)},{int(row.face_id)},{_finite(row.timestamp):.3f},{_finite(row.confidence):.3f},{int(bool(row.success))}"
    if row.pose is None:
        return f"{head},{_XY_FORMAT % tuple(pts.T.ravel().tolist())}\n"
    v = [_finite(x) + 0.0 for x in row.pose]  # + 0.0: no "-0.0000"
    return f"{head},{_POSE_FORMAT % tuple(v[:6])},{_XY_FORMAT % tuple(pts.T.ravel().tolist())},{_RIGID_FORMAT % tuple(v[6:])}\n"


def frame_rows(frame: int, timestamp: float, faces: Sequence[_Face], last: dict[int, np.ndarray], pose: bool = False) -> list[Row]:
    """Rows of one frame (``frame`` 1-based): one per face, or a ``success=0`` row for face 0
    when there is none; failed faces carry their last known landmarks, kept in ``last`` (face id
    -> ``(68, 2)``, updated here), so every writer and :class:`facetrack.FaceTracker` give the
    same rows. ``pose``: the rows carry each face's ``pose`` values (a ``HeadPose``); a face
    without a solved pose fails, and failed rows carry zeros."""
    if not faces:
        return [Row(frame, 0, timestamp, 0.0, False, last.get(0, np.zeros((N_POINTS, 2), np.float32)), _NO_POSE if pose else None)]
    rows = []
    for f in faces:
        ok = bool(f.success)
        pts = np.asarray(f.landmarks, np.float32)
        values = None
        if pose:
            hp = getattr(f, "pose", None)
            values = tuple(hp.values) if ok and hp is not None and hp.success else _NO_POSE
            ok = ok and values is not _NO_POSE and all(np.isfinite(values))
            values = values if ok else _NO_POSE
        if ok and pts.shape == (N_POINTS, 2) and np.isfinite(pts).all():
            last[int(f.face_id)] = pts
        else:
            ok = False
            values = _NO_POSE if pose else None
            pts = last.get(int(f.face_id), np.zeros((N_POINTS, 2), np.float32))
        rows.append(Row(frame, int(f.face_id), timestamp, float(f.confidence), ok, pts, values))
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
        if r.pose is not None:
            out[-1]["pose"] = {k: round(_finite(v), 5) + 0.0 for k, v in zip(POSE_COLUMNS + RIGID_COLUMNS, r.pose)}
    return {"frame": int(frame), "timestamp": round(_finite(timestamp), 3), "cut": bool(cut), "faces": out}


class _FrameWriter:
    """Shared part of the writers: rows per frame, last-known landmarks, whole-frame writes."""

    def __init__(self, path: str | os.PathLike, append: bool = False, last: dict[int, np.ndarray] | None = None,
                 pose: bool = False) -> None:
        self.path = Path(path)
        self.pose = bool(pose)  # rows carry the head pose (:func:`frame_rows`)
        try:
            if str(path) == "-":  # standard output (``--out -``): our own descriptor, unbuffered
                sys.stdout.flush()
                self._f: IO[bytes] = open(os.dup(sys.stdout.fileno()), "wb", buffering=0)
            else:
                self._f = open(self.path, "a+b" if append else "wb", buffering=0)
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
        #: resuming: the file's bytes the next frames must reproduce before anything is written
        #: (:meth:`replay`); ``None`` once they are matched or when not resuming
        self._expect: bytes | None = None
        self._matched = 0
        #: the 1-based frame from which a replayed run differed from the file's rows (they were
        #: cut off and written again), ``None`` when every row matched
        self.differed_at: int | None = None

    def replay(self) -> None:
        """Rebuild a run instead of appending blindly: the frames given next must reproduce the
        file's rows after its first line, byte for byte. Matching frames write nothing; at the
        first frame that differs, the file is cut back to the end of the previous frame and
        written from there on, so the file ends as the uninterrupted run would have."""
        self._f.seek(0)
        data = self._f.read() if self._f.readable() else b""
        first = data.find(b"\n") + 1
        if first and first < len(data):
            self._expect, self._matched = data, first

    @property
    def replaying(self) -> bool:
        """Whether the file still holds rows the next frames must reproduce."""
        return self._expect is not None

    def _replayed(self, frame: int, data: bytes) -> bool:
        """``True`` when ``data`` (one frame's bytes) is the file's next frame while replaying."""
        if self._expect is None:
            return False
        if self._expect.startswith(data, self._matched):
            self._matched += len(data)
            if self._matched >= len(self._expect):
                self._expect = None
            return True
        self.end_replay(frame)
        return False

    def end_replay(self, frame: int | None = None) -> None:
        """Stop replaying: cut the rows the run has not reproduced off the file (``frame``: the
        first frame that differed, or ``None`` where the run ended first)."""
        if self._expect is None:
            return
        self._expect = None
        self.differed_at = frame
        try:
            self._f.truncate(self._matched)
            self._f.seek(self._matched)
        except OSError as e:
            raise OutputFileError(f"{self.path}: write failed ({e.strerror or e})") from None

    def rows_for(self, frame: int, timestamp: float, faces: Sequence[_Face]) -> list[Row]:
        """Rows of one frame (:func:`frame_rows`, with this file's last known landmarks)."""
        return frame_rows(frame, timestamp, faces, self._last, self.pose)

    def encode_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], **kw: Any) -> bytes:
        """One frame's bytes as :meth:`write_frame` writes them (the last-known landmarks move on
        as if it were written): ``--resume`` compares them with the file's to rebuild a run."""
        raise NotImplementedError

    def write_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], **kw: Any) -> None:
        """Write and flush one frame's rows (``frame`` 1-based); one write, whole lines."""
        data = self.encode_frame(frame, timestamp, faces, **kw)
        if not self._replayed(frame, data):
            self._write_bytes(data)
        self.frames_written += 1

    def sync(self) -> None:
        """Flush the file to the disk (``fsync``), before its record may say it is complete."""
        try:
            os.fsync(self._f.fileno())
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP):  # pipes and devices cannot sync
                raise OutputFileError(f"{self.path}: write failed ({e.strerror or e})") from None

    def _write(self, text: str) -> None:
        self._write_bytes(text.encode("utf-8"))

    def _write_bytes(self, raw: bytes) -> None:
        data = memoryview(raw)
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

    image_column = False

    def __init__(self, path: str | os.PathLike, append: bool = False, last: dict[int, np.ndarray] | None = None,
                 pose: bool = False) -> None:
        super().__init__(path, append=append, last=last, pose=pose)
        self.header = ",".join(columns(self.pose, self.image_column)) + "\n"
        if not append or self.path.stat().st_size == 0:
            self._write(self.header)

    def encode_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], **_: Any) -> bytes:
        """One frame's CSV lines; ``frame`` is 1-based."""
        return "".join(format_row(r) for r in self.rows_for(frame, timestamp, faces)).encode("utf-8")


class JsonLinesWriter(_FrameWriter):
    """One JSON object per frame per line (layout in the module docstring)."""

    def encode_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], cut: bool = False, **_: Any) -> bytes:
        """One frame's JSON line; ``frame`` is 1-based."""
        obj = frame_json(frame, timestamp, faces, self.rows_for(frame, timestamp, faces), cut)
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")


class ImageCsvWriter(CsvWriter):
    """CSV of still images (:data:`IMAGE_COLUMNS`): the image's file name, then the rows of
    :class:`CsvWriter`. Images are independent: an image without a face gets zeros, never the
    landmarks of the previous image."""

    image_column = True

    def encode_frame(self, frame: int, timestamp: float, faces: Sequence[_Face], image: str = "", **_: Any) -> bytes:
        """One image's rows; ``frame`` is the image's 1-based position, ``image`` its name."""
        self._last.clear()
        cell = image_cell(image)
        return "".join(f"{cell},{format_row(r)}" for r in self.rows_for(frame, timestamp, faces)).encode("utf-8")


#: a cell starting with one of these is read by spreadsheets as a formula (OWASP, "CSV Injection")
FORMULA_START: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def image_cell(name: str) -> str:
    """An image's name as one CSV field, written by the csv module. A name a spreadsheet would
    take for a formula (it starts with ``= + - @``, a tab or a carriage return) gets a leading
    ``'`` and double quotes, as OWASP advises; line breaks are written as the two characters
    ``\\n`` and ``\\r``, so each row stays one line for line-oriented tools (``wc -l``, ``grep``,
    the resume reader); a comma or a quote is quoted as usual. Ordinary names are unchanged."""
    formula = name.startswith(FORMULA_START)
    text = ("'" + name if formula else name).replace("\r", "\\r").replace("\n", "\\n")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="", quoting=csv.QUOTE_ALL if formula else csv.QUOTE_MINIMAL).writerow([text])
    return buf.getvalue()


WRITERS = {"csv": CsvWriter, "json": JsonLinesWriter, "image-csv": ImageCsvWriter}


def open_writer(path: str | os.PathLike, fmt: str = "csv", append: bool = False,
                last: dict[int, np.ndarray] | None = None, pose: bool = False) -> _FrameWriter:
    """A writer for ``fmt`` (``"csv"``, ``"json"`` or ``"image-csv"``) on ``path``; ``last``:
    face id -> last known landmarks ``(68, 2)`` (from :meth:`LandmarkTable.last_landmarks` when
    resuming); ``pose``: with the head-pose columns (:data:`POSE_CSV_COLUMNS`)."""
    try:
        cls = WRITERS[fmt]
    except KeyError:
        raise ValueError(f"unknown output format {fmt!r} (choose from {', '.join(WRITERS)})") from None
    return cls(path, append=append, last=last, pose=pose)


@dataclass(frozen=True)
class LandmarkTable:
    """Rows of a landmark CSV. ``frame`` 1-based ``(R,)`` int; ``landmarks`` ``(R, 68, 2)``
    float32 image px; ``complete_bytes``: file offset just after the last complete line;
    ``pose``: ``(R, 12)`` float64, the :data:`POSE_COLUMNS` and :data:`RIGID_COLUMNS` values, in
    a file with the pose (``None`` without)."""

    frame: np.ndarray
    face_id: np.ndarray
    timestamp: np.ndarray
    confidence: np.ndarray
    success: np.ndarray
    landmarks: np.ndarray
    complete_bytes: int
    pose: np.ndarray | None = None

    @property
    def last_frame(self) -> int:
        """Last complete frame number (1-based), 0 when there are no rows."""
        return int(self.frame.max()) if len(self.frame) else 0

    def last_landmarks(self) -> dict[int, np.ndarray]:
        """face id -> landmarks of its last row (a ``success=0`` row already repeats the last
        known ones), to seed a writer that continues this file."""
        return {int(fid): self.landmarks[np.flatnonzero(self.face_id == fid)[-1]] for fid in np.unique(self.face_id)}


def read_landmarks_csv(path: str | os.PathLike, upto_damage: bool = False) -> LandmarkTable:
    """Read a CSV written by :class:`CsvWriter` (e.g. to resume a killed run).

    A last line without its newline (a run killed mid-write) is ignored; since each frame's
    rows are written in one write, the last complete line ends a complete frame. Raises :class:`OutputFileError`
    naming the file for a missing file, a wrong header or a malformed complete line;
    ``upto_damage``: the rows before the first malformed line instead (NUL bytes or a torn line
    left by two writers), ``complete_bytes`` then ending before it.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise OutputFileError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise OutputFileError(f"{p}: is a directory") from None
    end = data.rfind(b"\n") + 1
    raw_lines = data[:end].split(b"\n")[:-1]
    if not raw_lines:
        raise OutputFileError(f"{p}: empty file, no header")
    try:
        header = next(csv.reader([raw_lines[0].decode("utf-8", errors="replace")]))
    except (csv.Error, StopIteration):
        header = []
    names = tuple(h.strip() for h in header)
    if names not in (COLUMNS, POSE_CSV_COLUMNS):
        raise OutputFileError(f"{p}: not a facetrack/OpenFace landmark CSV (unexpected header)")
    ncol = len(names)
    vals = np.zeros((len(raw_lines) - 1, ncol), np.float64)
    offset = len(raw_lines[0]) + 1
    n = 0
    for i, line in enumerate(raw_lines[1:]):
        problem = None
        if b"\0" in line:
            problem = f"line {i + 2} holds NUL bytes"
        else:
            r = line.decode("utf-8", errors="replace").rstrip("\r").split(",")
            if len(r) != ncol:
                problem = f"line {i + 2} has {len(r)} fields, expected {ncol}"
            else:
                try:
                    vals[i] = [float(v) for v in r]
                except ValueError:
                    problem = f"line {i + 2}: non-numeric value"
        if problem is not None:
            if not upto_damage:
                raise OutputFileError(f"{p}: {problem}")
            end = offset
            break
        offset += len(line) + 1
        n += 1
    vals = vals[:n]
    x0 = names.index("x_0")
    lm = np.stack([vals[:, x0:x0 + N_POINTS], vals[:, x0 + N_POINTS:x0 + 2 * N_POINTS]], axis=-1).astype(np.float32)
    pose = None if names == COLUMNS else np.concatenate([vals[:, 5:x0], vals[:, x0 + 2 * N_POINTS:]], axis=1)
    return LandmarkTable(vals[:, 0].astype(np.int64), vals[:, 1].astype(np.int64), vals[:, 2], vals[:, 3],
                         vals[:, 4].astype(bool), lm, end, pose)


def truncate_to_complete(path: str | os.PathLike, upto_damage: bool = False) -> LandmarkTable:
    """Cut a partly written last line off ``path`` (so appended rows start on a new line) and
    return its table; ``upto_damage``: also every line from the first malformed one on."""
    table = read_landmarks_csv(path, upto_damage=upto_damage)
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
    #: the finished file, for a complete record: ``{"bytes", "sha256", "frames", "rows"}``, so a
    #: file changed since (another writer, a copy cut short) is not taken as complete
    file: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"input": self.input, "model": self.model, "start": self.start, "end": self.end,
             "options": self.options, "complete": self.complete}
        if self.file is not None:
            d["file"] = self.file
        return d

    def completed(self, out: str | os.PathLike, frames: int, rows: int) -> "RunRecord":
        """This record marked complete, with the size and SHA-256 of ``out`` as it is now."""
        from dataclasses import replace

        p = Path(out)
        return replace(self, complete=True, file={"bytes": p.stat().st_size, "sha256": file_sha256(p),
                                                  "frames": int(frames), "rows": int(rows)})

    def mismatch(self, out: str | os.PathLike) -> str | None:
        """Why ``out`` is not the complete file this record describes (``None``: it is). Records
        written before the file was hashed are checked by their rows: each frame once, in order."""
        p = Path(out)
        try:
            if self.file is not None:
                size = p.stat().st_size
                if size != self.file.get("bytes"):
                    return f"{size} bytes, its record says {self.file.get('bytes')}"
                if file_sha256(p) != self.file.get("sha256"):
                    return "its rows differ from the ones its record was written for"
                return None
            table = read_landmarks_csv(p)
        except OutputFileError as e:
            return str(e).removeprefix(f"{p}: ")
        except OSError as e:
            return e.strerror or str(e)
        if p.stat().st_size != table.complete_bytes:
            return "its last line is incomplete"
        return frame_order_problem(table)

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
    """Write ``record`` beside ``out`` atomically: a temporary file, synced, renamed over it
    (and the folder synced), so a record on disk is never ahead of the rows it describes
    when the caller has synced the rows first (:meth:`_FrameWriter.sync`)."""
    dst = record_path(out)
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(record.to_json(), indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
        _sync_folder(dst.parent)
    except OSError as e:
        raise OutputFileError(f"{dst}: cannot be written ({e.strerror or e})") from None


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def read_record(out: str | os.PathLike) -> RunRecord | None:
    """The record beside ``out``; ``None`` when there is none. :class:`OutputFileError` when
    it is not a record."""
    src = record_path(out)
    try:
        d = json.loads(src.read_text())
        file = d.get("file")
        return RunRecord(d["input"], d["model"], int(d["start"]), None if d["end"] is None else int(d["end"]),
                         dict(d["options"]), bool(d.get("complete", False)), dict(file) if file is not None else None)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OutputFileError(f"{src}: not a facetrack run record ({e})") from None


def frame_order_problem(table: LandmarkTable) -> str | None:
    """What is wrong with the order of a table's rows (``None``: nothing): frames in rising
    order, each frame's faces once and in rising order, as a single writer leaves them."""
    if not len(table.frame):
        return None
    f, fid = table.frame, table.face_id
    step = np.diff(f)
    back = np.flatnonzero((step < 0) | ((step == 0) & (np.diff(fid) <= 0)))
    if len(back):
        i = int(back[0]) + 1
        return f"frame {int(f[i])} (face {int(fid[i])}) appears again or out of order at row {i + 1}"
    return None


# --- one writer per output ---------------------------------------------------------------------
LOCK_SUFFIX = ".lock"


class OutputLockedError(OutputFileError):
    """Another run holds the lock of this output file."""


class OutputLock:
    """An exclusive lock on one output file, so that two runs never write it at once: an
    ``fcntl.flock`` on ``<file>.lock`` beside it (holding the owner's pid), taken without
    waiting. The kernel drops the lock when its holder dies, however it dies, so a killed run
    leaves at most a stale, unlocked ``.lock`` file that the next run takes over; a run that
    ends removes it."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = self.out.with_name(self.out.name + LOCK_SUFFIX)
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        import fcntl

        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except FileNotFoundError as e:
                if self.out.parent.is_dir():  # e.g. /proc: the folder takes no new files
                    raise OutputFileError(f"{self.out}: cannot be created ({e.strerror})") from None
                raise OutputFileError(f"{self.out}: folder does not exist") from None
            except OSError as e:
                raise OutputFileError(f"{self.out}: cannot be locked ({self.path.name}: {e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read_pid(fd)
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    who = f" (pid {holder})" if holder else ""
                    raise OutputLockedError(f"{self.out}: being written by another facetrack run{who}; "
                                            f"not writing it twice: wait for it, or choose another --out") from None
                raise OutputFileError(f"{self.out}: cannot be locked ({e.strerror or e})") from None
            # the holder we waited on may have removed the file just before we locked it: a lock
            # on a file that is no longer at this path guards nothing
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)
        raise OutputLockedError(f"{self.out}: its lock file {self.path.name} keeps changing; another run is starting")

    def release(self) -> None:
        """Remove the lock file and drop the lock (removed first, while still held)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None
