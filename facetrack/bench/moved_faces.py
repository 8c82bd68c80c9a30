"""The moved-face benchmark of issue 13: does tracking drift?

    python -m facetrack.bench.moved_faces --data ../shared/data --out runs/moved_faces \\
        [--frames 60] [--seed 0] [--still] [--methods default unsmoothed shape template flip smooth flip+smooth per-frame dlib mediapipe] [--model mdm|FILE.onnx] [--reuse]
        [--val-of CHECKPOINT [--every K]]

Each of the 8 300-W common test faces of ``images68`` (helen_test + lfpw_test, never trained on)
is moved by a seeded smooth random similarity motion (:func:`facetrack.train.data.sequences.smooth_motion`,
default :class:`~facetrack.train.data.sequences.MotionConfig`: up to about 3 % of the face size, 1.2° and
1.2 % of scale per frame, pulled back towards the start) for ``--frames`` frames, rendered from
the whole picture (edges replicated) with its ground truth moved the same way, and written as an
MP4 video (mp4v, 30 fps; pictures larger than 960 px are scaled down first). Then:

- ``default``, ``unsmoothed``, ``shape``, ``template``, ``flip``, ``smooth``, ``flip+smooth``: the
  ``facetrack`` CLI on the video with its defaults (which smooth video) and ``--max-faces 3``
  (plus ``--smooth off``, ``--track-init shape|template``, ``--flip on``, ``--smooth on`` or both
  for the named modes, and ``--model`` if given); in each frame the reported face nearest the
  truth is scored.
- ``per-frame``: no tracking: the tracker is reset before every frame, so each frame is a
  detection and a fit from the detector's box (same model and detector as the CLI).
- ``dlib``: dlib's HOG detector and 68-point predictor on every frame; ``mediapipe``: MediaPipe
  Face Mesh in video mode, mapped to 68 points (both through ``facetrack/bench/peers.py`` under
  ``--peers-python``; reported as not installed when that interpreter lacks them).

Figures per method: mean NME (68 points, outer eye corners, pooled over every frame with a face,
in %), drift per face (mean NME of the last 10 frames minus the first 10, in percentage points;
the median and the worst over the 8 faces), flicker (:func:`facetrack.eval.metrics.flicker`,
mean over faces, in % of the outer-eye distance per frame) and the frames with a face.
``--still`` writes the same pictures without motion (``face{i}_{stem}.still.mp4``): a face that
does not move, whose flicker is then how much the landmarks shimmer on their own.
``--val-of CHECKPOINT [--every K]`` moves a training run's held-out validation faces instead
(needs the training extra), for choosing defaults away from the test faces.
Writes ``moved_faces.json`` and ``moved_faces.md`` into ``--out`` and prints the table.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from facetrack.tracker.geometry import face_size
from facetrack.eval.metrics import GROSS, THRESHOLD, failure_rate, flicker, nme
from facetrack.tracker.presets import DEFAULT_MODEL

METHODS = ("default", "unsmoothed", "shape", "template", "flip", "smooth", "flip+smooth", "per-frame", "dlib", "mediapipe")
CLI_ARGS = {"default": [], "unsmoothed": ["--smooth", "off"], "shape": ["--track-init", "shape"], "template": ["--track-init", "template"],
            "flip": ["--flip", "on"], "smooth": ["--smooth", "on"], "flip+smooth": ["--flip", "on", "--smooth", "on"]}
MAX_SIDE = 960


def make_clip(image: np.ndarray, gt: np.ndarray, frames: int, seed: int, path: Path, still: bool = False) -> np.ndarray:
    """Write the moved face as ``path`` (mp4v, 30 fps); returns the ground truth ``(T, 68, 2)``.
    ``still``: the picture does not move (every frame the same picture, up to the codec)."""
    from facetrack.train.data.sequences import MotionConfig, smooth_motion

    s = min(1.0, MAX_SIDE / max(image.shape[:2]))
    if s < 1.0:
        image = cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)), interpolation=cv2.INTER_AREA)
        gt = (gt + 0.5) * s - 0.5
    h, w = image.shape[:2]
    if still:
        mats = [np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])] * frames
    else:
        mats = smooth_motion(frames, np.random.default_rng(seed), gt.mean(0), face_size(gt), MotionConfig())
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    if not out.isOpened():
        raise OSError(f"{path}: cannot write an mp4v video")
    gts = []
    for m in mats:
        out.write(cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        gts.append(gt @ m[:, :2].T + m[:, 2])
    out.release()
    return np.stack(gts)


def make_clips(samples: Sequence[Any], out: Path, frames: int, seed: int, skip: Sequence[int] = (),
               still: bool = False) -> list[tuple[Path, np.ndarray]]:
    """``(video, ground truth)`` of each face of ``samples`` but those at the indices in ``skip``:
    face ``i`` moved with seed ``seed * 1000 + i`` and written as ``out/face{i}_{stem}.mp4``, so
    every benchmark on these clips sees the same videos (``still``: not moved, written as
    ``out/face{i}_{stem}.still.mp4``)."""
    from facetrack.train.data.datasets import read_image

    clips = []
    for i, s in enumerate(samples):
        if i in skip:
            continue
        video = out / f"face{i}_{Path(s.image).stem}{'.still' if still else ''}.mp4"
        clips.append((video, make_clip(read_image(s.image), s.landmarks.astype(np.float64), frames, seed * 1000 + i, video, still)))
    return clips


def read_cli_csv(path: Path, frames: int) -> list[list[np.ndarray]]:
    """Per frame (0-based), the successful faces' landmarks in the CLI's CSV."""
    faces: list[list[np.ndarray]] = [[] for _ in range(frames)]
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if int(float(row["success"])) != 1:
                continue
            k = int(row["frame"]) - 1
            pts = np.array([[float(row[f"x_{i}"]), float(row[f"y_{i}"])] for i in range(68)])
            if 0 <= k < frames:
                faces[k].append(pts)
    return faces


def nearest(faces: Sequence[Sequence[np.ndarray]], gts: np.ndarray) -> np.ndarray:
    """``(T, 68, 2)``: in each frame the face nearest the truth (NME), NaN when there is none."""
    out = np.full(gts.shape, np.nan)
    for k, (cands, g) in enumerate(zip(faces, gts)):
        if len(cands):
            out[k] = min(cands, key=lambda p: float(nme(p, g)))
    return out


def run_cli(video: Path, extra: list[str], out_csv: Path) -> None:
    cmd = [sys.executable, "-m", "facetrack", str(video), "--out", str(out_csv), "--max-faces", "3", "--quiet", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {(proc.stderr or '').strip().splitlines()[-1:]}")


def run_per_frame(video: Path, model: str) -> list[list[np.ndarray]]:
    """Detection and a fit from the detector's box in every frame (the tracker reset each time)."""
    from facetrack.tracker.tracker import Tracker, TrackerConfig
    from facetrack.io.video import VideoFile

    tr = Tracker(TrackerConfig(model=model, max_faces=3, scale_check=True))  # as the CLI
    faces = []
    with VideoFile(video) as v:
        for _, ts, frame in v:
            tr.reset()
            r = tr.process(frame, ts)
            faces.append([f.landmarks for f in r.faces if f.success])
    tr.close()
    return faces


def run_peer(video: Path, method: str, peers_python: Path) -> list[list[np.ndarray]] | str:
    """A peer's per-frame landmarks, or a one-line reason it did not run."""
    from facetrack.bench.bench import run_subprocess

    res = run_subprocess(peers_python, Path(__file__).with_name("peers.py"), {"task": "video", "method": method, "video": str(video), "warmup": 0})
    if res.get("status") != "ok":
        return f"{res.get('status')}: {res.get('error')}"
    return [[np.asarray(p, np.float64)] if p is not None else [] for p in res["landmarks"]]


def score(pred: np.ndarray, gts: np.ndarray) -> dict[str, Any]:
    """Per-face figures: per-frame NME (NaN: no face), mean, drift (pts), flicker, and the frames
    whose reported face nearest the truth is over :data:`GROSS` (``confident_failures``: every
    face in the CLI's CSV with success 1 passed the confidence threshold)."""
    e = np.array([float(nme(p, g)) if np.isfinite(p).all() else np.nan for p, g in zip(pred, gts)])
    drift = float(np.nanmean(e[-10:]) - np.nanmean(e[:10])) * 100 if np.isfinite(e[-10:]).any() and np.isfinite(e[:10]).any() else float("nan")
    return {"nme": [None if not np.isfinite(x) else round(float(x), 5) for x in e], "mean": float(np.nanmean(e)) if np.isfinite(e).any() else float("nan"),
            "drift_pts": drift, "flicker": flicker(pred, gts), "found": int(np.isfinite(e).sum()),
            "confident_failures": int(np.sum(np.isfinite(e) & (e > GROSS)))}


def summarise(per_face: list[dict[str, Any]]) -> dict[str, Any]:
    e = np.array([x for f in per_face for x in f["nme"] if x is not None])
    drifts = np.array([f["drift_pts"] for f in per_face], np.float64)
    fl = np.array([f["flicker"] for f in per_face], np.float64)
    allf = np.array([np.nan if x is None else x for f in per_face for x in f["nme"]], np.float64)
    return {"mean_nme_pct": float(e.mean() * 100) if e.size else float("nan"),
            "median_nme_pct": float(np.median(e) * 100) if e.size else float("nan"),
            # over every frame, a frame without a face counting as a failure
            "failure_pct": failure_rate(allf, THRESHOLD) * 100, "failure_gross_pct": failure_rate(allf, GROSS) * 100,
            "confident_failures": int(sum(f.get("confident_failures", 0) for f in per_face)),
            "confident_failure_faces": [f["video"] for f in per_face if f.get("confident_failures", 0)],
            "median_drift_pts": float(np.nanmedian(drifts)) if np.isfinite(drifts).any() else float("nan"),
            "worst_drift_pts": float(np.nanmax(drifts)) if np.isfinite(drifts).any() else float("nan"),
            "flicker_pct": float(np.nanmean(fl) * 100) if np.isfinite(fl).any() else float("nan"),
            "frames_found": int(sum(f["found"] for f in per_face)), "frames": int(sum(len(f["nme"]) for f in per_face))}


def markdown(summary: dict[str, dict[str, Any]], frames: int, still: bool = False, faces: int = 8) -> str:
    rows = [f"| method | mean NME68 % | median NME68 % | median drift (last 10 - first 10), pts | worst drift, pts | flicker % | frames with a face | "
            f"failure % (> 8 %) | gross % (> 20 %) | confident failures (frames) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for m, s in summary.items():
        if "skipped" in s:
            rows.append(f"| {m} | not run: {s['skipped']} | | | | | | | | |")
            continue
        rows.append(f"| {m} | {s['mean_nme_pct']:.2f} | {s['median_nme_pct']:.2f} | {s['median_drift_pts']:+.2f} | {s['worst_drift_pts']:+.2f} | "
                    f"{s['flicker_pct']:.2f} | {s['frames_found']} / {s['frames']} | {s['failure_pct']:.1f} | {s['failure_gross_pct']:.1f} | "
                    f"{s['confident_failures']}{' (' + ', '.join(s['confident_failure_faces']) + ')' if s['confident_failures'] else ''} |")
    return "\n".join(rows) + f"\n\n{faces} faces x {frames} frames{' (still: the faces do not move)' if still else ''}."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facetrack.bench.moved_faces", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="shared data folder (images68/); default: $FACETRACK_DATA")
    p.add_argument("--out", type=Path, default=Path("runs/moved_faces"))
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--model", default=None, help="--model for the CLI and per-frame runs (default: the CLI's default)")
    p.add_argument("--turned-model", default=None, help="--turned-model for the CLI runs (default: the CLI's default)")
    p.add_argument("--still", action="store_true",
                   help="the faces do not move: the flicker column is then how much a still face's landmarks shimmer")
    p.add_argument("--reuse", action="store_true", help="score CLI outputs already in --out instead of running the CLI again")
    p.add_argument("--peers-python", type=Path, default=None, help="interpreter with dlib and MediaPipe; default: $FACETRACK_PEERS_PYTHON")
    p.add_argument("--val-of", type=Path, default=None, metavar="CHECKPOINT",
                   help="move the held-out validation faces of this training checkpoint instead of the 300-W test faces "
                        "(to choose a default without looking at the test faces)")
    p.add_argument("--every", type=int, default=1, metavar="K", help="with --val-of: every K-th of those faces (default 1)")
    args = p.parse_args(argv)
    from facetrack.bench.environment import SetupError, data_dir, peers_missing_line, peers_python
    from facetrack.train.data.datasets import load_images68

    try:
        args.data = data_dir(args.data)
    except SetupError as e:
        print(f"moved_faces: {e}", file=sys.stderr)
        return 2
    args.peers_python = peers_python(args.peers_python)

    if args.frames < 20:
        print("moved_faces: --frames must be >= 20 (drift compares the first and last 10 frames)", file=sys.stderr)
        return 2
    if args.val_of is not None:
        from facetrack.train.export.quantize import validation_faces

        if args.every < 1:
            print("moved_faces: --every must be >= 1", file=sys.stderr)
            return 2
        try:
            samples = validation_faces(args.val_of, args.data)[:: args.every]
        except ImportError as e:
            print(f"moved_faces: --val-of needs the training extra (pip install 'facetrack[train]'): {e}", file=sys.stderr)
            return 2
        except (OSError, ValueError, KeyError) as e:
            print(f"moved_faces: {args.val_of}: {e}", file=sys.stderr)
            return 2
    else:
        samples = load_images68(args.data, "common")
    if not samples:
        print(f"moved_faces: {args.data}: no 300-W common test faces in images68/", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    clips = make_clips(samples, args.out, args.frames, args.seed, still=args.still)
    extra_model = (["--model", args.model] if args.model else []) + (["--turned-model", args.turned_model] if args.turned_model else [])
    results: dict[str, Any] = {}
    summary: dict[str, dict[str, Any]] = {}
    for m in args.methods:
        t0 = time.perf_counter()
        per_face = []
        skipped = ""
        for video, gts in clips:
            if m in CLI_ARGS:
                out_csv = video.with_name(f"{video.stem}.{m}.csv")
                if not (args.reuse and out_csv.exists()):
                    run_cli(video, CLI_ARGS[m] + extra_model, out_csv)
                faces = read_cli_csv(out_csv, len(gts))
            elif m == "per-frame":
                faces = run_per_frame(video, args.model or DEFAULT_MODEL)
            else:
                if args.peers_python is None or not args.peers_python.is_file():
                    skipped = peers_missing_line(args.peers_python)
                    break
                got = run_peer(video, m, args.peers_python)
                if isinstance(got, str):
                    skipped = got
                    break
                faces = got
            per_face.append({"video": video.name, **score(nearest(faces, gts), gts)})
        if skipped:
            summary[m] = {"skipped": skipped}
            continue
        results[m] = per_face
        summary[m] = summarise(per_face)
        print(f"{m}: {summary[m]} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    md = markdown(summary, args.frames, args.still, len(clips))
    (args.out / "moved_faces.json").write_text(json.dumps({"frames": args.frames, "seed": args.seed, "still": args.still, "model": args.model, "summary": summary,
                                                           "per_face": results, "command": " ".join(sys.argv)}, indent=1), encoding="utf-8")
    (args.out / "moved_faces.md").write_text(md + "\n", encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
