"""facetrack against the tools users would pick instead (dlib, MediaPipe): speed, per-stage
latency, memory, accuracy on the held-out 300-W faces and stability on real video, in one run.

``facetrack bench [--data DIR] [--peers-python PATH] [--runs 3] [--json out.json] [--markdown out.md]``
(or ``python -m facetrack.bench.bench``); works from an installed package: the data folder and the
peers' interpreter come from options or ``$FACETRACK_DATA`` / ``$FACETRACK_PEERS_PYTHON``
(:mod:`facetrack.bench.environment`).

Every measurement runs in its own subprocess, so each method's peak memory (``VmHWM``) is its
own: facetrack's model choices (:data:`facetrack.tracker.models.CHOICES`: ``mdm-rt``, ``aan``,
``aan+mdm``) under this interpreter (``python -m facetrack.bench.bench --worker``; ONNX Runtime
CPU, ``--threads`` intra-op threads), the peers (``dlib``, ``dlib-tracked``, ``mediapipe``; see
``facetrack/bench/peers.py``) under ``--peers-python`` (their own virtualenv, since MediaPipe pins
numpy<2). A peer whose interpreter or package is missing is reported as "not installed", with
the command that makes the peers' environment.

Speed: each video is decoded once to memory (decode ms/frame reported separately), a few
warm-up frames run on a throwaway state, then every frame is timed (wall ms per frame and per
stage; CPU seconds of the whole process, all threads). facetrack also writes its CSV
(:class:`facetrack.io.output.CsvWriter`, timed as its own stage); the peers write nothing. The
rounds are interleaved (round 1 of every method, then round 2, ...) so a change in the load
of a shared machine hits every method alike; figures are medians over rounds of per-frame
medians / means. Ratios facetrack / peer come from the same run.

Accuracy: NME (outer-eye normalised, 68 and 49 points) on the 300-W test faces of
``images68`` (common: helen_test + lfpw_test, 8 faces; challenging: ibug, 4 faces). facetrack
from the 300-W box (``300w`` calibration) and from its detector's box; dlib from its own
detector (falling back to the 300-W box when it finds no face over the ground truth);
MediaPipe from its own detector, 468 points mapped to 68 (``peers.MP_TO_68``), no face = failure.

Stability: :func:`facetrack.eval.metrics.jitter` without ground truth (mean frame-to-frame point
displacement / outer-eye distance) over pairs of consecutive frames that both have a face,
and the frames with a face.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import logging
import math
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facetrack.bench.environment import data_dir, peers_missing_line, peers_python
from facetrack.bench.peers import cpu_model, decode_video, frames_mib, tight_box, vm_hwm_mib, vm_rss_mib
from facetrack.engines.engine_cache import file_sha256
from facetrack.tracker.models import CHOICES, SHIPPED, FitChain, ModelChoice, open_landmarkers, parse_model

log = logging.getLogger("bench")

FACETRACK_METHODS = CHOICES
PEER_METHODS = ("dlib", "dlib-tracked", "mediapipe")
DEFAULT_VIDEOS = ("short_hamilton_clip.mp4", "sbr_demo_selfie.mp4")
STAGES_FT = ("detect", "crop", "infer", "post", "other")
STAGES_PEER = ("convert", "detect", "landmarks", "post")


# =============================================================================================
# workers (run in a subprocess each)
# =============================================================================================
def _landmarkers(spec: dict[str, Any]) -> dict[str, Any]:
    """Stage of the method's model choice -> landmarker, from the files in ``spec["models"]``."""
    choice = parse_model(spec["method"])
    files = ModelChoice(tuple(spec["models"][s] for s in choice.stages))
    by_file, _ = open_landmarkers(files, backend="onnxruntime", threads=spec.get("threads"))
    return {s: by_file[f] for s, f in zip(choice.stages, files.stages)}


def _chain(lms: dict[str, Any], method: str, gray: np.ndarray, box: np.ndarray, calibration: Any) -> Any:
    """The tracker's fitting chain (:class:`facetrack.tracker.models.FitChain`) from ``box`` of
    the source whose ``calibration`` is given."""
    return FitChain([lms[s] for s in parse_model(method).stages]).fit_box(gray, box, calibration=calibration)


def worker_video(spec: dict[str, Any]) -> dict[str, Any]:
    """facetrack over one video decoded to memory: per-frame wall ms (tracker.process), its
    stages, CSV write ms, CPU seconds, landmarks of face 0 (None when not found)."""
    from facetrack.io.output import CsvWriter
    from facetrack.tracker.detect import make_detector
    from facetrack.tracker.presets import preset
    from facetrack.tracker.tracker import Tracker

    lms = _landmarkers(spec)
    # the product's video defaults (turned view, smoothing, detector) with this method's model
    video = preset("video").with_options(model=spec["method"], threads=spec.get("threads"))
    cfg = video.tracker_config(backend="onnxruntime", detect_every=int(spec.get("detect_every", 3)))
    tracker = Tracker(cfg, landmarkers=lms, detector=make_detector(video.detector))
    rss_loaded = vm_rss_mib()
    frames, decode_ms = decode_video(spec["video"], spec.get("max_frames"))
    for i, f in enumerate(frames[: int(spec.get("warmup", 10))]):
        tracker.process(f, i / 30.0)
    tracker.reset()
    total_ms: list[float] = []
    write_ms: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES_FT}
    landmarks: list[list | None] = []
    detector_runs = 0
    with tempfile.TemporaryDirectory() as tmp:
        writer = CsvWriter(Path(tmp) / "bench.csv")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i, f in enumerate(frames):
            t0 = time.perf_counter()
            res = tracker.process(f, i / 30.0)
            t1 = time.perf_counter()
            writer.write_frame(i + 1, res.timestamp, res.faces, cut=res.cut)
            t2 = time.perf_counter()
            total_ms.append((t1 - t0) * 1e3)
            write_ms.append((t2 - t1) * 1e3)
            inner = 0.0
            for k in STAGES_FT[:-1]:
                v = float(res.timings.get(k, 0.0))
                stages[k].append(v)
                inner += v
            stages["other"].append(max(0.0, (t1 - t0) * 1e3 - inner))
            detector_runs += res.detector_ran
            face = next((fc for fc in res.faces if fc.success), None)
            landmarks.append(None if face is None else np.round(face.landmarks.astype(np.float64), 3).tolist())
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        writer.close()
        csv_bytes = (Path(tmp) / "bench.csv").stat().st_size
    out: dict[str, Any] = {"method": spec["method"], "video": spec["video"], "frames": len(frames), "decode_ms": decode_ms,
                           "total_ms": total_ms, "stage_ms": stages, "write_ms": write_ms, "cpu_s": cpu_s, "wall_s": wall_s,
                           "landmarks": landmarks, "detector_runs": detector_runs, "csv_bytes": csv_bytes}
    if spec.get("profile"):
        tracker.reset()
        prof = cProfile.Profile()
        prof.enable()
        for i, f in enumerate(frames):
            tracker.process(f, i / 30.0)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(15)
        out["profile_tottime"] = buf.getvalue()
    import onnxruntime

    out["version"] = f"onnxruntime {onnxruntime.__version__}"
    out["vm_hwm_mib"] = vm_hwm_mib()
    out["rss_loaded_mib"] = rss_loaded
    out["frames_mib"] = frames_mib(frames)
    tracker.close()
    for lm in {id(v): v for v in lms.values()}.values():
        lm.close()
    return out


def worker_images(spec: dict[str, Any]) -> dict[str, Any]:
    """facetrack on still images: from the 300-W box (``300w`` calibration) and from the
    still-image detector's box (``STILL_DETECTOR``, as the CLI on images: the detection with
    the best IoU > 0.3 with the ground-truth box; else the 300-W box, counted as a fallback)."""
    from facetrack.tracker.detect import box_calibration, still_detector
    from facetrack.tracker.geometry import box_iou
    from facetrack.tracker.geometry import to_gray
    from facetrack.train.data.datasets import read_image

    lms = _landmarkers(spec)
    det = still_detector()
    cal300 = box_calibration("300w")
    out = []
    for item in spec["items"]:
        gray = to_gray(read_image(item["image"]))
        gt_box = np.asarray(item["gt_box"], np.float64)
        p300 = None
        if item.get("box_300w") is not None:
            f300 = _chain(lms, spec["method"], gray, np.asarray(item["box_300w"], np.float64), cal300)
            p300 = f300.landmarks.astype(np.float64).tolist()
        dets = det.detect(gray)
        best = max(dets, key=lambda d: box_iou(d.box, gt_box), default=None)
        if best is not None and box_iou(best.box, gt_box) > 0.3:
            fdet = _chain(lms, spec["method"], gray, best.box, det.calibration)
            pdet, how = fdet.landmarks.astype(np.float64).tolist(), "detector"
        elif p300 is not None:
            pdet, how = p300, "fallback-300w-box"
        else:
            pdet, how = None, "not-found"
        out.append({"image": item["image"], "landmarks_300w": p300, "landmarks": pdet, "how": how, "n_detections": len(dets)})
    for lm in {id(v): v for v in lms.values()}.values():
        lm.close()
    return {"method": spec["method"], "results": out, "detector": det.name, "vm_hwm_mib": vm_hwm_mib()}


def _worker_main(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    res = worker_video(spec) if spec["task"] == "video" else worker_images(spec)
    res["python"] = sys.executable
    Path(out_path).write_text(json.dumps(res))
    return 0


# =============================================================================================
# orchestration
# =============================================================================================
def run_subprocess(python: str | Path | None, script: Path | None, spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``python script SPEC OUT`` (a peer's runner file, under the peers' interpreter) or,
    with ``script=None``, ``python -m facetrack.bench.bench --worker SPEC OUT`` (facetrack, as
    installed); the result JSON, or ``{"status": "not installed" | "failed", "error": ...}``."""
    if python is None or not Path(python).exists():
        return {"status": "not installed", "error": peers_missing_line(None if python is None else Path(python))}
    with tempfile.TemporaryDirectory() as tmp:
        sp, op = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        sp.write_text(json.dumps(spec))
        run = ["-m", "facetrack.bench.bench", "--worker"] if script is None else [str(script)]
        cmd = [str(python), *run, str(sp), str(op)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not op.exists():
            err = (proc.stderr or "").strip().splitlines()
            last = err[-1] if err else f"exit code {proc.returncode}"
            missing = "ModuleNotFoundError" in (proc.stderr or "") or "No module named" in (proc.stderr or "")
            return {"status": "not installed" if missing else "failed", "error": last}
        res = json.loads(op.read_text())
        res["status"] = "ok"
        return res


def _arr(landmarks: Sequence[list | None]) -> np.ndarray:
    """Per-frame landmarks (None when no face) -> ``(T, 68, 2)`` float64, NaN for no face."""
    out = np.full((len(landmarks), 68, 2), np.nan)
    for i, p in enumerate(landmarks):
        if p is not None:
            out[i] = np.asarray(p, np.float64)
    return out


def shot_cuts(frames: Sequence[np.ndarray], threshold: float = 0.5) -> list[int]:
    """0-based indices of frames that start a new shot, by the tracker's own
    :class:`facetrack.tracker.tracker.CutDetector` (the same cuts are used for every method)."""
    from facetrack.tracker.geometry import to_gray
    from facetrack.tracker.tracker import CutDetector

    det = CutDetector(threshold)
    return [i for i, f in enumerate(frames) if det(to_gray(f))]


def stability(landmarks: Sequence[list | None], cuts: Sequence[int] = ()) -> dict[str, float]:
    """Frames with a face, and :func:`facetrack.eval.metrics.jitter` (no ground truth) on 68 and on
    the 49 points (normalised by the outer-eye distance of the 68-point shape), over pairs of
    consecutive frames that both have a face and are not split by a shot cut (``cuts``: 0-based
    indices of the first frame of each new shot)."""
    from facetrack.tracker.markup import SUBSET_49
    from facetrack.eval.metrics import jitter, normaliser

    p = _arr(landmarks)
    ok = np.isfinite(p).all(axis=(1, 2))
    found = int(ok.sum())
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(p)), len(p)]
    s68 = s49 = 0.0
    pairs = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = p[a:b]
        n = int((ok[a + 1:b] & ok[a:b - 1]).sum())
        if n == 0:
            continue
        with np.errstate(invalid="ignore"):
            s68 += n * jitter(seg)
            s49 += n * jitter(seg[:, list(SUBSET_49)], norm=normaliser(seg))
        pairs += n
    nan = float("nan")
    return {"found": found, "consecutive_pairs": pairs, "jitter68": s68 / pairs if pairs else nan,
            "jitter49": s49 / pairs if pairs else nan}


def summarize_rounds(rounds: list[dict[str, Any]], cuts: Sequence[int] = ()) -> dict[str, Any]:
    """Worker results of one (method, video) over rounds -> summary figures (ms per frame,
    fps, CPU ms per frame, stage means, memory, stability of the last round; ``cuts`` as in
    :func:`stability`)."""
    ok = [r for r in rounds if r.get("status") == "ok"]
    if not ok:
        bad = rounds[0] if rounds else {"status": "failed", "error": "no rounds"}
        return {"status": bad.get("status", "failed"), "error": bad.get("error", "")}

    def med(vals: list[float]) -> float:
        return float(np.median(vals)) if vals else float("nan")

    tot = [np.asarray(r["total_ms"], np.float64) for r in ok]
    dec = med([float(np.mean(r["decode_ms"])) for r in ok])
    track_mean = med([float(t.mean()) for t in tot])
    write = med([float(np.mean(r["write_ms"])) for r in ok]) if ok[0].get("write_ms") else 0.0
    stages: dict[str, float] = {}
    for k in ok[0]["stage_ms"]:
        stages[k] = med([float(np.mean(r["stage_ms"][k])) if r["stage_ms"].get(k) else 0.0 for r in ok])
    s = {"status": "ok", "rounds": len(ok), "frames": ok[0]["frames"],
         "track_ms_median": med([float(np.median(t)) for t in tot]),
         "track_ms_mean": track_mean,
         "track_ms_p90": med([float(np.percentile(t, 90)) for t in tot]),
         "cpu_ms_per_frame": med([1e3 * r["cpu_s"] / r["frames"] for r in ok]),
         "decode_ms": dec, "write_ms": write, "stage_ms_mean": stages,
         "fps_track": 1e3 / track_mean if track_mean > 0 else float("nan"),
         "fps_end_to_end": 1e3 / (dec + track_mean + write),
         "vm_hwm_mib": max(float(r["vm_hwm_mib"]) for r in ok),
         # the decoded video sits in memory for the timing; the method's own peak leaves it out
         "vm_hwm_minus_frames_mib": max(float(r["vm_hwm_mib"]) - float(r.get("frames_mib", 0.0)) for r in ok),
         "rss_loaded_mib": max(float(r.get("rss_loaded_mib", float("nan"))) for r in ok),
         "version": ok[0].get("version", ""),
         "round_track_ms_mean": [float(t.mean()) for t in tot]}
    s.update(stability(ok[-1]["landmarks"], cuts))
    s["found_per_round"] = [int(sum(p is not None for p in r["landmarks"])) for r in ok]
    if "detector_runs" in ok[-1]:
        s["detector_runs"] = ok[-1]["detector_runs"]
    if ok[-1].get("profile_tottime"):
        s["profile_tottime"] = ok[-1]["profile_tottime"]
    return s


def ratios(speed: dict[str, dict[str, dict[str, Any]]], ours: Sequence[str], peers: Sequence[str]) -> list[dict[str, Any]]:
    """facetrack / peer ratios per video from the same run: ``fps`` (track fps; > 1 means
    facetrack is faster), ``ms`` (median ms per frame; < 1 faster), ``cpu_ms`` (CPU ms per frame)."""
    rows = []
    for video, by_method in speed.items():
        for m in ours:
            a = by_method.get(m, {})
            for p in peers:
                b = by_method.get(p, {})
                if a.get("status") != "ok" or b.get("status") != "ok":
                    rows.append({"video": video, "facetrack": m, "peer": p, "status": b.get("status") if a.get("status") == "ok" else a.get("status")})
                    continue
                rows.append({"video": video, "facetrack": m, "peer": p, "status": "ok",
                             "fps_ratio": a["fps_track"] / b["fps_track"],
                             "ms_ratio": a["track_ms_median"] / b["track_ms_median"],
                             "cpu_ms_ratio": a["cpu_ms_per_frame"] / b["cpu_ms_per_frame"]})
    return rows


def accuracy_items(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The 300-W test faces: split -> items (``image``, ``gt`` (68, 2), ``gt_box``, ``box_300w``)."""
    from facetrack.train.data.datasets import load_images68

    out: dict[str, list[dict[str, Any]]] = {}
    for split in ("common", "challenging"):
        items = []
        for s in load_images68(data_dir, split):
            if s.box is None:
                log.warning("%s: no 300-W box in bboxes/mdm_bbs (no 300-W-box start, no fallback)", s.image)
            items.append({"image": str(s.image), "gt": s.landmarks.astype(np.float64).tolist(),
                          "gt_box": tight_box(s.landmarks).tolist(),
                          "box_300w": None if s.box is None else np.asarray(s.box, np.float64).tolist(), "split": split})
        out[split] = items
    return out


def score_accuracy(items: list[dict[str, Any]], results: list[dict[str, Any]], key: str = "landmarks") -> dict[str, Any]:
    """NME (outer, 68 and 49 points) per split over the faces found; counts of failures
    (no face) and fallbacks (the 300-W box used because the detector found nothing); the
    failure rates at NME68 > 8 % and > 20 % over all faces (no face counting as failed) and
    ``gross_found``: faces found with NME68 > 20 % (a wrong face reported)."""
    from facetrack.eval.metrics import GROSS, THRESHOLD, failure_rate, nme, normaliser

    out: dict[str, Any] = {}
    for split in ("common", "challenging"):
        e68, e49, jaw, fail, fallback, n = [], [], [], 0, 0, 0
        for it, r in zip(items, results):
            if it["split"] != split:
                continue
            n += 1
            pts = r.get(key)
            if pts is None:
                fail += 1
                continue
            if key == "landmarks" and r.get("how") == "fallback-300w-box":
                fallback += 1
            gt = np.asarray(it["gt"], np.float64)
            e68.append(float(nme(np.asarray(pts), gt, 68)))
            jaw.append(float(np.linalg.norm(np.asarray(pts)[:17] - gt[:17], axis=-1).mean() / normaliser(gt)))
            e49.append(float(nme(np.asarray(pts), gt, 49)))
        out[split] = {"n": n, "scored": len(e68), "failures": fail, "fallbacks": fallback,
                      "nme68_mean": float(np.mean(e68)) if e68 else float("nan"),
                      "nme68_median": float(np.median(e68)) if e68 else float("nan"),
                      "nme49_mean": float(np.mean(e49)) if e49 else float("nan"),
                      "nme49_median": float(np.median(e49)) if e49 else float("nan"),
                      "jaw_nme_mean": float(np.mean(jaw)) if jaw else float("nan"),
                      "failure": failure_rate(np.array(e68 + [np.nan] * fail), THRESHOLD) if n else float("nan"),
                      "failure_gross": failure_rate(np.array(e68 + [np.nan] * fail), GROSS) if n else float("nan"),
                      "gross_found": int(np.sum(np.array(e68) > GROSS)),
                      "nme68_per_face": e68}
    return out


def resolve_models(models_dir: Path | None, methods: Sequence[str] = FACETRACK_METHODS) -> dict[str, str]:
    """Stage (``mdm-rt``, ``mdm``, ``aan``) -> model path for the stages ``methods`` need:
    ``models_dir`` (files named as the shipped ones) if given, else the shipped weights.
    ``FileNotFoundError`` naming the missing file."""
    from facetrack.tracker.models import resolve_model

    needed = dict.fromkeys(s for m in methods if m in FACETRACK_METHODS for s in parse_model(m).stages)
    out = {}
    for key in needed:
        if models_dir is not None:
            p = Path(models_dir) / SHIPPED[key]
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no such model file (--models-dir needs {', '.join(sorted(set(SHIPPED.values())))})")
        else:
            p = resolve_model(key)
        out[key] = str(p)
    return out


def export_untrained(folder: Path) -> dict[str, str]:
    """Freshly initialised mdm-rt and aan exported to ``folder`` (for debugging the harness
    when the trained weights are missing: speed is representative, accuracy is not)."""
    import torch

    from facetrack.train.export.to_onnx import export_onnx
    from facetrack.train.models.registry import build_model

    for arch in ("mdm-rt", "aan"):
        torch.manual_seed(0)
        export_onnx(build_model(arch).eval(), folder / f"{arch}.onnx")
    return resolve_models(folder)


def _git_head() -> str:
    """The checkout's commit (``git rev-parse HEAD``) or ``""``."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(Path(__file__).parent),
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, Any]:
    """CPU model, CPUs, load average, versions."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
                            "nice": os.nice(0)}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """The whole comparison; returns the results dict (see the module docstring)."""
    t_start = time.perf_counter()
    data = data_dir(args.data)
    peers_interp = peers_python(args.peers_python)
    videos = [Path(v) if Path(v).is_file() else data / "videos_unlabelled" / v for v in args.videos]
    for v in videos:
        if not v.is_file():
            raise FileNotFoundError(f"{v}: no such video")
    untrained = False
    tmpdir = None
    ours = [m for m in args.methods if m in FACETRACK_METHODS]
    peers = [m for m in args.methods if m in PEER_METHODS]
    try:
        models = resolve_models(args.models_dir, ours)
    except FileNotFoundError as e:
        if not args.untrained_if_missing:
            raise
        log.warning("%s; exporting freshly initialised models (accuracy figures are meaningless)", e)
        tmpdir = tempfile.TemporaryDirectory()
        models = export_untrained(Path(tmpdir.name))
        untrained = True
    info = machine_info()
    info["load_average_start"] = list(os.getloadavg())
    info["models"] = models
    info["model_sha256"] = {k: file_sha256(v)[:16] for k, v in models.items()}
    info["git_head"] = _git_head()
    info["untrained_weights"] = untrained
    from facetrack.tracker.detect import box_calibration

    dlib_cal = box_calibration("detector:dlib-hog")
    peer_common = {"dlib_calibration": {"sx": dlib_cal.sx, "sy": dlib_cal.sy, "dx": dlib_cal.dx, "dy": dlib_cal.dy},
                   "upsample": args.dlib_upsample}
    peers_py = Path(__file__).resolve().with_name("peers.py")  # a file of the package, run by the peers' interpreter

    def spawn(method: str, spec: dict[str, Any]) -> dict[str, Any]:
        if method in FACETRACK_METHODS:
            spec = {**spec, "method": method, "models": models, "threads": args.threads, "detect_every": args.detect_every}
            return run_subprocess(sys.executable, None, spec)
        return run_subprocess(peers_interp, peers_py, {**peer_common, **spec, "method": method})

    # speed + stability: rounds interleaved across methods
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {v.name: {m: [] for m in ours + peers} for v in videos}
    round_load: list[float] = []
    for r in range(args.runs):
        round_load.append(os.getloadavg()[0])
        for v in videos:
            for m in ours + peers:
                if r > 0 and raw[v.name][m] and raw[v.name][m][0].get("status") != "ok":
                    continue  # not installed / failed once: do not retry every round
                spec = {"task": "video", "video": str(v), "warmup": args.warmup, "max_frames": args.max_frames,
                        "profile": bool(args.profile and m in ours and r == args.runs - 1)}
                res = spawn(m, spec)
                raw[v.name][m].append(res)
                if res.get("status") == "ok":
                    log.info("round %d %s %s: %.2f ms/frame mean, %d/%d frames with a face", r + 1, v.name, m,
                             float(np.mean(res["total_ms"])), sum(p is not None for p in res["landmarks"]), res["frames"])
                else:
                    log.info("round %d %s %s: %s (%s)", r + 1, v.name, m, res.get("status"), res.get("error"))
    cuts = {v.name: shot_cuts(decode_video(v, args.max_frames)[0]) for v in videos}
    speed = {v: {m: summarize_rounds(rs, cuts[v]) for m, rs in by_m.items()} for v, by_m in raw.items()}

    # accuracy on the 300-W test faces
    accuracy: dict[str, Any] = {}
    if not args.no_accuracy:
        items_by_split = accuracy_items(data)
        items = items_by_split["common"] + items_by_split["challenging"]
        spec_items = [{k: it[k] for k in ("image", "gt_box", "box_300w")} for it in items]
        for m in ours + [p for p in peers if p != "dlib-tracked"]:  # on still images dlib-tracked is dlib
            res = spawn(m, {"task": "images", "items": spec_items, "upsample": args.dlib_upsample_images})
            if res.get("status") != "ok":
                accuracy[m] = {"status": res.get("status"), "error": res.get("error")}
                continue
            entry = {"status": "ok", "from_detector": score_accuracy(items, res["results"]),
                     "vm_hwm_mib": res.get("vm_hwm_mib")}
            if m in ours:
                entry["from_300w_box"] = score_accuracy(items, res["results"], key="landmarks_300w")
                entry["detector"] = res.get("detector")
            accuracy[m] = entry
            log.info("accuracy %s done", m)
    info["load_average_per_round"] = round_load
    info["load_average_end"] = list(os.getloadavg())
    info["wall_s"] = time.perf_counter() - t_start
    if tmpdir is not None:
        tmpdir.cleanup()
    return {"setup": {**info, "runs": args.runs, "warmup": args.warmup, "threads": args.threads,
                      "detect_every": args.detect_every, "dlib_upsample_video": args.dlib_upsample,
                      "dlib_upsample_images": args.dlib_upsample_images, "max_frames": args.max_frames,
                      "peers_python": str(peers_interp), "videos": [str(v) for v in videos]},
            "shot_cuts": cuts, "speed": speed, "ratios": ratios(speed, ours, peers), "accuracy": accuracy}


# =============================================================================================
# tables
# =============================================================================================
def _f(v: Any, fmt: str = ".1f") -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(x) else format(x, fmt)


def markdown(res: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    s = res["setup"]
    la0, la1 = s.get("load_average_start", [math.nan] * 3), s.get("load_average_end", [math.nan] * 3)
    lines = [f"Machine: {s.get('cpu')}, {s.get('cpus')} CPUs; load average (1 min) {_f(la0[0], '.2f')} at the start, "
             f"{_f(la1[0], '.2f')} at the end (at each round's start: "
             f"{', '.join(_f(x, '.2f') for x in s.get('load_average_per_round', []))}); nice {s.get('nice')}; {s.get('date')}; onnxruntime {s.get('onnxruntime')}, "
             f"{s.get('threads')} threads; {s.get('runs')} interleaved rounds, {s.get('warmup')} warm-up frames; "
             f"tracker detect_every={s.get('detect_every')}; git {s.get('git_head', '?')}, models sha256 "
             f"{', '.join(f'{k} {v}' for k, v in s.get('model_sha256', {}).items())}; dlib upsample {s.get('dlib_upsample_video')} (video) / "
             f"{s.get('dlib_upsample_images')} (images)."]
    if s.get("untrained_weights"):
        lines.append("**UNTRAINED (freshly initialised) facetrack weights: speed only; accuracy and stability are meaningless.**")
    for video, by_m in res["speed"].items():
        cut_list = res.get("shot_cuts", {}).get(video)
        cut_note = "" if cut_list is None else f" (shot cuts before frames {', '.join(str(c) for c in cut_list) or 'none'}, 0-based; jitter pairs across them left out)"
        lines += ["", f"### Speed, memory, stability: {video}{cut_note}", "",
                  "| method | frames with face | track ms/frame median | mean | p90 | CPU ms/frame | fps (track) | "
                  "fps (decode+track+write) | decode ms | CSV write ms | peak RSS MiB (without the decoded video) | RSS after loading MiB | jitter 68 | jitter 49 |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for m, r in by_m.items():
            if r.get("status") != "ok":
                lines.append(f"| {m} | {r.get('status')} | " + " | ".join(["–"] * 12) + " |")
                continue
            lines.append(f"| {m} | {r['found']}/{r['frames']} | {_f(r['track_ms_median'], '.2f')} | {_f(r['track_ms_mean'], '.2f')} | "
                         f"{_f(r['track_ms_p90'], '.2f')} | {_f(r['cpu_ms_per_frame'], '.2f')} | {_f(r['fps_track'])} | "
                         f"{_f(r['fps_end_to_end'])} | {_f(r['decode_ms'], '.2f')} | "
                         f"{_f(r['write_ms'], '.2f') if m in FACETRACK_METHODS else 'none'} | {_f(r['vm_hwm_mib'], '.0f')} ({_f(r['vm_hwm_minus_frames_mib'], '.0f')}) | {_f(r['rss_loaded_mib'], '.0f')} | "
                         f"{_f(r['jitter68'], '.4f')} | {_f(r['jitter49'], '.4f')} |")
        lines += ["", "Per-stage wall ms per frame (mean):", "",
                  "| method | stages |", "| --- | --- |"]
        for m, r in by_m.items():
            if r.get("status") == "ok":
                st = ", ".join(f"{k} {_f(v, '.2f')}" for k, v in r["stage_ms_mean"].items())
                extra = f"; detector ran on {r['detector_runs']} frames" if "detector_runs" in r else ""
                lines.append(f"| {m} | {st}{extra} |")
    if res.get("ratios"):
        lines += ["", "### Ratios facetrack / peer (same run)", "",
                  "fps ratio > 1: facetrack faster; ms and CPU-ms ratios < 1: facetrack faster.", "",
                  "| video | facetrack | peer | fps ratio | median-ms ratio | CPU-ms ratio |", "| --- | --- | --- | ---: | ---: | ---: |"]
        for r in res["ratios"]:
            if r.get("status") != "ok":
                lines.append(f"| {r['video']} | {r['facetrack']} | {r['peer']} | {r.get('status')} | – | – |")
            else:
                lines.append(f"| {r['video']} | {r['facetrack']} | {r['peer']} | {_f(r['fps_ratio'], '.2f')} | "
                             f"{_f(r['ms_ratio'], '.2f')} | {_f(r['cpu_ms_ratio'], '.2f')} |")
    if res.get("accuracy"):
        lines += ["", "### Accuracy on the 300-W test faces (NME, outer-eye, %; tiny sets: common 8, challenging 4 faces)", "",
                  "| method | start | common NME68 | common NME49 | common jaw | challenging NME68 | challenging NME49 | challenging jaw | no face (or no box) | detector fell back to 300-W box | "
                  "failure % > 8 % / > 20 % (common; challenging) | found with NME68 > 20 % |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for m, a in res["accuracy"].items():
            if a.get("status") != "ok":
                lines.append(f"| {m} | {a.get('status')} | – | – | – | – | – | – | – | – | – | – |")
                continue
            rows = [("own detector" if m in PEER_METHODS else f"detector ({a.get('detector')})", a["from_detector"])]
            if "from_300w_box" in a:
                rows.insert(0, ("300-W box", a["from_300w_box"]))
            for start, sc in rows:
                c, h = sc["common"], sc["challenging"]
                lines.append(f"| {m} | {start} | {_f(100 * c['nme68_mean'], '.2f')} | {_f(100 * c['nme49_mean'], '.2f')} | "
                             f"{_f(100 * c.get('jaw_nme_mean'), '.2f')} | "
                             f"{_f(100 * h['nme68_mean'], '.2f')} | {_f(100 * h['nme49_mean'], '.2f')} | "
                             f"{_f(100 * h.get('jaw_nme_mean'), '.2f')} | "
                             f"{c['failures']}/{c['n']}, {h['failures']}/{h['n']} | {c['fallbacks']}/{c['n']}, {h['fallbacks']}/{h['n']} | "
                             f"{_f(100 * c.get('failure'), '.0f')} / {_f(100 * c.get('failure_gross'), '.0f')}; "
                             f"{_f(100 * h.get('failure'), '.0f')} / {_f(100 * h.get('failure_gross'), '.0f')} | "
                             f"{c.get('gross_found', '–')}, {h.get('gross_found', '–')} |")
    profiles = [(v, m, r["profile_tottime"]) for v, by_m in res["speed"].items() for m, r in by_m.items() if r.get("profile_tottime")]
    for v, m, text in profiles:
        lines += ["", f"### cProfile of {m} on {v} (top functions by own time)", "", "```", text.strip(), "```"]
    return "\n".join(lines) + "\n"


# =============================================================================================
# command line
# =============================================================================================
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``facetrack/bench/bench.py`` / ``facetrack bench``."""
    p.add_argument("--data", type=Path, default=None,
                   help="shared data folder (videos_unlabelled, images68); default: $FACETRACK_DATA")
    p.add_argument("--videos", nargs="+", default=list(DEFAULT_VIDEOS), help="video files or names in DATA/videos_unlabelled")
    p.add_argument("--methods", nargs="+", default=list(FACETRACK_METHODS + PEER_METHODS),
                   choices=list(FACETRACK_METHODS + PEER_METHODS))
    p.add_argument("--runs", type=int, default=3, help="interleaved timing rounds per method and video")
    p.add_argument("--warmup", type=int, default=10, help="warm-up frames before each timed run")
    p.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each video")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--detect-every", type=int, default=3, help="tracker: frames between searches while no face is tracked")
    p.add_argument("--dlib-upsample", type=int, default=0, help="dlib detector upsampling on video frames")
    p.add_argument("--dlib-upsample-images", type=int, default=1, help="dlib detector upsampling on the 300-W images")
    p.add_argument("--models-dir", type=Path, default=None, help="folder with mdm-rt.onnx and aan.onnx (default: shipped weights)")
    p.add_argument("--untrained-if-missing", action="store_true",
                   help="export freshly initialised models when the weights are missing (speed only)")
    p.add_argument("--peers-python", type=Path, default=None,
                   help="interpreter with dlib and mediapipe (default: $FACETRACK_PEERS_PYTHON; see facetrack/bench/README.md)")
    p.add_argument("--no-accuracy", action="store_true", help="skip the 300-W accuracy part")
    p.add_argument("--profile", action="store_true", help="cProfile facetrack's tracker loop (last round)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables here")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the tables, write JSON / Markdown; exit code."""
    if args.runs < 1:
        print("bench: --runs must be >= 1", file=sys.stderr)
        return 2
    try:
        res = bench(args)
    except (FileNotFoundError, ValueError, OSError) as e:  # SetupError is a ValueError
        print(f"bench: {e}", file=sys.stderr)
        return 2
    text = markdown(res)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    if args.markdown:
        args.markdown.write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        if len(argv) != 3:
            print("usage: bench.py --worker SPEC.json OUT.json", file=sys.stderr)
            return 2
        return _worker_main(argv[1], argv[2])
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
