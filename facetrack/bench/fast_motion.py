"""Fast motion: NME, flicker and lag of the smoothing settings (docs/SMOOTHING.md), as a table.

    python -m facetrack.bench.fast_motion [--data DIR] [--out runs/fast_motion] [--settings off old default]
        [--peers-python PATH] [--synthetic-only | --real-only] [--frames N] [--json OUT.json]

Two sets of clips:

- **synthetic** (known truth): the 300-W common test faces (evaluation faces, never trained
  on) moved by :func:`fast_motions`: a pan with sudden starts and stops at half the eye
  distance per frame, a head shake (a sideways swing with a +-15 degree roll, peak speed 0.4
  eye distances per frame) and a slow sway, each frame blurred
  along its own motion (the mean of 9 warps between the previous frame's pose and this one's),
  as a camera's exposure blurs a fast head.
- **real** (agreement with a teacher, not truth): ``sequences_v1`` (four real face videos, dlib
  labels on every frame). Caveat: the shipped models were trained on pseudo_v2, which holds
  frames of ``livep_d0``, ``livep_d3`` and ``lia_vox_driving1``; only ``livep_d6`` was held out
  (TRAINING.md), so it is listed apart.

Each setting runs :class:`facetrack.FaceTracker` in video mode (the CLI's rows) with the
preset's defaults and the setting's options: ``off`` no smoothing; ``old`` the default before
2026-12-07 (One Euro moved by optical flow, shape filter at 1 Hz, no reset); ``on`` the
smoothing ``--smooth on`` gives now (shape at 8 Hz, reset at 0.02 face sizes); ``default``
what the video preset does now (no smoothing: chosen by this table). Per frame the face nearest the truth is scored:
NME68 (outer-eye distance), the worst frame, flicker (:func:`facetrack.eval.metrics.flicker`)
and **lag**: on frames where the truth's centroid moved more than 5 % of the eye distance since
the last frame, the error of the landmarks' centroid along the direction of that motion, in % of
the eye distance (positive: behind the head). MediaPipe Face Mesh in video mode
(``--peers-python``) is scored the same way, through :mod:`facetrack.bench.peers`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

#: the settings compared: FaceTracker options over the video preset
SETTINGS: dict[str, dict[str, Any]] = {
    "off": {"smooth": False},
    "old": {"smooth": True, "smooth_reset": 0.0, "smooth_shape_min_cutoff": 1.0},
    "on": {"smooth": True},
    "default": {},
}
MOVING = 0.05  # of the eye distance per frame: a frame counted in the lag
MAX_SIDE = 720
BLUR_STEPS = 9


def _eye_distance(gt: np.ndarray) -> float:
    return float(np.linalg.norm(gt[36] - gt[45]))


def _similarity(angle_deg: float, scale: float, tx: float, ty: float, centre: np.ndarray) -> np.ndarray:
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle_deg, scale)
    m[:, 2] += (tx, ty)
    return m


def fast_motions(frames: int, eye: float, centre: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Per motion kind, ``frames`` affine ``(2, 3)`` matrices (the face's picture to the frame),
    each kept within about one eye distance of where the face is in the picture.

    ``pan``: sudden starts and stops: 4 frames at half the eye distance per frame, 11 still,
    4 back, 11 still, ..., alternately sideways and diagonally; ``shake``: a 2 Hz sideways
    swing of 0.95 eye distances (peak 0.4 per frame at 30 fps) with a +-15 degree roll;
    ``drift``: a 3 s sway of 0.5 eye distances (peak 0.035 per frame), the moved-face test's
    kind of motion."""
    out: dict[str, list[np.ndarray]] = {}
    pos, x, y, sign = [], -1.0, 0.0, 1.0
    for k in range(frames):
        phase = k % 15
        if phase < 4:
            x += sign * 0.5
            y += (sign * 0.25) if (k // 30) % 2 else 0.0
        if phase == 3:
            sign = -sign
        pos.append((x * eye, y * eye))
    out["pan"] = [_similarity(0.0, 1.0, px, py, centre) for px, py in pos]
    t = np.arange(frames) / 30.0
    out["shake"] = [_similarity(15.0 * np.sin(2 * np.pi * 2 * k), 1.0, 0.95 * eye * np.sin(2 * np.pi * 2 * k), 0.0, centre) for k in t]
    out["drift"] = [_similarity(0.0, 1.0, 0.5 * eye * np.sin(2 * np.pi * k / 3), 0.25 * eye * np.sin(2 * np.pi * k / 2), centre) for k in t]
    return out


def write_clip(image: np.ndarray, gt: np.ndarray, mats: Sequence[np.ndarray], path: Path) -> np.ndarray:
    """The moved, motion-blurred face as ``path`` (mp4v, 30 fps); returns the truth ``(T, 68, 2)``
    (the pose at the end of each frame's exposure)."""
    h, w = image.shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    if not out.isOpened():
        raise OSError(f"{path}: cannot write an mp4v video")
    gts, prev = [], mats[0]
    for m in mats:
        acc = np.zeros((h, w, 3), np.float32)
        for s in np.linspace(0.0, 1.0, BLUR_STEPS):
            acc += cv2.warpAffine(image, (1 - s) * prev + s * m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out.write(np.clip(acc / BLUR_STEPS + 0.5, 0, 255).astype(np.uint8))
        gts.append(gt @ m[:, :2].T + m[:, 2])
        prev = m
    out.release()
    return np.stack(gts)


def synthetic_clips(data: Path, out: Path, frames: int) -> list[tuple[str, Path, np.ndarray]]:
    """``(name, video, truth)`` of every 300-W common test face and motion kind."""
    from facetrack.train.data.datasets import load_images68, read_image

    clips = []
    for i, s in enumerate(load_images68(data, "common")):
        image, gt = read_image(s.image), s.landmarks.astype(np.float64)
        k = min(1.0, MAX_SIDE / max(image.shape[:2]))
        if k < 1.0:
            image = cv2.resize(image, (round(image.shape[1] * k), round(image.shape[0] * k)), interpolation=cv2.INTER_AREA)
            gt = (gt + 0.5) * k - 0.5
        for kind, mats in fast_motions(frames, _eye_distance(gt), gt.mean(0)).items():
            video = out / f"face{i}_{kind}.mp4"
            clips.append((f"{kind}", video, write_clip(image, gt, mats, video)))
    return clips


def real_clips(data: Path) -> list[tuple[str, Path, np.ndarray]]:
    """``(name, video, teacher)`` of ``sequences_v1``; frames without a label are NaN."""
    from facetrack.io.landmarks import read_pts

    clips = []
    for d in sorted((data / "sequences_v1").iterdir()):
        video = d / "vid.mp4"
        if not video.is_file():
            continue
        cap = cv2.VideoCapture(str(video))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        gts = np.full((n, 68, 2), np.nan)
        for p in (d / "annot").glob("*.pts"):
            k = int(p.stem) - 1
            if 0 <= k < n:
                gts[k] = read_pts(p)
        clips.append((d.name, video, gts))
    return clips


def run_setting(video: Path, options: dict[str, Any]) -> list[list[np.ndarray]]:
    """Per frame, the successful faces' landmarks of :class:`facetrack.FaceTracker` (video mode)."""
    import facetrack

    faces = []
    with facetrack.FaceTracker(mode="video", **options) as tracker:
        for r in tracker.track(str(video)):
            faces.append([np.asarray(f.landmarks, np.float64) for f in r.faces if f.success])
    return faces


def score(faces: Sequence[Sequence[np.ndarray]], gts: np.ndarray) -> dict[str, Any]:
    """NME per frame (NaN: no face or no label), flicker, and the lag's per-frame values."""
    from facetrack.eval.metrics import flicker, nme

    from facetrack.bench.moved_faces import nearest

    n = min(len(faces), len(gts))
    g = gts[:n]
    pred = nearest(faces[:n], g)
    pred[~np.isfinite(g).all((1, 2))] = np.nan  # an unlabelled frame is scored nowhere
    e = np.array([float(nme(p, t)) if np.isfinite(p).all() and np.isfinite(t).all() else np.nan for p, t in zip(pred, g)])
    lag = []
    for k in range(1, n):
        if not (np.isfinite(g[k]).all() and np.isfinite(g[k - 1]).all() and np.isfinite(pred[k]).all()):
            continue
        eye = _eye_distance(g[k])
        step = g[k].mean(0) - g[k - 1].mean(0)
        if eye <= 0 or np.linalg.norm(step) < MOVING * eye:
            continue
        lag.append(-float(np.dot(pred[k].mean(0) - g[k].mean(0), step / np.linalg.norm(step))) / eye)
    return {"nme": e, "flicker": flicker(pred, g), "lag": lag, "labelled": int(np.isfinite(g).all((1, 2)).sum())}


def summarise(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    e = np.concatenate([s["nme"] for s in scores])
    lag = np.array([x for s in scores for x in s["lag"]])
    fl = np.array([s["flicker"] for s in scores], np.float64)
    found = np.isfinite(e)
    return {"nme_pct": float(np.nanmean(e) * 100) if found.any() else float("nan"),
            "worst_pct": float(np.nanmax(e) * 100) if found.any() else float("nan"),
            "p95_pct": float(np.nanpercentile(e, 95) * 100) if found.any() else float("nan"),
            "flicker_pct": float(np.nanmean(fl) * 100) if np.isfinite(fl).any() else float("nan"),
            "lag_pct": float(lag.mean() * 100) if lag.size else float("nan"), "moving_frames": int(lag.size),
            "found": int(found.sum()), "labelled": int(sum(s["labelled"] for s in scores))}


def run_peer(video: Path, peers_python: Path | None) -> list[list[np.ndarray]] | str:
    if peers_python is None:
        return "no --peers-python"
    from facetrack.bench.moved_faces import run_peer as peer

    return peer(video, "mediapipe", peers_python)


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = ["| clips | method | NME68 % | p95 % | worst frame % | flicker % | lag % (moving frames) | frames with a face |",
            "|---|---|---|---|---|---|---|---|"]
    for group, methods in results.items():
        for m, s in methods.items():
            if "skipped" in s:
                rows.append(f"| {group} | {m} | not run: {s['skipped']} | | | | | |")
                continue
            rows.append(f"| {group} | {m} | {s['nme_pct']:.2f} | {s['p95_pct']:.2f} | {s['worst_pct']:.1f} | {s['flicker_pct']:.2f} | "
                        f"{s['lag_pct']:+.2f} ({s['moving_frames']}) | {s['found']} / {s['labelled']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facetrack.bench.fast_motion", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="shared data folder; default: $FACETRACK_DATA")
    p.add_argument("--out", type=Path, default=Path("runs/fast_motion"))
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p.add_argument("--reset", type=float, nargs="*", default=[], metavar="R",
                   help="also smoothing with smooth_reset R (face sizes), to choose the default")
    p.add_argument("--try", dest="tries", nargs="*", default=[], metavar="K=V[,K=V]",
                   help="also smoothing with these TrackerConfig fields (e.g. smooth_shape_min_cutoff=4,smooth_reset=0.03)")
    p.add_argument("--frames", type=int, default=90, help="frames per synthetic clip")
    p.add_argument("--synthetic-only", action="store_true")
    p.add_argument("--real-only", action="store_true")
    p.add_argument("--peers-python", type=Path, default=None, help="interpreter with MediaPipe; default: $FACETRACK_PEERS_PYTHON")
    p.add_argument("--json", type=Path, help="write the summaries")
    args = p.parse_args(argv)
    from facetrack.bench.environment import SetupError, data_dir, peers_python

    try:
        args.data = data_dir(args.data)
    except SetupError as e:
        print(f"fast_motion: {e}", file=sys.stderr)
        return 2
    if args.frames < 30:
        print("fast_motion: --frames must be >= 30", file=sys.stderr)
        return 2
    peers = peers_python(args.peers_python)
    args.out.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[tuple[str, Path, np.ndarray]]] = {}
    if not args.real_only:
        for name, video, gts in synthetic_clips(args.data, args.out, args.frames):
            groups.setdefault(f"synthetic {name}", []).append((name, video, gts))
    if not args.synthetic_only:
        for name, video, gts in real_clips(args.data):
            groups.setdefault("real, held out (livep_d6)" if name == "livep_d6" else "real, in training (3 videos)", []).append((name, video, gts))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    settings = {m: SETTINGS[m] for m in args.settings}
    settings.update({f"reset {r:g}": {"smooth": True, "smooth_reset": r} for r in args.reset})
    for t in args.tries:
        try:
            settings[t] = {"smooth": True, **{k: float(v) for k, v in (kv.split("=", 1) for kv in t.split(","))}}
        except ValueError:
            print(f"fast_motion: --try {t}: expected KEY=NUMBER[,KEY=NUMBER]", file=sys.stderr)
            return 2
    methods = [*settings, "mediapipe"]
    for group, clips in groups.items():
        results[group] = {}
        for m in methods:
            t0 = time.perf_counter()
            scores, skipped = [], ""
            for _, video, gts in clips:
                faces = run_setting(video, settings[m]) if m in settings else run_peer(video, peers)
                if isinstance(faces, str):
                    skipped = faces
                    break
                scores.append(score(faces, gts))
            results[group][m] = {"skipped": skipped} if skipped else summarise(scores)
            print(f"fast_motion: {group}: {m} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
