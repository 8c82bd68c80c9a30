"""Test-time mirroring (``Landmarker(flip=True)``, ``--flip``): the mirrored crop goes through the
model in the same call and its fit, mapped back and renumbered, is averaged with the plain one."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.engines import names
from facetrack.tracker.geometry import box_of, template
from facetrack.io.landmarks import read_pts
from facetrack.tracker.landmarker import TIGHT_BOX, Landmarker
from facetrack.tracker.markup import mirror_landmarks
from facetrack.eval.metrics import nme
from facetrack.tracker.models import resolve_model


class ShiftBackend:
    """MDM kind: returns its start moved by ``dx`` crop pixels to the right, plus (if
    ``equivariant``) the image's left-minus-right brightness in x: a model that sees the image."""

    def __init__(self, dx: float = 0.0, equivariant: bool = False, size: int = 64) -> None:
        self.metadata = {names.KIND: "mdm", names.INPUT_SIZE: str(size), names.HIDDEN_SIZE: "4", names.ARCH: "mdm-rt"}
        self.dx, self.equivariant, self.feeds = dx, equivariant, []

    def infer(self, feed):
        self.feeds.append({k: v.copy() for k, v in feed.items()})
        img = feed[names.IMAGE]
        lm = feed[names.INIT_SHAPE].astype(np.float64).copy()
        lm[..., 0] += self.dx
        if self.equivariant:
            half = img.shape[-1] // 2
            lean = 40.0 * (img[..., :half].mean(axis=(1, 2, 3)) - img[..., -half:].mean(axis=(1, 2, 3)))
            lm[..., 0] += lean[:, None]
        conf = np.linspace(0.6, 0.8, img.shape[0])
        return {names.LANDMARKS: lm.astype(np.float32), names.CONFIDENCE: conf.astype(np.float32)}


@pytest.fixture(scope="module")
def face(data_dir: Path):
    pts = sorted((data_dir / "images68" / "helen_test").glob("*.pts"))[0]
    img = cv2.imread(str(next(pts.parent.glob(pts.stem + ".*g"))), cv2.IMREAD_GRAYSCALE)
    return img, read_pts(pts)


def test_mirrored_crops_share_the_call_and_a_constant_bias_cancels(face) -> None:
    gray, shape = face
    be = ShiftBackend(dx=3.0)
    plain = Landmarker(ShiftBackend(dx=3.0)).fit_shapes(gray, [shape, shape + 5.0], init="shape")
    fits = Landmarker(be, flip=True).fit_shapes(gray, [shape, shape + 5.0], init="shape")
    feed = be.feeds[0]
    assert len(be.feeds) == 1 and feed[names.IMAGE].shape == (4, 1, 64, 64) and feed[names.HIDDEN].shape == (4, 4)
    np.testing.assert_array_equal(feed[names.IMAGE][2:], feed[names.IMAGE][:2, :, :, ::-1])
    np.testing.assert_allclose(feed[names.INIT_SHAPE][2:], mirror_landmarks(feed[names.INIT_SHAPE][:2], 64), atol=1e-5)
    for f, p, s in zip(fits, plain, [shape, shape + 5.0]):
        # without flip the bias shows (3 crop px to the right); mirrored, it points left and cancels
        assert np.abs(p.landmarks - s).mean() > 1.0
        np.testing.assert_allclose(f.landmarks, s, atol=1e-2)
    assert fits[0].confidence == pytest.approx((0.6 + (0.6 + 0.2 * 2 / 3)) / 2, abs=1e-5)  # mean of rows 0 and 2


def test_a_mirror_equivariant_model_gives_the_same_fit_with_and_without_flip(face) -> None:
    """What the image says (here its left-right brightness) survives the mirroring: a wrong
    point renumbering or pixel convention would move the average off the plain fit."""
    gray, shape = face
    plain = Landmarker(ShiftBackend(equivariant=True)).fit_shape(gray, shape, init="shape")
    flipped = Landmarker(ShiftBackend(equivariant=True), flip=True).fit_shape(gray, shape, init="shape")
    assert np.abs(plain.landmarks - shape).mean() > 0.5  # the fake does move the points
    np.testing.assert_allclose(flipped.landmarks, plain.landmarks, atol=1e-3)


def test_flip_also_averages_aan_and_keeps_non_finite_output_invalid(face) -> None:
    gray, shape = face

    class Aan(ShiftBackend):
        def __init__(self, value=None):
            super().__init__(dx=2.0)
            self.metadata = {names.KIND: "aan", names.INPUT_SIZE: "64", names.ARCH: "aan"}
            self.value = value

        def infer(self, feed):
            assert names.INIT_SHAPE not in feed
            n = feed[names.IMAGE].shape[0]
            lm = np.broadcast_to(template(64) + [2.0, 0.0], (n, 68, 2)).astype(np.float32).copy()
            if self.value is not None:
                lm[-1] = self.value  # only the mirrored copy goes wrong
            return {names.LANDMARKS: lm, names.CONFIDENCE: np.full(n, 0.7, np.float32)}

    fit = Landmarker(Aan(), flip=True).fit_box(gray, box_of(shape), calibration=TIGHT_BOX)
    ref = Landmarker(Aan()).fit_box(gray, box_of(shape), calibration=TIGHT_BOX)
    assert fit.valid and np.abs(fit.landmarks - ref.landmarks).mean() > 0.1  # the +2 px bias is gone
    bad = Landmarker(Aan(np.nan), flip=True).fit_box(gray, box_of(shape), calibration=TIGHT_BOX)
    assert not bad.valid and bad.confidence == 0.0 and np.isfinite(bad.landmarks).all()


def test_shipped_model_with_flip_fits_a_mirrored_image_as_the_mirror_of_the_fit(face) -> None:
    """With flip the shipped mdm-rt treats an image and its mirror alike: the fit of the
    mirrored image is the mirror of the fit (up to the template's own asymmetry, which starts
    the plain and the mirrored copy differently), which a plain fit is not."""
    gray, shape = face
    w = gray.shape[1]
    mgray = np.ascontiguousarray(gray[:, ::-1])
    mshape = mirror_landmarks(shape, w)

    def gap(flip: bool) -> float:
        lm = Landmarker(resolve_model("mdm"), backend="onnxruntime", flip=flip)
        a = lm.fit_box(gray, box_of(shape), calibration=TIGHT_BOX).landmarks
        b = lm.fit_box(mgray, box_of(mshape), calibration=TIGHT_BOX).landmarks
        return float(nme(mirror_landmarks(b, w), a))

    plain, flipped = gap(False), gap(True)
    # measured (outer-eye distances): this face plain 0.029, flip 0.0037; the 8 common faces
    # 0.016-0.043 against 0.001-0.008
    assert flipped < 0.01 and flipped < 0.3 * plain, (plain, flipped)


def test_cli_mirrors_images_by_default_and_video_only_when_asked(tmp_path, data_dir, capsys) -> None:
    """``--flip auto``: on for images (recorded), off for video (not recorded, so runs made before
    the option still resume); ``--flip on`` changes the rows of a video and is recorded."""
    import json

    from facetrack.cli.main import main

    pts = sorted((data_dir / "images68" / "helen_test").glob("*.pts"))[0]
    img = next(pts.parent.glob(pts.stem + ".*g"))
    rows = {}
    for flip in ("auto", "off"):
        out = tmp_path / f"img-{flip}.csv"
        assert main([str(img), "--out", str(out), "--flip", flip, "--max-faces", "3", "--quiet"]) == 0
        with out.open() as fh:
            rows[flip] = list(csv.DictReader(fh))
    gt = read_pts(pts)
    pred = {}
    for k, rs in rows.items():  # the picture holds a second face: the one nearest the truth
        faces = [np.array([[float(r[f"x_{i}"]), float(r[f"y_{i}"])] for i in range(68)]) for r in rs if r["success"] == "1"]
        pred[k] = min(faces, key=lambda p: float(nme(p, gt)))
    assert 0.0005 < nme(pred["auto"], pred["off"]) < 0.03  # a different, close fit
    assert nme(pred["auto"], gt) < 0.08

    video = data_dir / "videos_unlabelled" / "sbr_demo_selfie.mp4"
    recs = {}
    for flip in ("auto", "on"):
        out = tmp_path / f"vid-{flip}.csv"
        assert main([str(video), "--out", str(out), "--end", "5f", "--flip", flip, "--quiet"]) == 0
        recs[flip] = json.loads((tmp_path / f"vid-{flip}.csv.run.json").read_text())
    assert "flip" not in json.dumps(recs["auto"]) and '"flip": "on"' in json.dumps(recs["on"])
    # the recorded option guards --resume: the flipped run is not continued without --flip
    capsys.readouterr()
    assert main([str(video), "--out", str(tmp_path / "vid-on.csv"), "--end", "8f", "--resume", "--quiet"]) != 0
    assert "flip" in capsys.readouterr().err
