"""Paired CPU time per frame of the whole ``facetrack`` command against MediaPipe Face Mesh.

Each round runs, one after the other and in alternating order, for every video:

- ``facetrack VIDEO --out ... -q`` (the default command: decode, cut check, detection,
  tracking, CSV) as a child process;
- MediaPipe Face Mesh 0.10.21 (``solutions.face_mesh``, video mode, one face, as a user runs
  it: decode with OpenCV, BGR -> RGB, ``process``) in the peers' interpreter, as a child.

Each is run twice, on all frames and on the first ``--head`` frames, and the per-frame figures
are the differences: ``(CPU(all) - CPU(head)) / (frames - head)``, where CPU is the child's
user + system time (``os.wait4``). This leaves out what both pay once (interpreter, imports,
model loading) and keeps everything paid per frame, decoding included on both sides. The same
for wall time gives end-to-end fps. Per round the ratio facetrack / MediaPipe is taken; the
table gives medians over rounds and the load average per round. Measure on a quiet machine;
on a shared one compare only figures of the same run.

``--baseline COMMAND`` also runs a second facetrack command (another checkout's, e.g. the
commit before a change) in the same rounds, so a change is measured against its baseline and
MediaPipe on the same load.

Usage: ``python -m facetrack.bench.cpu [--rounds 5] [--data DIR] [--peers-python PATH]
[--video PATH ...] [--baseline COMMAND] [--json PATH] [-- extra facetrack options]``

This file also runs the MediaPipe side (``--mediapipe VIDEO FRAMES``) under the peers'
interpreter, so it imports nothing from facetrack at module level.
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

DEFAULT_VIDEOS = ("sbr_demo_selfie.mp4", "short_hamilton_clip.mp4")


def mediapipe_worker(video: str, frames: int) -> int:
    """Decode ``frames`` frames of ``video`` and run Face Mesh on each (the peers' side)."""
    import cv2
    import mediapipe as mp

    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False,
                                           min_detection_confidence=0.5, min_tracking_confidence=0.5)
    cap = cv2.VideoCapture(video)
    n = found = 0
    while n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        res = mesh.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        found += bool(res.multi_face_landmarks)
        n += 1
    print(json.dumps({"frames": n, "found": found}))
    return 0


def run_child(cmd: list[str]) -> tuple[float, float, str]:
    """(CPU seconds user + system, wall seconds, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return usage.ru_utime + usage.ru_stime, wall, out


def count_frames(video: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.grab():
        n += 1
    return n


def commands(method: str, video: Path, frames: int, args: argparse.Namespace, tmp: Path) -> list[str]:
    if method in ("facetrack", "baseline"):
        exe = args.facetrack if method == "facetrack" else args.baseline
        return [exe, str(video), "--out", str(tmp / f"{video.stem}_{method}_{frames}.csv"), "-q", "--end", f"{frames}f",
                *args.extra]
    return [args.peers_python, str(Path(__file__).resolve()), "--mediapipe", str(video), str(frames)]


def measure(method: str, video: Path, n: int, args: argparse.Namespace, tmp: Path) -> dict:
    cpu_all, wall_all, _ = run_child(commands(method, video, n, args, tmp))
    cpu_head, wall_head, _ = run_child(commands(method, video, args.head, args, tmp))
    k = n - args.head
    return {"cpu_ms_per_frame": 1e3 * (cpu_all - cpu_head) / k, "wall_ms_per_frame": 1e3 * (wall_all - wall_head) / k,
            "cpu_s_total": cpu_all, "wall_s_total": wall_all}


def median(v: list[float]) -> float:
    s = sorted(v)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--mediapipe"]:
        return mediapipe_worker(argv[1], int(argv[2]))
    extra: list[str] = []
    if "--" in argv:
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--head", type=int, default=10, help="frames of the short run subtracted (default 10)")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (videos_unlabelled/); default: $FACETRACK_DATA")
    ap.add_argument("--video", type=Path, nargs="*", default=None, help="default: the two videos of DATA/videos_unlabelled")
    ap.add_argument("--facetrack", default=str(Path(sys.executable).with_name("facetrack")), help="the facetrack command")
    ap.add_argument("--baseline", default=None, help="a second facetrack command measured in the same rounds (e.g. another checkout's)")
    ap.add_argument("--peers-python", default=None, help="interpreter with mediapipe==0.10.21; default: $FACETRACK_PEERS_PYTHON")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    args.extra = extra
    # here, not at the top: this file also runs as a script under the peers' interpreter
    from facetrack.bench.environment import SetupError, data_dir, peers_missing_line, peers_python

    try:
        if args.video is None:
            args.video = [data_dir(args.data) / "videos_unlabelled" / v for v in DEFAULT_VIDEOS]
    except SetupError as e:
        print(f"facetrack.bench.cpu: {e}", file=sys.stderr)
        return 2
    peers = peers_python(args.peers_python)
    if peers is None or not peers.is_file():
        print(f"facetrack.bench.cpu: {peers_missing_line(peers)}", file=sys.stderr)
        return 2
    args.peers_python = str(peers)
    frames = {v: count_frames(v) for v in args.video}
    methods = ("facetrack", "mediapipe") if args.baseline is None else ("facetrack", "baseline", "mediapipe")
    rows: dict[str, dict[str, list]] = {str(v): {**{m: [] for m in methods}, "ratio": [], "baseline_ratio": [], "load": []}
                                        for v in args.video}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            for v in args.video:
                order = methods if r % 2 == 0 else methods[::-1]
                res = {m: measure(m, v, frames[v], args, Path(d)) for m in order}
                row = rows[str(v)]
                for m in order:
                    row[m].append(res[m])
                mp = res["mediapipe"]["cpu_ms_per_frame"]
                row["ratio"].append(res["facetrack"]["cpu_ms_per_frame"] / mp)
                base = ""
                if "baseline" in res:
                    row["baseline_ratio"].append(res["baseline"]["cpu_ms_per_frame"] / mp)
                    base = f"baseline {res['baseline']['cpu_ms_per_frame']:.2f} (ratio {row['baseline_ratio'][-1]:.2f}), "
                row["load"].append(os.getloadavg()[0])
                print(f"round {r + 1} {v.name}: facetrack {res['facetrack']['cpu_ms_per_frame']:.2f} CPU ms/frame, {base}"
                      f"MediaPipe {mp:.2f}, ratio {row['ratio'][-1]:.2f}, load {row['load'][-1]:.1f}", flush=True)
    print(f"\nfacetrack options: {' '.join(extra) or '(defaults)'}; {args.rounds} rounds; per frame = (all frames - first "
          f"{args.head}) / (frames - {args.head}); CPU = user + system of the child")
    print("| video | facetrack CPU ms/frame | MediaPipe CPU ms/frame | ratio (median of rounds) | facetrack fps | MediaPipe fps | load average |")
    print("|---|---|---|---|---|---|---|")
    for v, row in rows.items():
        mp = median([x["cpu_ms_per_frame"] for x in row["mediapipe"]])
        fps_mp = 1e3 / median([x["wall_ms_per_frame"] for x in row["mediapipe"]])
        for m, ratios in (("facetrack", row["ratio"]), ("baseline", row["baseline_ratio"])):
            if m not in row:
                continue
            ft = median([x["cpu_ms_per_frame"] for x in row[m]])
            fps_ft = 1e3 / median([x["wall_ms_per_frame"] for x in row[m]])
            label = Path(v).name + (" (baseline)" if m == "baseline" else "")
            print(f"| {label} | {ft:.2f} | {mp:.2f} | {median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
                  f"{fps_ft:.0f} | {fps_mp:.0f} | {min(row['load']):.1f}-{max(row['load']):.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"extra": extra, "baseline": args.baseline, "rounds": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
