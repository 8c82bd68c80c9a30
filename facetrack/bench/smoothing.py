"""The One Euro filter (``--smooth``) tuned by flicker on the moved-face clips.

    python -m facetrack.bench.smoothing [--data DIR] [--out runs/smoothing] [--min-cutoff 0.5 1 2 4] [--beta 1 10 40]
        [--shape-min-cutoff 1] [--shape-beta 10] [--flow on off]

The clips are those of :mod:`facetrack.bench.moved_faces` (the 300-W common test faces moved by a
seeded smooth similarity motion, same ``--frames`` and ``--seed``); faces whose picture holds a
second person can be left out with ``--skip`` (default: face 0, see that module). For each
setting the ``facetrack`` CLI runs with its defaults, ``--max-faces 3`` and ``--smooth on
--smooth-min-cutoff MC --smooth-beta B --smooth-shape-min-cutoff SMC --smooth-shape-beta SB
--smooth-flow F`` (the pose's and the shape's filters of :class:`facetrack.tracker.smoothing.PoseShapeFilter`,
and whether they are moved first by the face's motion measured by optical flow);
the face nearest the truth is scored. The clips move a still expression, so they measure the
pose filter's lag and what the shape filter removes, not the shape filter's lag on a changing
expression (``tests/tracker/test_smoothing.py`` measures that on a synthetic opening mouth). The table gives,
per setting: mean NME68 (%) — the price of the filter's lag, since the faces move — flicker (%,
:func:`facetrack.eval.metrics.flicker`) and median drift, beside the CLI with ``--smooth off``; and the
filter's own CPU cost per face and frame (measured on the landmarks, in microseconds), with the
flow's (:func:`facetrack.tracker.motion.face_motion` on the first two frames of the first clip) where it is on.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facetrack.bench.moved_faces import make_clips, nearest, read_cli_csv, run_cli, score, summarise


def filter_cost_us(min_cutoff: float, beta: float, shape_min_cutoff: float = 1.0, shape_beta: float = 10.0, frames: int = 2000) -> float:
    """Mean wall time of one :class:`PoseShapeFilter` call on 68 points, µs."""
    from facetrack.tracker.geometry import template
    from facetrack.tracker.smoothing import PoseShapeFilter

    f = PoseShapeFilter(min_cutoff, beta, shape_min_cutoff, shape_beta)
    rng = np.random.default_rng(0)
    pts = (template(200)[None] + rng.normal(0, 2.0, (frames, 68, 2))).astype(np.float32)
    t0 = time.perf_counter()
    for k in range(frames):
        f(pts[k], k / 30.0)
    return (time.perf_counter() - t0) / frames * 1e6


def flow_cost_us(video: Path, gt: np.ndarray, frames: int = 300) -> float:
    """Mean wall time of one :func:`facetrack.tracker.motion.face_motion` call between the first two
    frames of ``video`` around its first ground truth, µs."""
    import cv2

    from facetrack.tracker.motion import face_motion

    cap = cv2.VideoCapture(str(video))
    grey = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2GRAY) for _ in range(2)]
    cap.release()
    t0 = time.perf_counter()
    for _ in range(frames):
        face_motion(grey[0], grey[1], gt)
    return (time.perf_counter() - t0) / frames * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facetrack.bench.smoothing", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="shared data folder (images68/); default: $FACETRACK_DATA")
    p.add_argument("--out", type=Path, default=Path("runs/smoothing"))
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", type=int, nargs="*", default=[0], help="faces to leave out (default 0: its picture holds a second person)")
    p.add_argument("--min-cutoff", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0], help="Hz")
    p.add_argument("--beta", type=float, nargs="+", default=[1.0, 10.0, 40.0])
    p.add_argument("--shape-min-cutoff", type=float, nargs="+", default=[1.0], help="Hz, the shape's filter")
    p.add_argument("--shape-beta", type=float, nargs="+", default=[10.0], help="the shape's filter")
    p.add_argument("--flow", choices=("on", "off"), nargs="+", default=["on", "off"], help="--smooth-flow")
    args = p.parse_args(argv)
    from facetrack.bench.environment import SetupError, data_dir
    from facetrack.train.data.datasets import load_images68

    try:
        args.data = data_dir(args.data)
    except SetupError as e:
        print(f"smoothing: {e}", file=sys.stderr)
        return 2
    if any(v <= 0 for v in args.min_cutoff + args.shape_min_cutoff) or any(v < 0 for v in args.beta + args.shape_beta):
        print("smoothing: --min-cutoff and --shape-min-cutoff must be > 0, --beta and --shape-beta >= 0", file=sys.stderr)
        return 2
    samples = load_images68(args.data, "common")
    args.out.mkdir(parents=True, exist_ok=True)
    clips = make_clips(samples, args.out, args.frames, args.seed, args.skip)
    nan = float("nan")
    flow_us = flow_cost_us(clips[0][0], clips[0][1][0]) if "on" in args.flow else 0.0
    settings: list[tuple[str, list[str], tuple[float, ...], bool]] = [("off", ["--smooth", "off"], (nan, nan, nan, nan), False)]
    settings += [(f"pose {mc:g} Hz, beta {b:g}; shape {smc:g} Hz, beta {sb:g}; flow {fl}",
                  ["--smooth", "on", "--smooth-min-cutoff", f"{mc:g}", "--smooth-beta", f"{b:g}",
                   "--smooth-shape-min-cutoff", f"{smc:g}", "--smooth-shape-beta", f"{sb:g}", "--smooth-flow", fl],
                  (mc, b, smc, sb), fl == "on")
                 for fl in args.flow for mc in args.min_cutoff for b in args.beta for smc in args.shape_min_cutoff for sb in args.shape_beta]
    rows = []
    for name, extra, params, flow in settings:
        per_face = []
        for k, (video, gts) in enumerate(clips):
            out_csv = args.out / f"{video.stem}.{k}.{abs(hash(name)) % 10**8}.csv"
            run_cli(video, extra, out_csv)
            per_face.append(score(nearest(read_cli_csv(out_csv, len(gts)), gts), gts))
        s = summarise(per_face)
        s.update(setting=name, filter_us=(filter_cost_us(*params) + flow * flow_us) if name != "off" else 0.0)
        rows.append(s)
        print(f"{name}: NME {s['mean_nme_pct']:.2f} %, flicker {s['flicker_pct']:.2f} %, drift {s['median_drift_pts']:+.2f} pts", flush=True)
    lines = ["| One Euro setting | mean NME68 % | flicker % | median drift, pts | frames with a face | filter (and flow) µs per face and frame |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['mean_nme_pct']:.2f} | {r['flicker_pct']:.2f} | {r['median_drift_pts']:+.2f} | "
              f"{r['frames_found']}/{r['frames']} | {r['filter_us']:.0f} |" for r in rows]
    table = "\n".join(lines)
    print(f"\n{len(clips)} moved faces x {args.frames} frames (skipped: {args.skip})\n\n{table}")
    (args.out / "smoothing.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    (args.out / "smoothing.md").write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
