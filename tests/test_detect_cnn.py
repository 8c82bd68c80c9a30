"""The project's CNN face detector at run time (facetrack/tracker/detect_cnn.py): the decoder,
the input preparation, and the shipped weights on real frames they were not trained on."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facetrack.tracker.detect import DETECTORS, FaceDetector, make_detector
from facetrack.tracker.detect_cnn import (STRIDE, STRIDE_MULTIPLE, CnnFaceDetector, decode, default_weights, heldout_groups,
                                          model_record, prepare)
from facetrack.tracker.geometry import BoxCalibration


def _cells(h: int, w: int) -> np.ndarray:
    c = np.zeros((5, h, w), np.float32)
    c[0] = 0.05
    return c


def test_decode_picks_local_maxima_above_the_threshold():
    c = _cells(12, 20)
    c[0, 4, 6], c[0, 4, 7] = 0.9, 0.6  # a peak and its weaker neighbour: one face
    c[1:, 4, 6] = [0.25, 0.5, np.log(40 / STRIDE), np.log(48 / STRIDE)]
    c[0, 9, 15] = 0.5  # a second face, 8x8 px
    c[0, 1, 1] = 0.3  # under the threshold
    out = decode(c, threshold=0.4)
    assert [round(s, 3) for _, s in out] == [0.9, 0.5]
    cx, cy = (6 + 0.25) * STRIDE, (4 + 0.5) * STRIDE
    np.testing.assert_allclose(out[0][0], [cx - 20, cy - 24, cx + 20, cy + 24], atol=1e-4)
    np.testing.assert_allclose(out[1][0], [15 * STRIDE - 4, 9 * STRIDE - 4, 15 * STRIDE + 4, 9 * STRIDE + 4], atol=1e-4)
    assert len(decode(c, threshold=0.2)) == 3 and decode(c, threshold=0.95) == []
    assert len(decode(c, threshold=0.2, max_faces=1)) == 1


def test_prepare_scales_the_long_side_and_pads_to_the_stride():
    gray = np.full((360, 640), 7, np.uint8)
    x, f = prepare(gray, 320)
    assert x.shape == (1, 1, 192, 320) and x.dtype == np.float32 and f == pytest.approx(0.5)
    assert (x[0, 0, :180] == 7).all() and (x[0, 0, 180:] == 128).all()
    x, f = prepare(np.zeros((100, 50), np.uint8), 320)  # small frames are enlarged to the same scale
    assert x.shape[2] == 320 and x.shape[3] % STRIDE_MULTIPLE == 0 and f == pytest.approx(3.2)


def test_registered_and_a_face_detector(data_dir):
    assert {"cnn", "cnn-320", "cnn-640"} <= set(DETECTORS)
    det = make_detector("cnn", calibration=BoxCalibration())
    assert isinstance(det, FaceDetector) and det.parts == len(det.sides) == 2 and det.name == "cnn"
    with pytest.raises(ValueError, match="part 2"):
        det.detect_part(np.zeros((64, 64), np.uint8), 2)
    with pytest.raises(ValueError, match="uint8"):
        det.detect(np.zeros((64, 64), np.float32))
    # the parts (one per side) together find what the whole search finds
    gray = cv2.imread(str(data_dir / "images68" / "300wlp" / "AFW_134212_1_0.jpg"), cv2.IMREAD_GRAYSCALE)
    whole = det.detect(gray)
    assert whole
    parts = [d for k in range(det.parts) for d in det.detect_part(gray, k)]
    for d in whole:
        assert any(np.allclose(d.box, p.box) and d.score == p.score for p in parts)
    # the variants share the network's box convention, so its calibration
    assert make_detector("cnn-320").calibration == make_detector("cnn").calibration != BoxCalibration()


def test_shipped_weights_carry_their_training_record():
    rec = model_record()
    for key in ("command", "data", "split", "steps", "git_commit", "started", "finished"):
        assert rec.get(key), key
    assert "face_detector" in rec["command"] and int(rec["steps"]) > 0
    held = heldout_groups()
    assert held and len(held) == len(json.loads(rec["heldout_groups"]))


def test_bad_weights_file_is_named(tmp_path):
    bad = tmp_path / "det.onnx"
    bad.write_text("not a model")
    with pytest.raises(ValueError, match="det.onnx"):
        CnnFaceDetector(bad)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        CnnFaceDetector(tmp_path / "missing.onnx")


def _held_out(data_dir, kind: str) -> list[dict]:
    held = set(heldout_groups())
    with open(data_dir / "frames_v2" / "boxes.jsonl", encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return [r for r in recs if r["group"] in held and r["kind"] == kind]


def _matches(det: np.ndarray, face: np.ndarray) -> bool:
    dc, fc = (det[:2] + det[2:]) / 2, (face[:2] + face[2:]) / 2
    ds, fs = np.sqrt(np.prod(det[2:] - det[:2])), np.sqrt(np.prod(face[2:] - face[:2]))
    return bool(np.all(face[:2] <= dc) and np.all(dc <= face[2:]) and np.all(det[:2] <= fc) and np.all(fc <= det[2:])
                and 0.5 <= ds / fs <= 2)


def test_shipped_model_finds_held_out_faces_and_none_in_no_face_crops(data_dir):
    det = make_detector("cnn")
    frames = [r for r in _held_out(data_dir, "video_frame") if len(r["faces"]) == 1][::10]
    assert len(frames) >= 8
    hits = 0
    for r in frames:
        gray = cv2.imread(str(data_dir / "frames_v2" / r["file"]), cv2.IMREAD_GRAYSCALE)
        dets = det.detect(gray)
        hits += bool(dets) and _matches(dets[0].box, np.asarray(r["faces"][0]["box"]))
    assert hits >= len(frames) - 1, (hits, len(frames))
    empties = _held_out(data_dir, "no_face_crop")
    assert empties
    for r in empties:
        gray = cv2.imread(str(data_dir / "frames_v2" / r["file"]), cv2.IMREAD_GRAYSCALE)
        assert det.detect(gray) == [], r["file"]


def test_default_weights_path_is_in_the_package():
    assert default_weights().name == "face-detector.onnx" and default_weights().is_file()
