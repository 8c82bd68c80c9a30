"""Training the project's CNN face detector (facetrack/train/loops/face_detector.py): the group split,
the targets of a batch, a few steps that lower the loss, resuming, and the ONNX export."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the [train] extra)")
pytest.importorskip("onnx", reason="the export needs onnx (the [train] extra)")

from facetrack.train.loops import face_detector as fd  # noqa: E402
from facetrack.tracker.detect_cnn import STRIDE, CnnFaceDetector, heldout_groups, model_record  # noqa: E402


def _records(data_dir, groups: int = 2, per_group: int = 3) -> list[dict]:
    """A few frames_v2 frames with one face each, from the first ``groups`` groups, and one no-face crop."""
    recs = fd.load_records(data_dir)
    out, seen = [], {}
    for r in recs:
        if r["kind"] != "no_face_crop" and len(r["faces"]) == 1 and (r["group"] in seen or len(seen) < groups):
            if seen.get(r["group"], 0) < per_group:
                seen[r["group"]] = seen.get(r["group"], 0) + 1
                out.append(r)
    out.append(next(r for r in recs if r["kind"] == "no_face_crop"))
    return out


def test_split_keeps_whole_groups_and_is_fixed_by_the_seed():
    recs = [{"group": f"g{i // 3}"} for i in range(60)]  # 20 groups of 3 frames
    tr, held = fd.split_groups(recs, 0.15, seed=0)
    assert len(held) == 3 and len(tr) == 17 and not set(tr) & set(held)
    assert fd.split_groups(recs, 0.15, seed=0) == (tr, held)
    assert fd.split_groups(recs, 0.15, seed=1)[1] != held
    assert fd.split_groups(recs, 0.0, seed=0) == (sorted({r["group"] for r in recs}), [])


def test_batch_targets_peak_at_the_face_and_ignore_boxes_are_masked():
    gray = np.full((200, 320), 90, np.uint8)
    face = np.array([[100, 40, 180, 120]], np.float32)
    ign = np.array([[10, 10, 60, 60]], np.float32)
    samples = [fd.Sample(gray, face, ign), fd.Sample(gray, np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32))]
    rng = np.random.default_rng(3)
    masked = 0
    for _ in range(10):
        imgs, heat, mask, kept = fd.make_batch(samples, np.array([0, 1]), (320, 192), rng)
        assert imgs.shape == (2, 1, 192, 320) and heat.shape == mask.shape == (2, 192 // STRIDE, 320 // STRIDE)
        assert heat[1].max() == 0 and mask[1].min() == 1 and len(kept[1]) == 0  # the no-face frame: all negative
        for f in kept[0]:
            cx, cy = int((f[0] + f[2]) / 2 / STRIDE), int((f[1] + f[3]) / 2 / STRIDE)
            assert heat[0, cy, cx] == 1.0 and mask[0, cy, cx] == 1.0
        assert (heat[0] == 1.0).sum() == len(kept[0])
        masked += mask[0].min() == 0.0
    assert masked >= 3  # the ignore box, where the random placement keeps it in the window, leaves the loss


def test_a_few_steps_lower_the_loss_and_resume_continues(tmp_path, data_dir):
    recs = _records(data_dir)
    samples = fd.load_samples(recs, data_dir / "frames_v2")
    batch = fd.make_batch(samples, np.arange(len(samples)), (256, 256), np.random.default_rng(0))

    def loss_of(state) -> float:
        m = fd.build_model()
        m.load_state_dict(state)
        m.train()  # batch statistics: 40 steps leave BatchNorm's running averages near their start
        with torch.no_grad():
            out = m(torch.from_numpy(batch[0]))
            return float(sum(fd.losses(out, torch.from_numpy(batch[1]), torch.from_numpy(batch[2]), batch[3])))

    torch.manual_seed(0)
    before = loss_of(fd.build_model().state_dict())
    torch.manual_seed(0)
    ck = fd.train(data_dir, tmp_path, steps=40, batch=4, lr=1e-2, heldout=0.0, records=recs, save_every=1000, log_every=10)
    after = loss_of(ck["model"])
    assert ck["step"] == 40 and (tmp_path / "last.pt").is_file()
    assert after < 0.85 * before, (before, after)  # 5.62 -> 4.51 when written
    ck2 = fd.train(data_dir, tmp_path, steps=43, batch=4, heldout=0.0, records=recs, resume=True, save_every=1000)
    assert ck2["step"] == 43 and ck2["record"]["started"] == ck["record"]["started"]
    with pytest.raises(ValueError, match="another split"):
        fd.train(data_dir, tmp_path, steps=44, batch=4, heldout=0.5, records=recs, resume=True)


def test_export_round_trips_with_its_record(tmp_path):
    torch.manual_seed(0)
    model = fd.build_model()
    record = {"command": "test", "heldout_groups": json.dumps(["a/b", "c"]), "steps": "0", "git_commit": "abc"}
    path = fd.export({"model": model.state_dict(), "record": record}, tmp_path / "det.onnx")
    rec = model_record(path)
    assert rec["command"] == "test" and rec["git_commit"] == "abc" and rec["stride"] == str(STRIDE)
    assert heldout_groups(path) == ["a/b", "c"]
    det = CnnFaceDetector(path, threshold=0.0)
    x = np.random.default_rng(5).integers(0, 255, (180, 300)).astype(np.uint8)
    from facetrack.tracker.detect_cnn import OUTPUT, INPUT, prepare

    inp, _ = prepare(x, 320)
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(inp)).numpy()
    got = det._session.run([OUTPUT], {INPUT: inp})[0]
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-3


def test_turned_faces_stay_out_of_the_held_out_groups_and_their_boxes_hold_the_face(data_dir, tmp_path):
    from facetrack.tracker.detect import box_calibration
    from facetrack.train.data.datasets import load_pseudo_v2

    groups = sorted({f.group for f in load_pseudo_v2(data_dir)})
    held = set(groups[: len(groups) // 2])  # only the other half may be turned
    extra = fd.turned_samples(data_dir, held, 6, seed=0)
    assert len(extra) == 6
    allowed = {str(f.image) for f in load_pseudo_v2(data_dir) if f.group not in held}
    assert all(str(s.source) in allowed for s in extra)
    calib = box_calibration("detector:cnn")
    for s in extra:
        assert s.faces.shape == (1, 4) and s.gray.ndim == 2
        lm_box = calib(s.faces[0])  # the box maps back onto a face-sized box inside the picture
        h, w = s.gray.shape
        assert 0.15 * w < lm_box[2] - lm_box[0] < w and lm_box[0] > -0.2 * w and lm_box[2] < 1.2 * w
    recs = _records(data_dir)
    ck = fd.train(data_dir, tmp_path, steps=2, batch=4, heldout=0.0, records=recs, save_every=1000, turned=0.5, turned_faces=4)
    assert ck["step"] == 2 and "turned" in ck["record"] and "4 pseudo_v2 faces" in ck["record"]["turned"]
    with pytest.raises(ValueError, match="no faces outside"):
        fd.turned_samples(data_dir, set(groups), 2)


class _Payload:
    """What a crafted checkpoint carries: unpickling it runs ``touch MARKER``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_resume_never_unpickles_a_crafted_checkpoint(tmp_path, data_dir):
    """Before, ``--resume`` loaded last.pt as a full pickle and the payload ran."""
    marker = tmp_path / "ran"
    torch.save({"model": {}, "opt": {}, "step": 0, "record": {"x": _Payload(marker)}}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"last.pt: not a face-detector checkpoint that loads as weights only") as e:
        fd.train(data_dir, tmp_path, steps=1, batch=2, heldout=0.0, records=_records(data_dir, 1, 1), resume=True)
    assert "\n" not in str(e.value) and not marker.exists()


def test_a_checkpoint_whose_history_holds_numpy_floats_still_resumes(tmp_path):
    """Checkpoints written before the history held Python floats (numpy scalars, no code) load."""
    model = fd.build_model()
    ck = {"model": model.state_dict(), "opt": {}, "step": 3, "history": [{"step": 3, "loss": np.float64(1.5)}], "record": {}}
    torch.save(ck, tmp_path / "last.pt")
    back = fd.load_checkpoint(tmp_path / "last.pt")
    assert back["step"] == 3 and back["history"][0]["loss"] == 1.5
