"""``python -m facetrack.train.loops.shape_model``: the model is fitted on the trainer's training split
only (mirrored too), with its record; bad options are one line and exit 2."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facetrack.train.loops.shape_model import main, training_shapes
from facetrack.tracker.shape_model import ShapeModel


def test_fits_the_training_split_mirrored_with_its_record(data_dir: Path, tmp_path: Path):
    out = tmp_path / "sm.json"
    assert main(["--data", str(data_dir), "--out", str(out), "--sources", "images68:4", "pseudo_dlib:1", "--keep", "6"]) == 0
    model = ShapeModel.load(out)
    r = model.record
    shapes = training_shapes(data_dir, ["images68:4", "pseudo_dlib:1"], 0)
    assert len(shapes) == 2 * r["training_shapes"] and r["mirrored"] and r["test_images_used"] is False
    assert len(model.modes) == 6 and np.all(np.diff(model.variance) <= 1e-12)
    np.testing.assert_allclose(model.modes @ model.modes.T, np.eye(6), atol=1e-6)
    # mirrored: the mean shape is left-right symmetric (point 36's mirror is 45, about the face's axis)
    assert abs((model.mean[36, 0] + model.mean[45, 0]) / 2 - (model.mean[39, 0] + model.mean[42, 0]) / 2) < 0.05
    assert "tracking_modes" not in r  # no --choose: the tracker falls back to the raw start


def test_bad_modes_are_a_usage_line(data_dir: Path, tmp_path: Path, capsys):
    assert main(["--data", str(data_dir), "--out", str(tmp_path / "x.json"), "--keep", "5", "--choose", "c.pt", "--modes", "9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--modes" in err[0]
    assert not (tmp_path / "x.json").exists()
