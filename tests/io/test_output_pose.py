"""The head-pose columns of the CSV and JSON writers: OpenFace's names in OpenFace's order, the
values of each face's pose, zeros and success 0 where there is no pose, and reading back."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest

from facetrack.io.landmarks import read_pts
from facetrack.io.output import (COLUMNS, POSE_CSV_COLUMNS, CsvWriter, ImageCsvWriter, JsonLinesWriter, OutputFileError,
                                 columns, open_writer, read_landmarks_csv)
from facetrack.tracker.pose import HeadPose, PoseSolver

#: OpenFace 2's FeatureExtraction header (RecorderCSV) with gaze, eye landmarks, 3-D landmarks,
#: the non-rigid parameters and the AUs left out: what remains is in this order
OPENFACE_ORDER = (["frame", "face_id", "timestamp", "confidence", "success",
                   "pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
                  + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
                  + ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"])


@dataclass(frozen=True)
class Face:
    face_id: int
    landmarks: np.ndarray
    confidence: float
    success: bool
    pose: HeadPose | None = None
    box: np.ndarray | None = None
    state: str = "tracking"


@pytest.fixture(scope="module")
def shape(data_dir) -> np.ndarray:
    return read_pts(sorted((data_dir / "images68" / "helen_test").glob("*.pts"))[0])


def test_pose_columns_are_openfaces_names_in_its_order():
    assert list(POSE_CSV_COLUMNS) == OPENFACE_ORDER
    assert columns() == COLUMNS and columns(pose=True) == POSE_CSV_COLUMNS
    assert columns(pose=True, image=True) == ("image",) + POSE_CSV_COLUMNS


def test_rows_hold_each_faces_pose_by_name(tmp_path, shape):
    size = (1000, 800)
    pose = PoseSolver().solve(shape, size)
    assert pose.success
    path = tmp_path / "p.csv"
    with CsvWriter(path, pose=True) as w:
        w.write_frame(1, 0.0, [Face(0, shape, 0.9, True, pose)])
        w.write_frame(2, 0.1, [])  # no face: zeros, success 0
        w.write_frame(3, 0.2, [Face(0, shape + 1, 0.9, True, HeadPose.failed())])  # no pose: the row fails
        w.write_frame(4, 0.3, [Face(0, shape + 2, 0.9, True, None)])  # none given: fails too, never a false pose
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == OPENFACE_ORDER
    r = rows[0]
    assert r["success"] == "1"
    assert float(r["pose_Tz"]) == pytest.approx(pose.translation[2], abs=0.006)
    assert float(r["pose_Ry"]) == pytest.approx(pose.rotation[1], abs=6e-5)
    assert float(r["p_scale"]) == pytest.approx(pose.rigid[0], abs=6e-6)
    assert float(r["p_tx"]) == pytest.approx(pose.rigid[4], abs=6e-4)
    assert float(r["x_30"]) == pytest.approx(shape[30, 0], abs=6e-4) and float(r["y_67"]) == pytest.approx(shape[67, 1], abs=6e-4)
    pose_names = OPENFACE_ORDER[5:11] + OPENFACE_ORDER[-6:]
    for k in (1, 2, 3):
        assert rows[k]["success"] == "0" and all(float(rows[k][n]) == 0.0 for n in pose_names)
        assert float(rows[k]["x_0"]) == pytest.approx(shape[0, 0], abs=6e-4)  # the last known landmarks
    assert "nan" not in path.read_text().lower()
    t = read_landmarks_csv(path)
    assert t.pose.shape == (4, 12) and list(t.success) == [True, False, False, False]
    np.testing.assert_allclose(t.pose[0], pose.values, atol=6e-3)
    np.testing.assert_allclose(t.landmarks[0], shape, atol=6e-4)


def test_landmark_columns_are_the_same_with_and_without_the_pose(tmp_path, shape):
    pose = PoseSolver().solve(shape, (1000, 800))
    faces = [[Face(0, shape, 0.8, True, pose)], [], [Face(0, shape + 3, 0.7, True, pose), Face(1, shape + 90, 0.6, True, pose)]]
    for fmt, suffix in (("csv", "csv"), ("image-csv", "csv")):
        a, b = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
        with open_writer(a, fmt) as wa, open_writer(b, fmt, pose=True) as wb:
            for i, fs in enumerate(faces):
                kw = {"image": f"im{i}.jpg"} if fmt == "image-csv" else {}
                wa.write_frame(i + 1, i / 30, fs, **kw)
                wb.write_frame(i + 1, i / 30, fs, **kw)
        with open(a, newline="") as fa, open(b, newline="") as fb:
            ra, rb = list(csv.DictReader(fa)), list(csv.DictReader(fb))
        assert len(ra) == len(rb) == 4
        for x, y in zip(ra, rb):
            assert {k: y[k] for k in x} == x  # every landmark-only cell, byte for byte


def test_json_faces_carry_the_pose(tmp_path, shape):
    pose = PoseSolver().solve(shape, (1000, 800))
    path = tmp_path / "p.jsonl"
    with JsonLinesWriter(path, pose=True) as w:
        w.write_frame(1, 0.0, [Face(0, shape, 0.9, True, pose)])
        w.write_frame(2, 0.1, [])
    objs = [json.loads(line) for line in path.read_text().splitlines()]
    p = objs[0]["faces"][0]["pose"]
    assert list(p) == OPENFACE_ORDER[5:11] + OPENFACE_ORDER[-6:]
    assert p["pose_Rx"] == pytest.approx(pose.rotation[0], abs=1e-5) and p["p_ty"] == pytest.approx(pose.rigid[5], abs=1e-5)
    assert objs[1]["faces"][0]["success"] == 0 and set(objs[1]["faces"][0]["pose"].values()) == {0.0}
    with JsonLinesWriter(tmp_path / "n.jsonl") as w:
        w.write_frame(1, 0.0, [Face(0, shape, 0.9, True, pose)])
    assert "pose" not in json.loads((tmp_path / "n.jsonl").read_text())["faces"][0]


def test_a_pose_file_resumes_as_a_pose_file_and_a_mixed_header_is_refused(tmp_path, shape):
    pose = PoseSolver().solve(shape, (1000, 800))
    path = tmp_path / "p.csv"
    with CsvWriter(path, pose=True) as w:
        w.write_frame(1, 0.0, [Face(0, shape, 0.9, True, pose)])
    t = read_landmarks_csv(path)
    with CsvWriter(path, append=True, last=t.last_landmarks(), pose=True) as w:
        w.write_frame(2, 0.1, [])
    t = read_landmarks_csv(path)
    assert list(t.frame) == [1, 2] and t.pose.shape == (2, 12)
    np.testing.assert_allclose(t.landmarks[1], shape, atol=6e-4)
    bad = tmp_path / "mixed.csv"
    bad.write_text(",".join(POSE_CSV_COLUMNS[:-1]) + "\n")
    with pytest.raises(OutputFileError, match="unexpected header"):
        read_landmarks_csv(bad)
    with ImageCsvWriter(tmp_path / "i.csv", pose=True) as w:
        assert w.header.startswith("image,frame,face_id,timestamp,confidence,success,pose_Tx,")
