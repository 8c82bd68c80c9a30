"""The CLI's head pose: OpenFace's columns by default, read by name; --pose off leaves them out
and nothing else changes; --fx/--fy/--cx/--cy; --resume refuses to mix the two layouts."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from facetrack.cli.main import main
from facetrack.io.output import COLUMNS, POSE_CSV_COLUMNS, read_record

CLIP = "videos_unlabelled/sbr_demo_selfie.mp4"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    from facetrack.engines import registry

    d = tmp_path_factory.mktemp("pose")
    src = str(data_dir / CLIP)
    out = {}
    # the command registers the torch backend; conftest's per-test restore does not reach a
    # module fixture, so this one puts the registry back itself
    backends, suffixes = dict(registry.BACKENDS), dict(registry.SUFFIXES)
    try:
        for name, extra in (("on", []), ("off", ["--pose", "off"]), ("fx", ["--fx", "1060"])):
            p = d / f"{name}.csv"
            assert main([src, "--out", str(p), "-q", "--end", "12f", *extra]) == 0
            out[name] = p
    finally:
        registry.BACKENDS.clear()
        registry.BACKENDS.update(backends)
        registry.SUFFIXES.clear()
        registry.SUFFIXES.update(suffixes)
    return out


def test_the_default_csv_has_openfaces_pose_columns_read_by_name(runs):
    rows = _rows(runs["on"])
    assert tuple(rows[0]) == POSE_CSV_COLUMNS and len(rows) == 12
    ok = [r for r in rows if r["success"] == "1"]
    assert len(ok) >= 10
    for r in ok:
        assert 50 < float(r["pose_Tz"]) < 2000  # mm in front of the camera
        assert all(abs(float(r[k])) < np.pi / 2 for k in ("pose_Rx", "pose_Ry", "pose_Rz"))  # a face turned to the camera
        assert float(r["p_scale"]) > 0 and 0 < float(r["p_tx"]) < 450 and 0 < float(r["p_ty"]) < 680


def test_pose_off_gives_the_landmark_layout_and_the_same_landmarks(runs):
    on, off = _rows(runs["on"]), _rows(runs["off"])
    assert tuple(off[0]) == COLUMNS
    assert [{k: r[k] for k in COLUMNS} for r in on] == off
    assert read_record(runs["on"]).options["pose"] == "on" and "pose" not in read_record(runs["off"]).options


def test_the_focal_length_given_is_the_one_used(runs):
    on, fx = _rows(runs["on"]), _rows(runs["fx"])
    # the selfie is 450x680: OpenFace's default focal length is 500 * (450/640 + 680/480) / 2 = 529.9 px
    ratio = [float(b["pose_Tz"]) / float(a["pose_Tz"]) for a, b in zip(on, fx) if a["success"] == b["success"] == "1"]
    assert len(ratio) >= 10 and np.allclose(ratio, 1060 / (500 * (450 / 640 + 680 / 480) / 2), rtol=0.03)
    assert read_record(runs["fx"]).options["camera"] == [1060.0, None, None, None]


def test_resume_refuses_to_mix_the_layouts_and_continues_the_same(tmp_path, data_dir, capsys):
    src = str(data_dir / CLIP)
    out = tmp_path / "r.csv"
    assert main([src, "--out", str(out), "-q", "--end", "6f"]) == 0
    before = out.read_bytes()
    assert main([src, "--out", str(out), "-q", "--end", "9f", "--resume", "--pose", "off"]) == 1
    err = capsys.readouterr().err
    assert "head pose on vs off" in err and "--pose on" in err and out.read_bytes() == before
    assert main([src, "--out", str(out), "-q", "--end", "9f", "--resume"]) == 0
    rows = _rows(out)
    assert [r["frame"] for r in rows] == [str(i) for i in range(1, 10)] and tuple(rows[0]) == POSE_CSV_COLUMNS
    assert main([src, "--out", str(out), "-q", "--end", "9f", "--resume", "--fx", "900"]) == 1  # another camera
    assert "camera" in capsys.readouterr().err


@pytest.mark.parametrize("opt,value", [("--fx", "0"), ("--fy", "-2"), ("--cx", "nan"), ("--fx", "inf")])
def test_bad_camera_values_are_usage_errors(tmp_path, data_dir, capsys, opt, value):
    assert main([str(data_dir / CLIP), "--out", str(tmp_path / "x.csv"), "-q", opt, value]) == 2
    assert opt in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_json_faces_carry_the_pose(tmp_path, data_dir):
    out = tmp_path / "p.jsonl"
    assert main([str(data_dir / CLIP), "--out", str(out), "-q", "--end", "4f", "--format", "json"]) == 0
    faces = [f for line in out.read_text().splitlines() for f in json.loads(line)["faces"]]
    assert all(list(f["pose"]) == list(POSE_CSV_COLUMNS[5:11] + POSE_CSV_COLUMNS[-6:]) for f in faces)
    assert any(f["success"] and f["pose"]["pose_Tz"] > 0 for f in faces)
