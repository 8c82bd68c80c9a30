"""Face detector benchmark: recall and false detections on real frames, CPU ms per search.

For each detector of ``facetrack.tracker.detect.DETECTORS`` (those whose package is installed):

- ``frames_v2`` (``shared/data/frames_v2/boxes.jsonl``: full frames, teacher boxes for every
  face the teachers settled, ``ignore`` boxes, no-face crops): recall over all faces, over the
  ``hard`` ones (found by one teacher only) and over faces under 64 px; false detections per
  100 frames and the share of no-face crops with any detection. A detection matches a face
  when each box's centre lies inside the other and their sides (geometric means) are within a
  factor 2 (box conventions differ between detectors); one detection per face, best first; a
  detection on an ``ignore`` box counts neither way.
- ``boxes_existing.jsonl``: the same on the images68 pictures (human-landmark boxes where
  annotated), the pseudo_dlib images and one frame per second of the two videos;
- CPU ms per search (median; and of the slowest part) on every 10th frame of
  ``short_hamilton_clip.mp4`` (640x360) with OpenCV on one thread.

These are teacher boxes (MediaPipe's BlazeFace and dlib's HOG), not people's: a detector that
agrees with dlib scores well by construction on the faces only dlib found.

``--heldout-of FILE``: only the ``frames_v2`` groups a trained detector file was not trained on
(its ``facetrack.detector.heldout_groups`` metadata, :mod:`facetrack.tracker.detect_cnn`), for
every detector measured, so all are compared on the same held-out frames.

Usage: ``python -m facetrack.bench.detectors [--data ../shared/data] [--stride 1] [--only NAME ...] [--heldout-of FILE] [--json PATH]``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from facetrack.bench.environment import SetupError, data_dir
from facetrack.tracker.detect import DETECTORS, DetectorUnavailableError, make_detector
from facetrack.tracker.geometry import BoxCalibration

TIMING_VIDEO = "videos_unlabelled/short_hamilton_clip.mp4"


def matches(det: np.ndarray, face: np.ndarray) -> bool:
    """A detection box and a face box (``x0, y0, x1, y1``) are the same face: each centre lies
    inside the other box and their geometric-mean sides are within a factor 2."""
    dc, fc = (det[:2] + det[2:]) / 2, (face[:2] + face[2:]) / 2
    inside = bool(np.all(face[:2] <= dc) and np.all(dc <= face[2:]) and np.all(det[:2] <= fc) and np.all(fc <= det[2:]))
    ds, fs = np.sqrt(np.prod(det[2:] - det[:2])), np.sqrt(np.prod(face[2:] - face[:2]))
    return inside and 0.5 <= ds / fs <= 2.0


def score_frame(dets: list[np.ndarray], faces: list[np.ndarray], ignore: list[np.ndarray]) -> tuple[list[bool], int]:
    """(found flag per face, false detections): detections best first, each used once."""
    found = [False] * len(faces)
    false = 0
    for d in dets:
        k = next((i for i, f in enumerate(faces) if not found[i] and matches(d, f)), None)
        if k is not None:
            found[k] = True
        elif not any(matches(d, g) for g in ignore) and not any(matches(d, f) for f in faces):
            false += 1
    return found, false


def load_entries(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


_VIDEO_CACHE: dict[Path, list[np.ndarray]] = {}


def read_gray(path: Path, frame: int | None = None) -> np.ndarray:
    """An image, or frame ``frame`` (from 1) of a video, as ``uint8`` grey."""
    if frame is None:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise OSError(f"{path}: cannot read image")
        return gray
    if path not in _VIDEO_CACHE:
        _VIDEO_CACHE[path] = video_frames(path, 1)
    return _VIDEO_CACHE[path][frame - 1]


def evaluate(detector, entries: list[dict], root: Path) -> dict:
    """Recall / false detections of ``detector`` over ``entries`` (frames_v2 records, image
    or video paths relative to ``root``)."""
    found, hard, small, false, frames, empty_hit, empty = [], [], [], 0, 0, 0, 0
    for e in entries:
        gray = read_gray(root / e["file"], e.get("frame"))
        dets = [d.box for d in detector.detect(gray)]
        faces = [np.asarray(f["box"], np.float64) for f in e["faces"]]
        ok, fa = score_frame(dets, faces, [np.asarray(b, np.float64) for b in e.get("ignore", [])])
        frames += 1
        false += fa
        if e["kind"] == "no_face_crop":
            empty += 1
            empty_hit += bool(dets)
        for f, hit in zip(e["faces"], ok):
            found.append(hit)
            if f.get("hard"):
                hard.append(hit)
            b = f["box"]
            if max(b[2] - b[0], b[3] - b[1]) < 64:
                small.append(hit)
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return {"faces": len(found), "recall": mean(found), "recall_hard": mean(hard), "n_hard": len(hard),
            "recall_small": mean(small), "n_small": len(small), "false_per_100_frames": 100.0 * false / max(frames, 1),
            "false": false, "frames": frames, "empty_frames_with_detection": empty_hit, "empty_frames": empty}


def video_frames(path: Path, stride: int) -> list[np.ndarray]:
    """Every ``stride``-th frame of ``path`` as ``uint8`` grey."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"{path}: cannot open video")
    frames, i = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % stride == 0:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        i += 1
    cap.release()
    return frames


def search_cpu_ms(detector, frames: list[np.ndarray]) -> tuple[float, float]:
    """(median CPU ms of a whole search, median CPU ms of its slowest part)."""
    whole, worst = [], []
    for g in frames:
        c = time.process_time()
        detector.detect(g)
        whole.append((time.process_time() - c) * 1e3)
        parts = []
        for k in range(detector.parts):
            c = time.process_time()
            detector.detect_part(g, k)
            parts.append((time.process_time() - c) * 1e3)
        worst.append(max(parts))
    return float(np.median(whole)), float(np.median(worst))


def bench(name: str, data: Path, stride: int, timing: list[np.ndarray], groups: set[str] | None = None) -> dict:
    """The figures of detector ``name``; ``groups``: only these ``frames_v2`` groups."""
    det = make_detector(name, calibration=BoxCalibration())
    det.detect(np.zeros((64, 64), np.uint8))  # warm-up
    v2 = [e for e in load_entries(data / "frames_v2" / "boxes.jsonl") if groups is None or e["group"] in groups][::stride]
    existing = load_entries(data / "frames_v2" / "boxes_existing.jsonl")
    row: dict = {"detector": name, "parts": det.parts}
    row["frames_v2"] = evaluate(det, v2, data / "frames_v2")
    row["images68"] = evaluate(det, [e for e in existing if e["file"].startswith("images68/")], data)
    row["pseudo_dlib"] = evaluate(det, [e for e in existing if e["file"].startswith("pseudo_dlib/")
                                        and not e["group"].startswith("videos_unlabelled/")], data)
    for v in ("short_hamilton_clip", "sbr_demo_selfie"):
        row[v] = evaluate(det, [e for e in existing if e["file"] == f"videos_unlabelled/{v}.mp4"], data)
    row["cpu_ms_search"], row["cpu_ms_slowest_part"] = search_cpu_ms(det, timing)
    return row


def table(rows: list[dict]) -> str:
    """A markdown table of the figures."""
    out = ["| detector | parts | frames_v2 recall (hard, <64 px) | false / 100 frames | no-face crops hit | images68 recall |"
           " pseudo_dlib recall | Hamilton recall, false | selfie recall | CPU ms / search (slowest part) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v, h = r["frames_v2"], r["short_hamilton_clip"]
        out.append(f"| {r['detector']} | {r['parts']} | {v['recall']:.3f} ({v['recall_hard']:.2f}, {v['recall_small']:.2f}) | "
                   f"{v['false_per_100_frames']:.1f} | {v['empty_frames_with_detection']}/{v['empty_frames']} | "
                   f"{r['images68']['recall']:.3f} | {r['pseudo_dlib']['recall']:.3f} | {h['recall']:.2f}, {h['false']} | "
                   f"{r['sbr_demo_selfie']['recall']:.2f} | {r['cpu_ms_search']:.1f} ({r['cpu_ms_slowest_part']:.1f}) |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (frames_v2, images68, ...); default: $FACETRACK_DATA")
    ap.add_argument("--stride", type=int, default=1, help="use every n-th frames_v2 record (default 1: all)")
    ap.add_argument("--only", nargs="*", default=None, help="detector names (default: all)")
    ap.add_argument("--heldout-of", type=Path, default=None, metavar="FILE",
                    help="only the frames_v2 groups this trained detector (ONNX) was not trained on")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        args.data = data_dir(args.data)
    except SetupError as e:
        print(f"facetrack.bench.detectors: {e}", file=sys.stderr)
        return 2
    groups = None
    if args.heldout_of is not None:
        from facetrack.tracker.detect_cnn import heldout_groups

        try:
            groups = set(heldout_groups(args.heldout_of))
        except (ValueError, FileNotFoundError) as e:
            print(f"facetrack.bench.detectors: {e}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(1)
    timing = video_frames(args.data / TIMING_VIDEO, 10)
    rows = []
    for name in args.only or list(DETECTORS):
        try:
            rows.append(bench(name, args.data, args.stride, timing, groups))
        except DetectorUnavailableError as e:
            print(f"{name}: skipped ({e})")
            continue
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    v2 = rows[0]["frames_v2"] if rows else {}
    held = f" of the {len(groups)} groups held out of {args.heldout_of}" if groups is not None else ""
    print(f"\nframes_v2{held} every {args.stride}: {v2.get('frames')} frames, {v2.get('faces')} faces ({v2.get('n_hard')} hard, "
          f"{v2.get('n_small')} under 64 px); timing: {len(timing)} frames of {TIMING_VIDEO}, one OpenCV thread; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
