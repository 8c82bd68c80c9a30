"""The head-pose solver's 3-D face is made by a command from the training labels: the shipped
file is what the command makes, and its scale is the stated eye distance."""
from __future__ import annotations

import json

import numpy as np

from facetrack.tracker.markup import pupils
from facetrack.tracker.pose import DEFAULT_PATH, FaceModel
from facetrack.train.loops.face3d import main


def test_the_command_remakes_the_shipped_face_model(tmp_path, data_dir):
    out = tmp_path / "face3d.json"
    assert main(["--data", str(data_dir), "--out", str(out)]) == 0
    made, shipped = FaceModel.load(out), FaceModel.load(DEFAULT_PATH)
    np.testing.assert_allclose(made.points, shipped.points, atol=1e-3)
    assert made.record["training_shapes"] == shipped.record["training_shapes"] > 2000
    assert made.record["test_images_used"] is False


def test_eye_distance_sets_the_scale_only(tmp_path, data_dir):
    out = tmp_path / "f.json"
    assert main(["--data", str(data_dir), "--out", str(out), "--eye-distance-mm", "70"]) == 0
    p = FaceModel.load(out).points
    e = pupils(p)
    assert abs(np.linalg.norm(e[1] - e[0]) - 70.0) < 1e-3
    np.testing.assert_allclose(p * 63.0 / 70.0, FaceModel.load(DEFAULT_PATH).points, atol=2e-3)


def test_bad_options_and_files(tmp_path, data_dir, capsys):
    assert main(["--data", str(data_dir), "--out", str(tmp_path / "x.json"), "--eye-distance-mm", "0"]) == 2
    assert "--eye-distance-mm" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": 1, "units": "mm", "points": [[0, 0, 0]] * 5}))
    try:
        FaceModel.load(bad)
    except ValueError as e:
        assert str(bad) in str(e) and "(68, 3)" in str(e)
    else:
        raise AssertionError("a 5-point model was accepted")
