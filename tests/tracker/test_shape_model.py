"""The shape model that constrains MDM's start when it tracks from its previous fit: what the
projection keeps and removes, its file, and the tracker on a real video with and without it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facetrack.tracker.geometry import apply_affine, similarity_matrix, template
from facetrack.tracker.shape_model import FRAME, ShapeModel, default_shape_model


def _synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shapes = template + a * mode1 + b * mode2 (two known deformations), each in a random pose."""
    rng = np.random.default_rng(seed)
    t = template(FRAME).astype(np.float64)
    m1 = np.zeros((68, 2))
    m1[48:68, 1] = np.linspace(-1, 1, 20)  # the mouth opens
    m2 = np.zeros((68, 2))
    m2[0:17, 0] = np.linspace(-1, 1, 17)  # the jaw widens
    shapes = []
    for _ in range(n):
        s = t + rng.normal(0, 4) * m1 + rng.normal(0, 3) * m2
        pose = similarity_matrix(rng.uniform(0.5, 2.0), rng.uniform(-0.5, 0.5), *rng.uniform(-50, 50, 2))
        shapes.append(apply_affine(pose, s).astype(np.float64))
    return np.stack(shapes), m1, m2


def test_projection_keeps_the_modes_and_removes_what_no_shape_does():
    shapes, m1, m2 = _synthetic()
    model = ShapeModel.fit(shapes, keep=5)
    assert model.variance[:2].sum() > 0.99  # two modes carry the synthetic variance
    t = template(112).astype(np.float64)
    in_model = t + 1.12 * (3.0 * m1 - 2.0 * m2)  # in a 112-px crop's frame (the model's frame scaled by 1.12)
    np.testing.assert_allclose(model.project(in_model, 2), in_model, atol=0.2)  # alignment absorbs a little of a mode
    off = in_model.copy()
    off[8] += [0.0, 15.0]  # the chin thrown down: no training shape does that
    back = model.project(off, 2)
    assert np.abs(back[8] - in_model[8]).max() < 3.0 and np.abs(back - in_model).max() < 3.0
    assert model.residual(off, 2) > 10 * model.residual(in_model, 2)
    # the pose of the start is kept: a rotated, shifted start comes back rotated and shifted
    pose = similarity_matrix(1.1, 0.2, 5.0, -3.0)
    moved = apply_affine(pose, in_model).astype(np.float64)
    np.testing.assert_allclose(model.project(moved, 2), moved, atol=0.2)
    # 0 modes: the mean shape in the start's pose
    np.testing.assert_allclose(model.project(in_model, 0), (model.mean - FRAME / 2) * 1.12 + 56, atol=0.5)


def test_file_round_trip_and_a_bad_file_named(tmp_path: Path):
    shapes, _, _ = _synthetic(60)
    model = ShapeModel.fit(shapes, keep=3, record={"command": "test"})
    model.save(tmp_path / "m.json")
    again = ShapeModel.load(tmp_path / "m.json")
    np.testing.assert_allclose(again.modes, model.modes, atol=1e-6)
    assert again.record == {"command": "test"}
    (tmp_path / "bad.json").write_text(json.dumps({"format": 9}))
    with pytest.raises(ValueError, match="bad.json: not a facetrack shape model"):
        ShapeModel.load(tmp_path / "bad.json")


def test_the_shipped_model_was_made_from_training_labels_and_chose_its_modes():
    model = default_shape_model()
    assert model is not None, "facetrack/tracker/data/shape_model.json is missing"
    r = model.record
    assert r["test_images_used"] is False and r["training_shapes"] > 1000 and r["mirrored"]
    assert 1 <= r["tracking_modes"] <= len(model.modes)
    rows = {row["start"]: row for row in r["tracking_choice"]["rows"]}
    # the chosen constraint tracks the held-out sequences far better than the raw previous fit
    assert rows[str(r["tracking_modes"])]["nme"] < rows["raw"]["nme"] - 0.01


@pytest.mark.slow
def test_mdm_from_its_previous_fit_stays_a_face_on_a_real_video(data_dir):
    """275 frames of the selfie (grimaces, an open mouth) tracked with MDM started from its
    previous fit: projected onto the shape model, every fit stays a face shape (its residual
    under the largest of the training faces'); started from the raw previous fit, it does not."""
    from facetrack.tracker import models
    from facetrack.tracker.tracker import Tracker, TrackerConfig
    from facetrack.io.video import VideoFile

    if "mdm" not in models.available():
        pytest.skip("needs the shipped mdm-rt")
    model = default_shape_model()
    worst = {}
    for label, modes in (("constrained", None), ("raw", 0)):
        tr = Tracker(TrackerConfig(model="mdm", track_init="shape", shape_modes=modes))
        res = []
        with VideoFile(data_dir / "videos_unlabelled" / "sbr_demo_selfie.mp4") as v:
            for _, ts, frame in v:
                r = tr.process(frame, ts)
                res += [model.residual(f.landmarks, 12) for f in r.faces if f.success]
        tr.close()
        assert len(res) > 250
        worst[label] = max(res)
    assert worst["constrained"] < 1.6 < worst["raw"], worst
