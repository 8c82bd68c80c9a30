"""OpenFace-layout CSV and JSON-lines writers: layout, per-frame flushing, resume reading."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest

from facetrack.io.landmarks import read_pts
from facetrack.io.output import COLUMNS, CsvWriter, JsonLinesWriter, OutputFileError, open_writer, read_landmarks_csv, truncate_to_complete


@dataclass(frozen=True)
class Face:
    face_id: int
    landmarks: np.ndarray
    confidence: float
    success: bool
    box: np.ndarray | None = None
    state: str = "tracking"


@pytest.fixture(scope="module")
def shape(data_dir) -> np.ndarray:
    return read_pts(sorted((data_dir / "images68" / "helen_test").glob("*.pts"))[0])


def test_openface_layout_parses_with_csv_module(tmp_path, shape):
    path = tmp_path / "l.csv"
    with CsvWriter(path) as w:
        w.write_frame(1, 0.0, [Face(0, shape, 0.91234, True)])
        w.write_frame(2, 1 / 30, [Face(0, shape + 1.0, 0.8, True), Face(1, shape + 100.0, 0.7, True)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(COLUMNS)
    assert rows[0][:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert rows[0][5] == "x_0" and rows[0][72] == "x_67" and rows[0][73] == "y_0" and rows[0][-1] == "y_67"
    assert len(rows) == 4 and all(len(r) == 5 + 136 for r in rows)
    assert rows[1][:5] == ["1", "0", "0.000", "0.912", "1"]
    assert rows[2][:5] == ["2", "0", "0.033", "0.800", "1"] and rows[3][:2] == ["2", "1"]
    xs = np.array(rows[1][5:73], float)
    ys = np.array(rows[1][73:], float)
    np.testing.assert_allclose(np.stack([xs, ys], 1), shape, atol=5e-4)
    assert all(len(v.split(".")[1]) == 3 for v in rows[1][5:])  # 3 decimals
    np.testing.assert_allclose(np.array(rows[3][5:73], float), shape[:, 0] + 100.0, atol=5e-4)


def test_rows_are_flushed_after_every_frame(tmp_path, shape):
    path = tmp_path / "l.csv"
    w = CsvWriter(path)
    for k in range(3):
        w.write_frame(k + 1, k / 30, [Face(0, shape + k, 0.9, True)])
        table = read_landmarks_csv(path)  # read while the writer is still open
        assert table.last_frame == k + 1 and len(table.frame) == k + 1
        assert path.read_bytes().endswith(b"\n")
    np.testing.assert_allclose(table.landmarks[2], shape + 2, atol=5e-4)
    w.close()


def test_failed_rows_carry_last_known_landmarks_or_zeros(tmp_path, shape):
    path = tmp_path / "l.csv"
    with CsvWriter(path) as w:
        w.write_frame(1, 0.0, [])  # no face yet: zeros
        w.write_frame(2, 0.1, [Face(0, shape, 0.9, True)])
        w.write_frame(3, 0.2, [])  # lost: last known
        nan = np.full((68, 2), np.nan, np.float32)
        w.write_frame(4, 0.3, [Face(0, nan, float("nan"), True)])  # non-finite can never reach the file
    t = read_landmarks_csv(path)
    assert list(t.frame) == [1, 2, 3, 4] and list(t.success) == [False, True, False, False]
    assert np.all(t.landmarks[0] == 0)
    np.testing.assert_allclose(t.landmarks[2], shape, atol=5e-4)
    np.testing.assert_allclose(t.landmarks[3], shape, atol=5e-4)
    assert np.isfinite(t.confidence).all() and "nan" not in path.read_text().lower()


def test_resume_reads_last_complete_frame_and_cuts_partial_line(tmp_path, shape):
    path = tmp_path / "l.csv"
    with CsvWriter(path) as w:
        for k in range(4):
            w.write_frame(k + 1, k / 30, [Face(0, shape, 0.9, True)])
    full = path.read_bytes()
    path.write_bytes(full + b"5,0,0.133,0.9,1,12.5,13")  # a run killed mid-line
    t = truncate_to_complete(path)
    assert t.last_frame == 4 and path.read_bytes() == full
    with CsvWriter(path, append=True) as w:  # appending writes no second header
        w.write_frame(5, 4 / 30, [Face(0, shape, 0.9, True)])
    text = path.read_text()
    assert text.count("frame,face_id") == 1
    assert read_landmarks_csv(path).last_frame == 5


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    (b"", "empty file"),
    (b"a,b,c\n1,2,3\n", "unexpected header"),
    (",".join(COLUMNS).encode() + b"\n1,0,0.0\n", "fields"),
])
def test_read_errors_name_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(OutputFileError, match=problem) as e:
        read_landmarks_csv(path)
    assert str(path) in str(e.value)


def test_writer_errors(tmp_path):
    with pytest.raises(OutputFileError, match="is a directory"):
        CsvWriter(tmp_path)
    with pytest.raises(OutputFileError, match="folder does not exist"):
        CsvWriter(tmp_path / "missing" / "l.csv")
    with pytest.raises(ValueError, match="unknown output format"):
        open_writer(tmp_path / "x", "xml")


def test_json_lines_one_object_per_frame(tmp_path, shape):
    path = tmp_path / "l.jsonl"
    box = np.array([1, 2, 3, 4], np.float32)
    with JsonLinesWriter(path) as w:
        w.write_frame(1, 0.0, [Face(0, shape, 0.9, True, box, "detected")], cut=True)
        w.write_frame(2, 0.5, [])
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    a, b = (json.loads(x) for x in lines)
    assert a["frame"] == 1 and a["cut"] is True and a["faces"][0]["state"] == "detected"
    assert a["faces"][0]["box"] == [1, 2, 3, 4]
    np.testing.assert_allclose(np.array(a["faces"][0]["landmarks"]), shape, atol=5e-4)
    assert b["faces"][0]["success"] == 0 and b["faces"][0]["state"] == "lost"


# --- issue 14: a full disk never leaves a torn row; resuming carries the last landmarks; records --
class _FillsUp:
    """A file object over a real file that takes ``room`` more bytes, then fails with ENOSPC
    (a short write first, as a full disk gives), like ``FileIO`` with ``buffering=0``."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        import errno

        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.f.write(bytes(data[: self.room]))
        self.room -= n
        return n

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.mark.parametrize("room", [0, 10, 900, 1500])
def test_a_full_disk_mid_row_is_cut_back_to_the_last_whole_frame(tmp_path, shape, room):
    path = tmp_path / "l.csv"
    w = CsvWriter(path)
    w.write_frame(1, 0.0, [Face(0, shape, 0.9, True)])
    complete = path.read_bytes()
    w._f = _FillsUp(w._f, room)  # the disk has `room` bytes left: part of frame 2's row, not all
    with pytest.raises(OutputFileError, match="l.csv: write failed .No space left on device"):
        w.write_frame(2, 1 / 30, [Face(0, shape + 1, 0.9, True), Face(1, shape + 50, 0.8, True)])
    w.close()
    assert path.read_bytes() == complete  # no torn row: the file ends on frame 1's newline
    assert list(read_landmarks_csv(path).frame) == [1]


def test_dev_full_gives_one_error_and_no_exception_from_the_cut_back():
    """/dev/full: every write fails and a character device has no position to cut back to."""
    with pytest.raises(OutputFileError, match="/dev/full: write failed"):
        CsvWriter("/dev/full")


def test_last_landmarks_of_a_table_seed_a_continuing_writer(tmp_path, shape):
    path = tmp_path / "l.csv"
    with CsvWriter(path) as w:
        w.write_frame(1, 0.0, [Face(0, shape, 0.9, True), Face(1, shape + 40, 0.9, True)])
        w.write_frame(2, 0.1, [Face(0, shape + 2, 0.9, True)])
    table = read_landmarks_csv(path)
    last = table.last_landmarks()
    assert sorted(last) == [0, 1]
    np.testing.assert_allclose(last[0], shape + 2, atol=1e-3)
    np.testing.assert_allclose(last[1], shape + 40, atol=1e-3)
    with open_writer(path, append=True, last=last) as w:
        w.write_frame(3, 0.2, [])  # no face: face 0's row repeats its last landmarks, not zeros
    t = read_landmarks_csv(path)
    assert not t.success[-1]
    np.testing.assert_allclose(t.landmarks[-1], shape + 2, atol=1e-3)


def test_run_records_compare_content_not_names(tmp_path):
    from facetrack.io.output import RunRecord, input_identity, read_record, record_path, write_record

    a, b, c = tmp_path / "a.mp4", tmp_path / "moved.mp4", tmp_path / "other.mp4"
    a.write_bytes(b"x" * 5000)
    b.write_bytes(b"x" * 5000)
    c.write_bytes(b"y" * 5000)
    model = {"name": "mdm", "sha256": ["abc"]}
    rec = RunRecord(input_identity(a), model, 0, None, {"max_faces": 1})
    write_record(tmp_path / "l.csv", rec)
    assert record_path(tmp_path / "l.csv").name == "l.csv.run.json"
    back = read_record(tmp_path / "l.csv")
    assert back == rec
    assert back.differences(RunRecord(input_identity(b), model, 0, 50, {"max_faces": 1})) == []  # moved, other end
    diffs = back.differences(RunRecord(input_identity(c), {"name": "aan", "sha256": ["def"]}, 3, None, {"max_faces": 2}))
    assert diffs == [f"input ({a} vs {c})", "model (mdm vs aan)", "start frame (0 vs 3)", "max_faces (1 vs 2)"]
    assert read_record(tmp_path / "none.csv") is None
    (tmp_path / "bad.csv.run.json").write_text("{not json")
    with pytest.raises(OutputFileError, match="bad.csv.run.json: not a facetrack run record"):
        read_record(tmp_path / "bad.csv")


def test_image_csv_names_each_image_and_carries_nothing_between_images(tmp_path, shape):
    from facetrack.io.output import IMAGE_COLUMNS, ImageCsvWriter

    path = tmp_path / "l.csv"
    with ImageCsvWriter(path) as w:
        w.write_frame(1, 0.0, [Face(0, shape, 0.9, True)], image="a,b.jpg")
        w.write_frame(2, 0.0, [], image="c.jpg")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(IMAGE_COLUMNS) and [r[0] for r in rows[1:]] == ["a,b.jpg", "c.jpg"]
    assert all(float(v) == 0.0 for v in rows[2][6:])  # c.jpg has no face: zeros, not a.jpg's landmarks
