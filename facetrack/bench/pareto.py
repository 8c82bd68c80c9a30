"""Model capacity by measurement: validation NME against CPU ms per face, with MediaPipe's
landmark step as the budget line.

``python -m facetrack.bench.pareto --out RUNS_DIR [--data DIR] [--peers-python PATH]
[--configs NAME ...] [--mdm-steps 1500] [--aan-steps 600] [--json PATH] [--train-only]``

For every configuration of :data:`CONFIGS` (a named architecture, or one with ``--config``
changes, :func:`facetrack.train.models.registry.with_overrides`), one after the other:

1. **train** it from scratch with the project's own command, ``facetrack train ARCH --data
   images68:4 pseudo_dlib:1 pseudo_v2:1 --data-root DATA --seed 0 --threads 1 --workers 1
   --steps N [--config ...]`` into ``RUNS_DIR/NAME`` (``N``: ``--mdm-steps`` or ``--aan-steps``;
   same data, seed and group split for all). A folder whose run finished at ``N`` steps with the
   same configuration is kept (the bench is resumable); an interrupted one is continued with
   ``--resume``;
2. **export** its best checkpoint (by validation NME) to ``RUNS_DIR/NAME/best.onnx``;
3. read the best checkpoint's validation NME (all held-out groups) and its human-labelled part
   (``val_nme_human``: the images68 validation faces, few).

Then, in one process and interleaved over ``--rounds`` rounds, it times every exported model
and MediaPipe Face Mesh 0.10.21 (in the peers' interpreter). facetrack runs with the shipped
tracker's ONNX Runtime session (:class:`facetrack.engines.onnxrt.OnnxRuntimeBackend`: CPU
provider, 1 intra-op thread, no spinning), batch 1, timed two ways: the **model** call alone,
and the tracker's whole **landmark step** on a real video frame
(:meth:`facetrack.tracker.landmarker.Landmarker.fit_box`: similarity crop, model, landmarks
mapped back). CPU ms: the median over all calls of the calling process's CPU time
(``time.process_time``, all threads) per call.

MediaPipe's Python API offers no call to its landmark model alone, so its **landmark step** is
timed as the whole Face Mesh (``solutions.face_mesh``, video mode, one face) on pre-cropped
faces: frames of a real video cut around the face found in them (square, 1.6 x the mesh's box,
256 px), fed as a video. While it tracks, Face Mesh runs no detector: each call is its ROI
warp, landmark network and post-processing, plus the graph's overhead, so the budget line is
slightly generous to MediaPipe. The same crops in image mode (detector + landmarks per call)
are timed beside it to show that the detector was indeed skipped.

Prints a Markdown table: configuration, training steps, parameters (inference graph), model
CPU ms, landmark step CPU ms, validation NME %, human validation NME %, on the Pareto front
(landmark step CPU against validation NME, over all rows) and within MediaPipe's budget
(landmark step CPU at most MediaPipe's tracking call). Short budgets rank configurations; they
do not give final accuracy.

This file also runs the MediaPipe side (``--mediapipe-worker``) under the peers' interpreter,
so it imports nothing from facetrack (and nothing beyond the standard library) at module level.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The training data of every configuration (the shipped models' sources and weights).
DATA_SOURCES = ("images68:4", "pseudo_dlib:1", "pseudo_v2:1")
DEFAULT_VIDEO = "sbr_demo_selfie.mp4"


@dataclass(frozen=True)
class Capacity:
    """One configuration: a folder-safe ``name``, the architecture and its ``--config`` items."""

    name: str
    arch: str
    config: tuple[str, ...] = ()
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.arch} " + " ".join(self.config) if self.config else f"{self.arch} (shipped)"


#: The measured configurations: the shipped ones and variants along the axes of issue 12
#: (hidden width, conv channels, patch sampling, crop size; AAN widths and input size).
CONFIGS: tuple[Capacity, ...] = (
    Capacity("mdm-rt", "mdm-rt"),
    Capacity("mdm-rt-p10", "mdm-rt", ("patch_samples=10",), "10x10 samples per patch: 1x1x8 features"),
    Capacity("mdm-rt-h256", "mdm-rt", ("hidden_size=256",), "half the recurrent width"),
    Capacity("aan", "aan"),
    Capacity("aan-s96", "aan", ("input_size=96",), "96-px crop"),
    Capacity("mdm-rt-c16", "mdm-rt", ("conv_channels=16,32",), "twice the conv channels"),
    Capacity("aan-narrow", "aan", ("block_channels=48,96,128,160",), "narrower blocks"),
    Capacity("mdm-rt-p18", "mdm-rt", ("patch_samples=18",), "18x18 samples per patch: 3x3x8 features"),
    Capacity("mdm-rt-s96", "mdm-rt", ("input_size=96", "patch_px=25.7"), "96-px crop, same patch face fraction"),
)
BY_NAME = {c.name: c for c in CONFIGS}


# ---- training --------------------------------------------------------------------------------
def train_command(cap: Capacity, run_dir: Path, data_root: Path, steps: int, val_every: int, resume: bool = False,
                  force: bool = False, python: str = sys.executable) -> list[str]:
    """The ``facetrack train`` command of one configuration (the same for all but arch, steps and config)."""
    cmd = [python, "-m", "facetrack", "train", cap.arch, "--data", *DATA_SOURCES, "--data-root", str(data_root),
           "--out", str(run_dir), "--steps", str(steps), "--batch", "16", "--seed", "0", "--val-every", str(val_every),
           "--threads", "1", "--workers", "1", "--quiet"]
    if cap.config:
        cmd += ["--config", *cap.config]
    if resume:
        cmd.append("--resume")
    elif force:
        cmd.append("--force")
    return cmd


class BenchError(RuntimeError):
    """A run folder or measurement that cannot be used; one line naming it."""


def run_state(run_dir: Path, expected_config: dict[str, Any], steps: int) -> str:
    """``"done"`` (finished at ``steps`` with ``expected_config``), ``"partial"`` (has
    ``last.pt``: resume it) or ``"empty"``. :class:`BenchError` when the folder holds another
    configuration or another step budget (the bench never overwrites a different run)."""
    cfg_file = run_dir / "config.json"
    if cfg_file.is_file():
        stored = json.loads(cfg_file.read_text(encoding="utf-8"))
        if stored != expected_config:
            raise BenchError(f"{run_dir}: holds another configuration ({cfg_file}); move it away or use another --out")
    if not (run_dir / "last.pt").is_file():
        return "empty"
    rec = run_dir / "record.json"
    if rec.is_file():
        r = json.loads(rec.read_text(encoding="utf-8"))
        planned = (r.get("options") or {}).get("steps")
        if planned is not None and planned != steps:
            raise BenchError(f"{run_dir}: trained for {planned} steps, not {steps}; move it away or use another --out")
        if (r.get("final") or {}).get("step") == steps and (run_dir / "best.pt").is_file():
            return "done"
    return "partial"


def ensure_trained(cap: Capacity, run_dir: Path, data_root: Path, steps: int, val_every: int) -> str:
    """Train ``cap`` into ``run_dir`` unless it is done there; returns the state it was found in."""
    from facetrack.train.models.registry import config_for, config_to_dict, with_overrides

    expected = config_to_dict(with_overrides(config_for(cap.arch), cap.config))
    state = run_state(run_dir, expected, steps)
    if state == "done":
        return state
    # a folder without a checkpoint (a run killed before its first validation): nothing to keep
    force = state == "empty" and run_dir.is_dir() and any(run_dir.iterdir())
    cmd = train_command(cap, run_dir, data_root, steps, val_every, resume=state == "partial", force=force)
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"[{cap.name}] {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    with (run_dir / "train.log").open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise BenchError(f"{run_dir}: training {cap.name} failed (exit {rc}); see {run_dir / 'train.log'}")
    print(f"[{cap.name}] trained in {time.perf_counter() - t0:.0f} s", flush=True)
    return state


def export_best(run_dir: Path) -> Path:
    """``run_dir/best.onnx`` from ``best.pt`` (re-exported when the checkpoint is newer)."""
    from facetrack.train.export.to_onnx import export_onnx

    ck, onnx_path = run_dir / "best.pt", run_dir / "best.onnx"
    if onnx_path.is_file() and onnx_path.stat().st_mtime >= ck.stat().st_mtime:
        return onnx_path
    return export_onnx(ck, onnx_path)  # the exporter's tolerances hold for trained models


def checkpoint_facts(run_dir: Path) -> dict[str, Any]:
    """Parameters (inference graph; AAN's training-only heads left out) and the best
    checkpoint's validation figures."""
    from facetrack.train.models.checkpoint import load_checkpoint
    from facetrack.train.models.registry import config_to_dict, overrides_of

    ck = load_checkpoint(run_dir / "best.pt")
    model = ck.build_model()
    heads = sum(p.numel() for p in model.heads.parameters()) if hasattr(model, "heads") else 0
    m = ck.meta.get("metrics") or {}
    return {"params": sum(p.numel() for p in model.parameters()) - heads, "best_step": ck.step,
            "val_nme": m.get("val_nme"), "val_nme_human": m.get("val_nme_human"), "val_nme_teacher_groups": m.get("val_nme_teacher_groups"),
            "val_failure": m.get("val_failure"), "config": config_to_dict(model.config), "overrides": overrides_of(model.config)}


# ---- timing ----------------------------------------------------------------------------------
def _feed(backend: Any) -> dict[str, Any]:
    """Batch-1 inputs: a random image and, for MDM, the template and a zero hidden state."""
    import numpy as np

    from facetrack.engines import names
    from facetrack.tracker.geometry import template

    s = backend.input_size
    feed = {names.IMAGE: np.random.default_rng(0).random((1, 1, s, s), dtype=np.float32)}
    if backend.kind == "mdm":
        feed[names.INIT_SHAPE] = np.ascontiguousarray(template(s)[None], np.float32)
        feed[names.HIDDEN] = np.zeros((1, backend.hidden_size), np.float32)
    return feed


def time_calls(fn: Any, calls: int, warmup: int) -> tuple[list[float], list[float]]:
    """``(CPU ms, wall ms)`` of each of ``calls`` calls of ``fn()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    cpu, wall = [], []
    for _ in range(calls):
        c0, w0 = time.process_time_ns(), time.perf_counter_ns()
        fn()
        cpu.append((time.process_time_ns() - c0) / 1e6)
        wall.append((time.perf_counter_ns() - w0) / 1e6)
    return cpu, wall


def median(v: list[float]) -> float:
    s = sorted(v)
    m = len(s) // 2
    return float("nan") if not s else s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def mediapipe_worker(video: str, frames: int, out: str) -> int:
    """The peers' side: Face Mesh on pre-cropped faces of ``video``; per-call CPU and wall ms
    (video mode: tracking, no detector; image mode: detector + landmarks), written to ``out``."""
    import cv2
    import mediapipe as mp
    import numpy as np

    fm = mp.solutions.face_mesh
    cap = cv2.VideoCapture(video)
    rgb_frames = []
    while len(rgb_frames) < frames:
        ok, frame = cap.read()
        if not ok:
            break
        rgb_frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    crops = []
    with fm.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False) as finder:
        for rgb in rgb_frames:  # untimed: where the face is in each frame
            res = finder.process(rgb)
            if not res.multi_face_landmarks:
                continue
            h, w = rgb.shape[:2]
            pts = np.array([(p.x * w, p.y * h) for p in res.multi_face_landmarks[0].landmark])
            c = (pts.min(0) + pts.max(0)) / 2
            half = 0.8 * float((pts.max(0) - pts.min(0)).max())
            m = np.array([[256 / (2 * half), 0, 128 - 256 / (2 * half) * c[0]], [0, 256 / (2 * half), 128 - 256 / (2 * half) * c[1]]])
            crops.append(np.ascontiguousarray(cv2.warpAffine(rgb, m, (256, 256), flags=cv2.INTER_LINEAR)))
    result: dict[str, Any] = {"mediapipe": mp.__version__, "frames": len(rgb_frames), "crops": len(crops)}
    for mode, static in (("track", False), ("image", True)):
        found = 0
        with fm.FaceMesh(static_image_mode=static, max_num_faces=1, refine_landmarks=False,
                         min_detection_confidence=0.5, min_tracking_confidence=0.5) as mesh:
            cpu, wall = [], []
            for k, crop in enumerate(crops):
                c0, w0 = time.process_time_ns(), time.perf_counter_ns()
                res = mesh.process(crop)
                c1, w1 = time.process_time_ns(), time.perf_counter_ns()
                found += bool(res.multi_face_landmarks)
                if k >= 5:  # the first calls start the graph and run the detector
                    cpu.append((c1 - c0) / 1e6)
                    wall.append((w1 - w0) / 1e6)
        result[mode] = {"cpu_ms": cpu, "wall_ms": wall, "found": found}
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    return 0


def time_mediapipe(peers: Path, video: Path, frames: int) -> dict[str, Any]:
    """One run of :func:`mediapipe_worker` under the peers' interpreter."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "mp.json"
        proc = subprocess.run([str(peers), str(Path(__file__).resolve()), "--mediapipe-worker", str(video), str(frames), str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise BenchError(f"{peers}: the MediaPipe timing failed (exit {proc.returncode}): {tail[:300]}")
        return json.loads(out.read_text(encoding="utf-8"))


def first_face(video: Path) -> tuple[Any, Any]:
    """The first frame of ``video`` (grey) holding a face the default detector finds, and that
    face's calibrated landmark box (what the tracker crops from)."""
    import cv2

    from facetrack.tracker.detect import default_detector

    det = default_detector()
    cap = cv2.VideoCapture(str(video))
    for _ in range(100):
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found = det.detect(gray)
        if found:
            return gray, det.calibration(max(found, key=lambda d: d.box[2] - d.box[0]).box)
    raise BenchError(f"{video}: no face found in its first 100 frames (--video)")


def measure(onnx: dict[str, Path], peers: Path | None, video: Path, frames: int, calls: int, rounds: int) -> dict[str, Any]:
    """Per configuration the model call (``cpu_ms``, ``wall_ms``) and the tracker's whole
    landmark step on a video frame (``step_cpu_ms``, ``step_wall_ms``: similarity crop, model,
    landmarks back to the image; :meth:`facetrack.tracker.landmarker.Landmarker.fit_box`), medians
    over all calls of all rounds; and MediaPipe's ``{"track": ..., "image": ...}``. Rounds
    alternate the order of the models and run MediaPipe between them, so load changes hit every
    row alike."""
    from facetrack.engines.onnxrt import OnnxRuntimeBackend
    from facetrack.tracker.landmarker import TIGHT_BOX, Landmarker

    backends = {n: OnnxRuntimeBackend(p) for n, p in onnx.items()}  # the tracker's session options
    landmarkers = {n: Landmarker(p, backend="onnxruntime") for n, p in onnx.items()}
    gray, box = first_face(video)
    feeds = {n: _feed(b) for n, b in backends.items()}
    times: dict[str, dict[str, list[float]]] = {n: {"cpu_ms": [], "wall_ms": [], "step_cpu_ms": [], "step_wall_ms": []} for n in backends}
    mp_times: dict[str, dict[str, list[float]]] = {m: {"cpu_ms": [], "wall_ms": [], "found": []} for m in ("track", "image")}
    mp_version = ""
    loads: list[float] = []
    per_round: list[dict[str, float]] = []  # each round's medians: the spread of the paired figures
    for r in range(rounds):
        this: dict[str, float] = {}
        order = list(backends) if r % 2 == 0 else list(reversed(backends))
        for n in order:
            b, f = backends[n], feeds[n]
            cpu, wall = time_calls(lambda b=b, f=f: b.infer(f), calls, warmup=20)
            times[n]["cpu_ms"] += cpu
            times[n]["wall_ms"] += wall
            lm = landmarkers[n]
            cpu, wall = time_calls(lambda lm=lm: lm.fit_box(gray, box, calibration=TIGHT_BOX), calls, warmup=20)
            times[n]["step_cpu_ms"] += cpu
            times[n]["step_wall_ms"] += wall
            this[n] = median(cpu)
        if peers is not None:
            res = time_mediapipe(peers, video, frames)
            mp_version = res["mediapipe"]
            for m in ("track", "image"):
                mp_times[m]["cpu_ms"] += res[m]["cpu_ms"]
                mp_times[m]["wall_ms"] += res[m]["wall_ms"]
                mp_times[m]["found"].append(f"{res[m]['found']}/{res['crops']}")
            this["mediapipe"] = median(res["track"]["cpu_ms"])
        loads.append(os.getloadavg()[0])
        per_round.append(this)
        print(f"round {r + 1}/{rounds}: load {loads[-1]:.1f}; landmark step CPU ms: "
              + ", ".join(f"{k} {v:.2f}" for k, v in this.items()), flush=True)
    out: dict[str, Any] = {"models": {n: {**{k: median(v) for k, v in t.items()}, "calls": len(t["cpu_ms"])} for n, t in times.items()},
                           "load_average": loads, "rounds": per_round, "frame": list(gray.shape), "box": [round(float(x), 1) for x in box]}
    if peers is not None:
        out["mediapipe"] = {"version": mp_version, **{m: {"cpu_ms": median(t["cpu_ms"]), "wall_ms": median(t["wall_ms"]),
                                                          "calls": len(t["cpu_ms"]), "found": t["found"]}
                                                      for m, t in mp_times.items()}}
    return out


# ---- the table -------------------------------------------------------------------------------
def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Names whose ``(cost, error)`` no other point matches or beats in both with one strictly."""
    front = set()
    for n, (c, e) in points.items():
        if not any((c2 <= c and e2 <= e) and (c2 < c or e2 < e) for m, (c2, e2) in points.items() if m != n):
            front.add(n)
    return front


#: The cost the front and the budget are judged on: the tracker's whole landmark step per face
#: (crop, model, mapping back), the counterpart of MediaPipe's timed call.
COST = "step_cpu_ms"


def table(rows: list[dict[str, Any]], budget_ms: float | None) -> str:
    """The Markdown table of :func:`main` (``rows``: name, label, steps, params, cpu_ms,
    step_cpu_ms, val_nme, val_nme_human), cheapest landmark step first."""
    front = pareto_front({r["name"]: (r[COST], r["val_nme"]) for r in rows})
    lines = ["| configuration | steps | parameters | model CPU ms | landmark step CPU ms | val NME % | human val NME % | "
             "Pareto front | within MediaPipe's budget |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r[COST]):
        human = "-" if r.get("val_nme_human") is None else f"{100 * r['val_nme_human']:.2f}"
        within = "-" if budget_ms is None else ("yes" if r[COST] <= budget_ms else "no")
        lines.append(f"| `{r['name']}`: {r['label']} | {r['steps']} | {r['params']:,} | {r['cpu_ms']:.2f} | {r[COST]:.2f} | "
                     f"{100 * r['val_nme']:.2f} | {human} | {'yes' if r['name'] in front else 'no'} | {within} |")
    return "\n".join(lines)


def conclusion(rows: list[dict[str, Any]], budget_ms: float | None) -> str:
    """One sentence: the most accurate configuration whose landmark step is within the budget."""
    if budget_ms is None:
        return "No MediaPipe budget was measured (no peers' interpreter)."
    inside = [r for r in rows if r[COST] <= budget_ms]
    if not inside:
        return f"No configuration is within MediaPipe's {budget_ms:.2f} CPU ms."
    best = min(inside, key=lambda r: r["val_nme"])
    return (f"Most accurate within MediaPipe's {budget_ms:.2f} CPU ms: `{best['name']}` ({best['label']}), "
            f"val NME {100 * best['val_nme']:.2f} % at {best[COST]:.2f} CPU ms per landmark step.")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--mediapipe-worker"]:
        return mediapipe_worker(argv[1], int(argv[2]), argv[3])
    ap = argparse.ArgumentParser(prog="python -m facetrack.bench.pareto", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder of the training runs (one subfolder per configuration; reused)")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (images68, pseudo_dlib, pseudo_v2, videos_unlabelled); default: $FACETRACK_DATA")
    ap.add_argument("--peers-python", default=None, help="interpreter with mediapipe==0.10.21; default: $FACETRACK_PEERS_PYTHON")
    ap.add_argument("--configs", nargs="+", default=[c.name for c in CONFIGS], metavar="NAME",
                    help=f"configurations, in this order (default all: {', '.join(BY_NAME)})")
    ap.add_argument("--mdm-steps", type=int, default=1500, help="training steps of every mdm / mdm-rt configuration (default 1500)")
    ap.add_argument("--aan-steps", type=int, default=600, help="training steps of every aan configuration (default 600)")
    ap.add_argument("--val-every", type=int, default=500, help="steps between validations (default 500)")
    ap.add_argument("--calls", type=int, default=300, help="timed calls per model and round (default 300)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (default 3)")
    ap.add_argument("--video", type=Path, default=None, help=f"video whose face crops MediaPipe tracks (default DATA/videos_unlabelled/{DEFAULT_VIDEO})")
    ap.add_argument("--mp-frames", type=int, default=200, help="frames of --video for MediaPipe (default 200)")
    ap.add_argument("--train-only", action="store_true", help="train (and export) what is missing, measure nothing")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = ap.parse_args(argv)
    from facetrack.bench.environment import SetupError, data_dir, peers_missing_line, peers_python

    prog = "facetrack.bench.pareto"
    unknown = [n for n in args.configs if n not in BY_NAME]
    if unknown:
        print(f"{prog}: unknown configuration(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    if min(args.mdm_steps, args.aan_steps, args.val_every, args.calls, args.rounds, args.mp_frames) < 1:
        print(f"{prog}: --mdm-steps, --aan-steps, --val-every, --calls, --rounds and --mp-frames must be >= 1", file=sys.stderr)
        return 2
    try:
        root = data_dir(args.data)
    except SetupError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    peers = None
    if not args.train_only:
        peers = peers_python(args.peers_python)
        if peers is None or not peers.is_file():
            print(f"{prog}: {peers_missing_line(peers)}", file=sys.stderr)
            return 2
        video = args.video or root / "videos_unlabelled" / DEFAULT_VIDEO
        if not video.is_file():
            print(f"{prog}: {video}: no such video (--video)", file=sys.stderr)
            return 2
    caps = [BY_NAME[n] for n in args.configs]
    rows: list[dict[str, Any]] = []
    onnx: dict[str, Path] = {}
    try:
        for cap in caps:
            steps = args.aan_steps if cap.arch == "aan" else args.mdm_steps
            run_dir = args.out / cap.name
            state = ensure_trained(cap, run_dir, root, steps, args.val_every)
            onnx[cap.name] = export_best(run_dir)
            facts = checkpoint_facts(run_dir)
            rows.append({"name": cap.name, "label": cap.label, "arch": cap.arch, "steps": steps, "found": state,
                         "command": " ".join(["facetrack", *train_command(cap, run_dir, root, steps, args.val_every)[3:]]),
                         **facts})
            print(f"[{cap.name}] {state}: best step {facts['best_step']}, val NME {100 * facts['val_nme']:.2f} %, "
                  f"{facts['params']:,} parameters", flush=True)
        if args.train_only:
            return 0
        timing = measure(onnx, peers, video, args.mp_frames, args.calls, args.rounds)
    except (BenchError, OSError, ValueError, RuntimeError) as e:
        print(f"{prog}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    for r in rows:
        r.update(timing["models"][r["name"]])
    budget = timing["mediapipe"]["track"]["cpu_ms"] if "mediapipe" in timing else None
    import onnxruntime

    loads = timing["load_average"]
    print(f"\nCPU ms per face: median over {args.rounds} x {args.calls} calls of the process's CPU time per call; ONNX Runtime "
          f"{onnxruntime.__version__} CPU provider, 1 intra-op thread (the tracker's session), batch 1; model: the session call "
          f"alone; landmark step: Landmarker.fit_box on a {timing['frame'][1]}x{timing['frame'][0]} frame of {video.name} "
          f"(crop, model, landmarks back to the frame); load average {min(loads):.1f}-{max(loads):.1f}, {os.cpu_count()} CPUs.")
    if budget is not None:
        mp = timing["mediapipe"]
        print(f"MediaPipe {mp['version']} Face Mesh on pre-cropped faces of {video.name}: tracking (landmark step, no detector) "
              f"{mp['track']['cpu_ms']:.2f} CPU ms per call (wall {mp['track']['wall_ms']:.2f}); image mode (detector + landmarks) "
              f"{mp['image']['cpu_ms']:.2f}; faces found {', '.join(mp['track']['found'])}.")
    print(f"Training: mdm-rt {args.mdm_steps} steps, aan {args.aan_steps} steps, batch 16, seed 0, from scratch; val NME: best "
          f"checkpoint, all held-out groups (outer-eye NME).\n")
    print(table(rows, budget))
    print("\n" + conclusion(rows, budget))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "timing": {k: v for k, v in timing.items() if k != "models"},
                                         "budget_ms": budget, "front": sorted(pareto_front({r["name"]: (r[COST], r["val_nme"]) for r in rows})),
                                         "options": {k: str(v) for k, v in vars(args).items()}}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
