"""Face detector benchmark: recall on the real annotated faces, speed on real video frames.

For each detector of ``facetrack.tracker.detect.DETECTORS``:

- recall on the images68 faces (train pool and 300-W test faces) and on the 185 pseudo_dlib
  faces: a hit is a detection whose box contains the ground-truth landmarks' centre and has
  IoU > 0.3 with their tight box;
- ms per frame (median and mean) on frames of the two videos in videos_unlabelled, and the
  share of those frames with at least one detection.

Usage: ``python -m facetrack.bench.detectors [--data ../shared/data] [--stride 5] [--only NAME ...]``
Prints a table (and ``--json PATH`` writes the figures).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]

from facetrack.tracker.detect import DETECTORS, make_detector
from facetrack.tracker.geometry import BoxCalibration
from facetrack.train.calibrate import DEFAULT_DATA, detect_faces, load_images68, load_pseudo_dlib, match_detection

VIDEOS = ("short_hamilton_clip.mp4", "sbr_demo_selfie.mp4")


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


def recall(detector, faces) -> float:
    found = detect_faces(detector, faces)
    hits = [match_detection(found[f.image][0], f.landmarks) is not None for f in faces]
    return float(np.mean(hits)), found


def bench(name: str, images68, pseudo, videos: dict[str, list[np.ndarray]], **options) -> dict:
    det = make_detector(name, calibration=BoxCalibration(), **options)
    det.detect(np.zeros((64, 64), np.uint8))  # warm-up
    row: dict = {"detector": name}
    r68, found = recall(det, images68)
    row["recall_images68"] = r68
    row["recall_300w_test"] = float(np.mean([match_detection(found[f.image][0], f.landmarks) is not None
                                             for f in images68 if f.split == "test"]))
    row["recall_pseudo_dlib"], _ = recall(det, pseudo)
    for vname, frames in videos.items():
        ms, cpu, hit = [], [], 0
        for g in frames:
            t, c = time.perf_counter(), time.process_time()
            d = det.detect(g)
            ms.append((time.perf_counter() - t) * 1e3)
            cpu.append((time.process_time() - c) * 1e3)
            hit += bool(d)
        key = Path(vname).stem
        row[f"ms_median_{key}"] = float(np.median(ms))
        row[f"ms_mean_{key}"] = float(np.mean(ms))
        row[f"cpu_ms_median_{key}"] = float(np.median(cpu))
        row[f"frames_with_face_{key}"] = hit / len(frames)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--stride", type=int, default=5, help="use every n-th video frame (default 5)")
    ap.add_argument("--only", nargs="*", default=None, help="detector names (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (default 1: the tracker's budget)")
    ap.add_argument("--max-side", type=int, default=None, help="override the detectors' search image size (px)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(args.threads)
    images68, pseudo = load_images68(args.data), load_pseudo_dlib(args.data)
    videos = {v: video_frames(args.data / "videos_unlabelled" / v, args.stride) for v in VIDEOS}
    opts = {} if args.max_side is None else {"max_side": args.max_side}
    rows = [bench(n, images68, pseudo, videos, **opts) for n in (args.only or list(DETECTORS))]
    n68, ntest = len(images68), sum(f.split == "test" for f in images68)
    print(f"faces: images68 {n68} (300-W test {ntest}), pseudo_dlib {len(pseudo)}; video frames: "
          + ", ".join(f"{Path(k).stem} {len(v)}" for k, v in videos.items()) + f" (every {args.stride}th); cv2 threads {args.threads}"
          + (f"; max side {args.max_side}" if args.max_side else ""))
    print("video columns: wall ms median (mean) [CPU ms median], share of frames with a detection")
    head = f"{'detector':<28}{'rec i68':>8}{'rec test':>9}{'rec pseudo':>11}"
    for v in VIDEOS:
        head += f"{Path(v).stem[:14] + ' ms':>27}{'found':>7}"
    print(head)
    for r in rows:
        line = f"{r['detector']:<28}{r['recall_images68']:>8.3f}{r['recall_300w_test']:>9.3f}{r['recall_pseudo_dlib']:>11.3f}"
        for v in VIDEOS:
            k = Path(v).stem
            line += (f"{r[f'ms_median_{k}']:>12.1f} ({r[f'ms_mean_{k}']:>5.1f}) [{r[f'cpu_ms_median_{k}']:>5.1f}]"
                     f"{r[f'frames_with_face_{k}']:>7.2f}")
        print(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
