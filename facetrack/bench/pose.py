"""Head-pose accuracy and steadiness (docs/POSE.md), printed as tables.

    python -m facetrack.bench.pose --data ../shared/data [--turns] [--jitter] [--cpu] [--faces N]
        [--peers-python PATH] [--json OUT.json]

``--turns``: pose error by yaw band on synthetic head turns, whose rotation is known. The
trainer's held-out validation faces (the split of ``facetrack train``'s default sources, seed 0:
no face any shipped model was trained on, no 300-W test face) are turned about the vertical axis
by :class:`facetrack.train.data.profile.Profiler` (the trainer's synthetic head turns: image and
landmarks) to yaws spread over 0-60 degrees. The true rotation of a turned face is the turn
applied to the pose of its unturned ground-truth landmarks (``Ry(turn) @ R0``, camera frame). Two
rows per band: the solve on the turned ground-truth landmarks (the solver and the 3-D face alone)
and on the landmarks the product finds in the turned image (the CLI's image preset: detector,
``aan+mdm`` with mirrored fits, the turned view), the face matched by box overlap. Caveat: the
turns are made with a 3-D mean face factorised from the same kind of shapes as the solver's own,
so an error of that face's depth is not seen here (it would be on real turned photos with
measured poses, which this project does not have).

``--jitter``: frame-to-frame pose change on the two real videos, facetrack (the default video
preset: its smoothed landmarks) against MediaPipe Face Mesh (0.10.21 ``solutions.face_mesh``, run
by ``facetrack/bench/peers.py`` in the peers' interpreter; its 468 points mapped to the 68 by
``peers.MP_TO_68``), both through the same solve (this MediaPipe version's legacy face mesh gives
no transformation matrix). Jitter: the median and mean absolute second difference of each angle,
``|a[t+1] - 2 a[t] + a[t-1]|`` in degrees over triples of consecutive frames where both found a
face and no shot cut lies between (steady motion is not counted). Also with the 51 points
without the jaw: MediaPipe's mapped jaw is its face oval, not 300-W's contour.

``--cpu``: CPU time per frame of the tracker with and without the pose on the selfie video
(frames decoded to memory first, one thread, alternating rounds), and the solve's own time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BANDS = ((0, 15), (15, 30), (30, 45), (45, 60))
VIDEOS = ("sbr_demo_selfie.mp4", "short_hamilton_clip.mp4")


def _deg(r: np.ndarray) -> np.ndarray:
    from facetrack.tracker.pose import matrix_to_euler

    return np.degrees(matrix_to_euler(r))


def _ry(deg: float) -> np.ndarray:
    from facetrack.tracker.pose import euler_to_matrix

    return euler_to_matrix([0.0, np.radians(deg), 0.0])


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    from facetrack.tracker.geometry import box_iou

    return float(box_iou(np.asarray(a, np.float32), np.asarray(b, np.float32)))


def turns(data: Path, max_faces: int, seed: int = 0) -> dict[str, Any]:
    """Per turned face: true and estimated angles (degrees) from ground truth and from the product."""
    from facetrack.tracker.geometry import box_of
    from facetrack.tracker.pose import PoseSolver
    from facetrack.tracker.presets import preset
    from facetrack.tracker.detect import make_detector
    from facetrack.tracker.tracker import Tracker
    from facetrack.train.data.pipeline import read_picture
    from facetrack.train.data.profile import Profiler
    from facetrack.train.data.sources import load_sources, parse_sources

    split = load_sources(parse_sources(["images68:4", "pseudo_dlib:1", "pseudo_v2:1"], data), seed=0)
    profiler = Profiler.from_shapes([s.landmarks for s in split.train])
    faces = split.val[:max_faces] if max_faces else split.val
    solver = PoseSolver()
    p = preset("image")
    tracker = Tracker(p.tracker_config(), detector=make_detector(p.detector))
    rng = np.random.default_rng(seed)
    rows = []
    # which sense of the profiler's turn is +pose_Ry: measured once on the first face
    sense = None
    t0 = time.time()
    for k, s in enumerate(faces):
        img = read_picture(s)
        h, w = img.shape[:2]
        gt = np.asarray(s.landmarks, np.float64)
        base = solver.solve(gt, (w, h))
        if not base.success:
            continue
        r0 = base.matrix()
        yaw0 = float(_deg(r0)[1])
        if sense is None:
            t = profiler.turn(img, gt, 20.0)
            sense = float(np.sign(solver.solve(t.landmarks, (w, h)).yaw - yaw0))
        for lo, hi in BANDS:
            target = float(rng.uniform(lo, hi)) * float(rng.choice([-1.0, 1.0]))
            turn = (target - yaw0) * sense  # the profiler's degrees that bring pose_Ry to the target
            if abs(turn) > 75:
                continue
            t = profiler.turn(img, gt, turn)
            r_true = _ry(turn * sense) @ r0
            true = _deg(r_true)
            row = {"face": k, "band": f"{lo}-{hi}", "true": true.tolist(), "turn": turn}
            g = solver.solve(t.landmarks, (w, h))
            row["gt"] = _deg(g.matrix()).tolist() if g.success else None
            tracker.reset()
            res = tracker.process(t.image, 0.0)
            gt_box = box_of(t.landmarks)
            best = max((f for f in res.faces if f.success), key=lambda f: _box_iou(f.box, gt_box), default=None)
            if best is not None and _box_iou(best.box, gt_box) > 0.3 and best.pose is not None and best.pose.success:
                row["found"] = _deg(best.pose.matrix()).tolist()
            else:
                row["found"] = None
            rows.append(row)
        if (k + 1) % 25 == 0:
            print(f"turns: {k + 1}/{len(faces)} faces, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    tracker.close()
    return {"faces": len(faces), "rows": rows, "sense": sense}


def _err(true: list[float], est: list[float]) -> np.ndarray:
    d = np.abs(np.asarray(est) - np.asarray(true))
    return np.minimum(d, 360.0 - d)


def turns_table(res: dict[str, Any]) -> str:
    out = ["| yaw band (deg) | landmarks | turned faces | found | MAE yaw | MAE pitch | MAE roll | MAE mean | "
           "95th pct (max of 3) |", "|---|---|---|---|---|---|---|---|---|"]
    for lo, hi in BANDS:
        band = [r for r in res["rows"] if r["band"] == f"{lo}-{hi}"]
        for key, name in (("gt", "ground truth"), ("found", "facetrack (image preset)")):
            ok = [r for r in band if r[key] is not None]
            if not ok:
                out.append(f"| {lo}-{hi} | {name} | {len(band)} | 0 | - | - | - | - | - |")
                continue
            e = np.array([_err(r["true"], r[key]) for r in ok])  # (n, 3): pitch, yaw, roll
            mae = e.mean(0)
            out.append(f"| {lo}-{hi} | {name} | {len(band)} | {len(ok)} | {mae[1]:.2f} | {mae[0]:.2f} | {mae[2]:.2f} | "
                       f"{mae.mean():.2f} | {np.percentile(e.max(1), 95):.2f} |")
    return "\n".join(out)


def _track_video(path: Path, solvers: dict[str, Any]) -> dict[str, Any]:
    """facetrack's default video run: per frame the angles of face 0 per solver (None: no face)."""
    import cv2

    from facetrack.tracker.detect import make_detector
    from facetrack.tracker.presets import preset
    from facetrack.tracker.tracker import Tracker

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    p = preset("video")
    tracker = Tracker(p.tracker_config(default_fps=fps), detector=make_detector(p.detector))
    out: dict[str, list] = {k: [] for k in solvers}
    cuts, lms = [], []
    i = 0
    size = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        size = (frame.shape[1], frame.shape[0])
        r = tracker.process(frame, i / fps)
        cuts.append(bool(r.cut))
        f = next((f for f in r.faces if f.success and f.face_id == 0), None)
        lms.append(None if f is None else np.asarray(f.landmarks).tolist())
        for k, s in solvers.items():
            hp = s.solve(f.landmarks, size) if f is not None else None
            out[k].append(_deg(hp.matrix()).tolist() if hp is not None and hp.success else None)
        i += 1
    cap.release()
    tracker.close()
    return {"angles": out, "cuts": cuts, "size": size, "frames": i}


def _mediapipe(path: Path, peers_python: str) -> list:
    """MediaPipe's 68-point landmarks per frame (None: no face), by peers.py in its interpreter."""
    peers = Path(__file__).with_name("peers.py")
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"task": "video", "method": "mediapipe", "video": str(path), "warmup": 0}))
        subprocess.run([peers_python, str(peers), str(spec), str(out)], check=True)
        return json.loads(out.read_text())["landmarks"]


def jitter(data: Path, peers_python: str | None) -> dict[str, Any]:
    from facetrack.tracker.markup import SUBSET_51
    from facetrack.tracker.pose import PoseSolver

    solvers = {"68": PoseSolver(), "51": PoseSolver(points=SUBSET_51)}
    res: dict[str, Any] = {}
    for name in VIDEOS:
        path = data / "videos_unlabelled" / name
        ft = _track_video(path, solvers)
        entry: dict[str, Any] = {"frames": ft["frames"], "cuts": ft["cuts"], "facetrack": ft["angles"]}
        if peers_python:
            lms = _mediapipe(path, peers_python)
            mp = {k: [] for k in solvers}
            for lm in lms:
                for k, s in solvers.items():
                    hp = s.solve(np.asarray(lm, np.float64), ft["size"]) if lm is not None else None
                    mp[k].append(_deg(hp.matrix()).tolist() if hp is not None and hp.success else None)
            entry["mediapipe"] = mp
        res[name] = entry
    return res


def _second_differences(a: list, b: list | None, cuts: list[bool]) -> tuple[np.ndarray, int]:
    """``(n, 3)`` |second differences| of ``a`` over triples where ``a`` (and ``b``) have a pose and no cut lies inside."""
    out = []
    for t in range(1, len(a) - 1):
        trip = (a[t - 1], a[t], a[t + 1])
        if any(v is None for v in trip) or (b is not None and any(b[t + d] is None for d in (-1, 0, 1))):
            continue
        if cuts[t] or cuts[t + 1]:
            continue
        x = np.array(trip)
        out.append(np.abs(x[2] - 2 * x[1] + x[0]))
    return np.array(out).reshape(-1, 3), len(out)


def jitter_table(res: dict[str, Any]) -> str:
    out = ["| video | points | method | triples | yaw median / mean | pitch median / mean | roll median / mean | "
           "mean |ft - MediaPipe| yaw / pitch / roll |", "|---|---|---|---|---|---|---|---|"]
    for name, e in res.items():
        for pts in ("68", "51"):
            ft = e["facetrack"][pts]
            mp = e.get("mediapipe", {}).get(pts)
            for method, a, other in (("facetrack", ft, mp), ("MediaPipe Face Mesh", mp, ft)):
                if a is None:
                    continue
                d, n = _second_differences(a, other, e["cuts"])
                if not n:
                    continue
                med, mean = np.median(d, 0), d.mean(0)
                agree = "-"
                if other is not None and method == "facetrack":
                    both = [(x, y) for x, y in zip(a, other) if x is not None and y is not None]
                    if both:
                        diff = np.mean([_err(y, x) for x, y in both], 0)
                        agree = f"{diff[1]:.1f} / {diff[0]:.1f} / {diff[2]:.1f} ({len(both)} frames)"
                out.append(f"| {name} | {pts} | {method} | {n} | {med[1]:.3f} / {mean[1]:.3f} | {med[0]:.3f} / {mean[0]:.3f} | "
                           f"{med[2]:.3f} / {mean[2]:.3f} | {agree} |")
    return "\n".join(out)


def cpu(data: Path, rounds: int = 3, frames: int = 275) -> dict[str, Any]:
    """CPU ms per frame with and without the pose (alternating rounds), and the solve's own us."""
    import cv2

    from facetrack.tracker.detect import make_detector
    from facetrack.tracker.presets import preset
    from facetrack.tracker.pose import PoseSolver
    from facetrack.tracker.tracker import Tracker

    cv2.setNumThreads(1)
    cap = cv2.VideoCapture(str(data / "videos_unlabelled" / VIDEOS[0]))
    imgs = []
    while len(imgs) < frames:
        ok, f = cap.read()
        if not ok:
            break
        imgs.append(f)
    cap.release()
    p = preset("video")
    per: dict[str, list[float]] = {"pose on": [], "pose off": []}
    faces = []
    for r in range(rounds):
        for label in (("pose on", "pose off") if r % 2 == 0 else ("pose off", "pose on")):
            with Tracker(p.tracker_config(pose=label == "pose on"), detector=make_detector(p.detector)) as tr:
                c0 = time.process_time()
                for i, f in enumerate(imgs):
                    res = tr.process(f, i / 30.0)
                    if label == "pose on" and r == 0:
                        faces += [x.landmarks for x in res.faces if x.success]
                per[label].append((time.process_time() - c0) / len(imgs) * 1e3)
    s = PoseSolver()
    size = (imgs[0].shape[1], imgs[0].shape[0])
    for lm in faces[:50]:
        s.solve(lm, size)
    times = []
    for _ in range(3):
        for lm in faces:
            c0 = time.process_time()
            s.solve(lm, size)
            times.append((time.process_time() - c0) * 1e6)
    t = np.array(times)
    return {"per_frame_ms": per, "solve_us": {"mean": float(t.mean()), "median": float(np.median(t)),
                                              "p95": float(np.percentile(t, 95)), "n": len(t)},
            "frames": len(imgs), "load": os.getloadavg()}


def cpu_table(res: dict[str, Any]) -> str:
    on, off = np.array(res["per_frame_ms"]["pose on"]), np.array(res["per_frame_ms"]["pose off"])
    s = res["solve_us"]
    return "\n".join([
        "| | CPU ms per frame (median of rounds) | rounds |", "|---|---|---|",
        f"| tracker, pose on | {np.median(on):.3f} | {', '.join(f'{v:.2f}' for v in on)} |",
        f"| tracker, pose off | {np.median(off):.3f} | {', '.join(f'{v:.2f}' for v in off)} |",
        f"| difference | {np.median(on) - np.median(off):+.3f} | |",
        "", "| the solve alone, CPU us per face | mean | median | 95th pct | solves |", "|---|---|---|---|---|",
        f"| PoseSolver.solve | {s['mean']:.0f} | {s['median']:.0f} | {s['p95']:.0f} | {s['n']} |",
        "", f"load average during the run: {', '.join(f'{v:.2f}' for v in res['load'])}"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facetrack.bench.pose", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FACETRACK_DATA", "../shared/data")))
    ap.add_argument("--turns", action="store_true")
    ap.add_argument("--jitter", action="store_true")
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--faces", type=int, default=0, help="--turns: the first N held-out faces (default all)")
    ap.add_argument("--rounds", type=int, default=3, help="--cpu: alternating rounds")
    ap.add_argument("--peers-python", default=os.environ.get("FACETRACK_PEERS_PYTHON"),
                    help="interpreter with mediapipe 0.10.21 (default $FACETRACK_PEERS_PYTHON; without: facetrack only)")
    ap.add_argument("--json", type=Path, help="write the raw results")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"bench.pose: {args.data}: no such folder (give --data, the shared data folder)", file=sys.stderr)
        return 2
    if not (args.turns or args.jitter or args.cpu):
        args.turns = args.jitter = args.cpu = True
    raw: dict[str, Any] = {}
    if args.turns:
        raw["turns"] = turns(args.data, args.faces)
        print(f"\n### Pose error on synthetic head turns (degrees; {raw['turns']['faces']} held-out faces)\n")
        print(turns_table(raw["turns"]))
    if args.jitter:
        raw["jitter"] = jitter(args.data, args.peers_python)
        print("\n### Frame-to-frame pose jitter (|second difference|, degrees)\n")
        print(jitter_table(raw["jitter"]))
    if args.cpu:
        raw["cpu"] = cpu(args.data, args.rounds)
        print("\n### CPU with and without the pose (selfie video, 1 thread)\n")
        print(cpu_table(raw["cpu"]))
    if args.json:
        args.json.write_text(json.dumps(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
