"""Long-run check: 30 minutes of video through the tracker and the CSV writer, as the track
CLI runs them, with flat memory and no slowdown.

``python -m facetrack.bench.long_run [--video CLIP] [--model mdm|aan|PATH] [--minutes 30] [--fps 30]
[--out /tmp/long_run.csv] [--json results.json]``

A real clip (default: ``$FACETRACK_DATA/videos_unlabelled/short_hamilton_clip.mp4``, 275
frames) is decoded again and again (:class:`facetrack.io.video.VideoFile`, reopened at its end)
until ``minutes * fps`` frames have passed; each frame goes through one
:class:`facetrack.tracker.tracker.Tracker` and one :class:`facetrack.io.output.CsvWriter` (flushed per frame)
with timestamps of the long video (``frame / fps`` seconds). At each mark (1, 10, 30 minutes of
video time by default) the script reads the process's resident memory (``VmRSS``) and its peak
(``VmHWM``) from ``/proc/self/status`` and the frames per second of the segment since the
previous mark, with the process's CPU time per frame (all its threads; less sensitive than
wall-clock speed to other programs sharing the CPU) and the 1-minute load average. At the end
the CSV is checked: one complete row per frame, no NaN.

Results are printed as a Markdown table (and written as JSON with ``--json``); memory in MiB,
speed in frames per second of wall-clock time (decode + track + write).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_CLIP = Path("videos_unlabelled") / "short_hamilton_clip.mp4"

log = logging.getLogger("long_run")


def proc_status_mib() -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of this process from ``/proc/self/status``, MiB (Linux only)."""
    out: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024.0  # kB -> MiB
    return out


def check_csv(path: Path, frames: int) -> dict[str, int]:
    """Rows, distinct frames and successes of the landmark CSV; raises if a line is
    incomplete, a value is not finite, or a frame is missing or repeated."""
    from facetrack.io.output import COLUMNS

    n_rows = n_ok = 0
    expect = 1
    ncol = len(COLUMNS)
    with open(path, newline="") as f:
        header = f.readline().rstrip("\n").split(",")
        if tuple(header) != COLUMNS:
            raise ValueError(f"{path}: unexpected header")
        for lineno, line in enumerate(f, start=2):
            if not line.endswith("\n"):
                raise ValueError(f"{path}: line {lineno} incomplete")
            vals = line.split(",")
            if len(vals) != ncol:
                raise ValueError(f"{path}: line {lineno} has {len(vals)} fields")
            frame = int(vals[0])
            if frame != expect:
                raise ValueError(f"{path}: line {lineno}: frame {frame}, expected {expect}")
            if not all(math.isfinite(float(v)) for v in vals):
                raise ValueError(f"{path}: line {lineno}: non-finite value")
            expect += 1
            n_rows += 1
            n_ok += vals[4] == "1"
    if n_rows != frames:
        raise ValueError(f"{path}: {n_rows} rows for {frames} frames")
    return {"rows": n_rows, "success_rows": n_ok}


def run(video: Path, model: str, minutes: float, fps: float, marks: list[float], out: Path, backend: str = "auto",
        threads: int | None = None, detect_every: int = 3) -> dict:
    """Track ``minutes`` of looped ``video`` at ``fps``; returns the results dict (see module doc)."""
    from facetrack.io.output import CsvWriter
    from facetrack.io.video import VideoFile
    from facetrack.tracker.tracker import Tracker

    total = int(round(minutes * 60 * fps))
    mark_frames = sorted({min(total, int(round(m * 60 * fps))) for m in marks} | {total})
    from facetrack.tracker.detect import make_detector
    from facetrack.tracker.presets import preset

    video = preset("video").with_options(model=model, threads=threads)  # the product's video defaults
    tracker = Tracker(video.tracker_config(backend=backend, detect_every=detect_every, default_fps=fps),
                      detector=make_detector(video.detector))
    writer = CsvWriter(out)
    base = proc_status_mib()
    rows: list[dict] = []
    source = VideoFile(video)
    loops = 1
    n = n_ok = 0
    seg_start, seg_frames, seg_ok = time.perf_counter(), 0, 0
    seg_cpu = time.process_time()
    t0 = seg_start
    stage_ms = {"detect": 0.0, "crop": 0.0, "infer": 0.0, "post": 0.0, "total": 0.0}
    mi = 0
    try:
        while n < total:
            item = source.read()
            if item is None:  # loop the clip: reopen (exact and cheap for a short file)
                source.close()
                source = VideoFile(video)
                loops += 1
                continue
            _, _, frame = item
            ts = n / fps
            result = tracker.process(frame, ts)
            writer.write_frame(n + 1, ts, result.faces, cut=result.cut)
            for k, v in result.timings.items():
                stage_ms[k] = stage_ms.get(k, 0.0) + v
            n += 1
            seg_frames += 1
            seg_ok += result.success
            n_ok += result.success
            if n == mark_frames[mi]:
                now, cpu = time.perf_counter(), time.process_time()
                mem = proc_status_mib()
                row = {"video_min": round(n / fps / 60, 2), "frames": n, "segment_frames": seg_frames,
                       "segment_wall_s": round(now - seg_start, 1), "segment_fps": round(seg_frames / (now - seg_start), 1),
                       "segment_success": round(seg_ok / seg_frames, 3), "rss_mib": round(mem["VmRSS"], 1),
                       "hwm_mib": round(mem["VmHWM"], 1), "wall_s": round(now - t0, 1),
                       "cpu_ms_per_frame": round(1000 * (cpu - seg_cpu) / seg_frames, 2),
                       "load_avg_1min": round(os.getloadavg()[0], 2),
                       "ms_per_frame": {k: round(v / seg_frames, 2) for k, v in stage_ms.items()}}
                rows.append(row)
                log.info("%.1f min of video: %d frames, %.1f fps in this segment, RSS %.1f MiB, peak %.1f MiB",
                         row["video_min"], n, row["segment_fps"], row["rss_mib"], row["hwm_mib"])
                seg_start, seg_frames, seg_ok, seg_cpu = now, 0, 0, cpu
                stage_ms = {k: 0.0 for k in stage_ms}
                mi += 1
    finally:
        source.close()
        writer.close()
        tracker.close()
    check = check_csv(out, n)
    return {"video": str(video), "model": model, "minutes": minutes, "fps": fps, "frames": n, "loops": loops,
            "success_frames": n_ok, "csv": str(out), "csv_bytes": out.stat().st_size, "csv_check": check,
            "baseline_mib": {k: round(v, 1) for k, v in base.items()}, "marks": rows,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}


def markdown(res: dict) -> str:
    """The marks as a Markdown table."""
    lines = [f"{res['frames']} frames ({res['minutes']} min at {res['fps']} fps, the clip looped {res['loops']} times), "
             f"model {res['model']}; memory after loading the model: RSS {res['baseline_mib']['VmRSS']} MiB",
             "", "| video time (min) | frames | segment fps (wall) | CPU ms / frame | tracker ms / frame | faces found | "
             "VmRSS (MiB) | VmHWM peak (MiB) | wall (s) | load avg |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["marks"]:
        lines.append(f"| {r['video_min']:g} | {r['frames']} | {r['segment_fps']} | {r['cpu_ms_per_frame']} | "
                     f"{r['ms_per_frame']['total']} | {100 * r['segment_success']:.0f} % | {r['rss_mib']} | {r['hwm_mib']} | "
                     f"{r['wall_s']} | {r['load_avg_1min']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, default=None, help=f"default: $FACETRACK_DATA/{DEFAULT_CLIP}")
    p.add_argument("--model", default="mdm", help="mdm | aan | aan+mdm | model file (default: mdm)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--minutes", type=float, default=30.0, help="video time to process (default 30)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the long video (default 30)")
    p.add_argument("--marks", type=float, nargs="+", default=[1, 5, 10, 20, 30], help="minutes of video time to report at")
    p.add_argument("--out", type=Path, default=Path("/tmp/facetrack_long_run.csv"))
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.video is None:
        from facetrack.bench.environment import SetupError, data_dir

        try:
            args.video = data_dir(None) / DEFAULT_CLIP
        except SetupError as e:
            print(f"long_run: {e} (or pass --video)", file=sys.stderr)
            return 2
    if not args.video.is_file():
        print(f"long_run: {args.video}: no such video", file=sys.stderr)
        return 2
    marks = [m for m in args.marks if m < args.minutes] + [args.minutes]
    res = run(args.video, args.model, args.minutes, args.fps, marks, args.out, args.backend, args.threads)
    print(markdown(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
