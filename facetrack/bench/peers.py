"""Peer landmarkers for the comparison benchmark, run in their own interpreter.

``$FACETRACK_PEERS_PYTHON path/to/facetrack/bench/peers.py SPEC.json OUT.json`` (the peers'
interpreter is made by the command in ``facetrack/bench/README.md``)

This file imports only numpy, OpenCV, and (inside the runners) ``dlib`` / ``mediapipe``, so it
runs under the peers' virtualenv (MediaPipe 0.10.21 pins numpy<2) as well as under facetrack's;
``facetrack/bench/bench.py`` starts it as a subprocess per (method, video, round) so each method's
peak memory is its own, and imports its shared helpers (:func:`decode_video`,
:func:`vm_hwm_mib`, :data:`MP_TO_68`).

Methods:

- ``dlib``: dlib's HOG frontal face detector + the 68-point shape predictor
  (``face_recognition_models``' ``shape_predictor_68_face_landmarks.dat``) on every frame.
- ``dlib-tracked``: detect once; on each later frame the predictor runs in a box made from the
  previous landmarks (the inverse of facetrack's ``detector:dlib-hog`` box calibration, so the
  box looks like a detector box); re-detect when the shape fails the tracker's sanity checks
  (scale change over ``max_scale_change``, under ``min_inside`` of the points in the frame,
  face under ``min_face_px``). dlib's predictor has no confidence, so drift is not noticed.
- ``mediapipe``: ``mediapipe.solutions.face_mesh.FaceMesh(static_image_mode=False,
  max_num_faces=1, refine_landmarks=False)`` (its own detector + mesh tracking); the 468-point
  mesh is mapped to the 68-point markup with :data:`MP_TO_68`.

Spec (JSON): ``{"task": "video" | "images", "method": ..., ...}``; see :func:`main`.
Output (JSON): per-frame landmarks ``(68, 2)`` (x, y) 0-based image px or ``null`` when no
face, per-frame wall milliseconds per stage, CPU seconds, ``VmHWM`` MiB, versions.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

log = logging.getLogger("peers")

#: MediaPipe face-mesh vertex indices averaged for each 68-point (iBUG 300-W / dlib) landmark,
#: 0-based in the 68-point order. Source: Peizhi Yan, "Mediapipe_2_Dlib_Landmarks" (2024),
#: github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks, ``mp2dlib.py`` (``mp2dlib_correspondence``;
#: pip package ``mediapipe2dlib``). One or two vertices per point; two are averaged. The jaw
#: (0-16) is the mesh's face oval, which is not the 300-W jaw contour (it runs higher on the
#: cheeks), so the 49-point error (no jaw, no inner mouth corners) is the fairer comparison.
MP_TO_68: tuple[tuple[int, ...], ...] = (
    # jaw 0-16 (image left to right)
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # brows 17-21, 22-26
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    # nose bridge 27-30, nose base 31-35
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    # eye on the image's left 36-41, on the image's right 42-47
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),
    # outer mouth 48-59
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    # inner mouth 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)


def mp_to_68(mesh: np.ndarray) -> np.ndarray:
    """MediaPipe mesh ``(468 or 478, 2)`` (x, y) image px -> ``(68, 2)`` float32 image px."""
    m = np.asarray(mesh, np.float64)
    if m.ndim != 2 or m.shape[0] < 468:
        raise ValueError(f"expected a (468, 2) face mesh, got shape {m.shape}")
    return np.array([m[list(ix)].mean(0) for ix in MP_TO_68], np.float32)


# ---- helpers shared with bench.py ----------------------------------------------------------
def vm_hwm_mib() -> float:
    """Peak resident memory (``VmHWM``) of this process, MiB; NaN off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def vm_rss_mib() -> float:
    """Resident memory now (``VmRSS``) of this process, MiB; NaN off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def frames_mib(frames: list[np.ndarray]) -> float:
    """Memory held by decoded frames, MiB."""
    return sum(f.nbytes for f in frames) / 2**20


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def decode_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[list[np.ndarray], list[float]]:
    """Decode a video to memory: BGR ``uint8`` frames and the wall milliseconds each
    ``VideoCapture.read`` took. Raises ``OSError`` naming the file when it cannot be read."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"{path}: cannot open video")
    frames: list[np.ndarray] = []
    ms: list[float] = []
    try:
        while max_frames is None or len(frames) < max_frames:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            t1 = time.perf_counter()
            if not ok or frame is None:
                break
            frames.append(frame)
            ms.append((t1 - t0) * 1000.0)
    finally:
        cap.release()
    if not frames:
        raise OSError(f"{path}: no frames could be decoded")
    return frames, ms


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    # Same as facetrack.tracker.detect.box_iou: this script runs under the peers' interpreter, which has
    # no facetrack installed (it may import only numpy, cv2, dlib and mediapipe).
    """IoU of two ``(x0, y0, x1, y1)`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def tight_box(pts: np.ndarray) -> np.ndarray:
    """Tight box ``(x0, y0, x1, y1)`` of ``(N, 2)`` points."""
    p = np.asarray(pts, np.float64)
    return np.concatenate([p.min(0), p.max(0)])


def _face_size(pts: np.ndarray) -> float:
    b = tight_box(pts)
    return float(math.sqrt(max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)))


def _pts_list(pts: np.ndarray | None) -> list | None:
    return None if pts is None else np.round(np.asarray(pts, np.float64), 3).tolist()


# ---- dlib ----------------------------------------------------------------------------------
class DlibRunner:
    """dlib HOG detector + 68-point predictor. ``calibration``: facetrack's
    ``detector:dlib-hog`` box calibration ``{"sx", "sy", "dx", "dy"}`` (detector box ->
    landmarks' tight box), inverted to make detector-like boxes from landmarks."""

    def __init__(self, upsample: int = 0, calibration: dict[str, float] | None = None, checks: dict[str, float] | None = None) -> None:
        import dlib
        import face_recognition_models

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self.upsample = int(upsample)
        self.cal = {"sx": 1.0, "sy": 1.0, "dx": 0.0, "dy": 0.0, **(calibration or {})}
        self.checks = {"max_scale_change": 1.35, "min_inside": 0.6, "min_face_px": 12.0, **(checks or {})}
        self.prev: np.ndarray | None = None

    def version(self) -> str:
        return str(self.dlib.__version__)

    def detect(self, gray: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Detections ``(box x0, y0, x1, y1 px, score)``, best first."""
        rects, scores, _ = self.detector.run(gray, self.upsample, 0.0)
        dets = [(np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64), float(s)) for r, s in zip(rects, scores)]
        return sorted(dets, key=lambda d: -d[1])

    def predict(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 points ``(68, 2)`` float32 image px in ``box`` (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self.predictor(gray, self.dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], np.float32)

    def box_from_landmarks(self, pts: np.ndarray) -> np.ndarray:
        """A detector-like box for the face whose landmarks are ``pts`` (inverse calibration)."""
        c = self.cal
        t = tight_box(pts)
        w, h = (t[2] - t[0]) / c["sx"], (t[3] - t[1]) / c["sy"]
        cx, cy = (t[0] + t[2]) / 2 - c["dx"] * w, (t[1] + t[3]) / 2 - c["dy"] * h
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def sane(self, pts: np.ndarray, hw: tuple[int, int], prev: np.ndarray | None) -> bool:
        """The tracker's sanity checks (points inside, face size, scale change)."""
        h, w = hw
        inside = ((pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)).mean()
        size = _face_size(pts)
        if inside < self.checks["min_inside"] or size < self.checks["min_face_px"]:
            return False
        if prev is not None:
            r = size / max(_face_size(prev), 1e-6)
            m = self.checks["max_scale_change"]
            if not 1.0 / m <= r <= m:
                return False
        return True

    def frame_every(self, frame: np.ndarray, st: dict[str, float]) -> np.ndarray | None:
        """``dlib``: detect + predict on this frame; landmarks of the best detection or None."""
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        t1 = time.perf_counter()
        dets = self.detect(gray)
        t2 = time.perf_counter()
        pts = self.predict(gray, dets[0][0]) if dets else None
        t3 = time.perf_counter()
        st["convert"] = (t1 - t0) * 1e3
        st["detect"] = (t2 - t1) * 1e3
        st["landmarks"] = (t3 - t2) * 1e3
        return pts

    def frame_tracked(self, frame: np.ndarray, st: dict[str, float]) -> np.ndarray | None:
        """``dlib-tracked``: predict in the box of the previous landmarks; detect when lost."""
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        st["convert"] = (time.perf_counter() - t0) * 1e3
        st["detect"] = st["landmarks"] = 0.0
        hw = gray.shape[:2]
        if self.prev is not None:
            t1 = time.perf_counter()
            pts = self.predict(gray, self.box_from_landmarks(self.prev))
            st["landmarks"] += (time.perf_counter() - t1) * 1e3
            if self.sane(pts, hw, self.prev):
                self.prev = pts
                return pts
            self.prev = None
        t1 = time.perf_counter()
        dets = self.detect(gray)
        t2 = time.perf_counter()
        st["detect"] += (t2 - t1) * 1e3
        if not dets:
            return None
        pts = self.predict(gray, dets[0][0])
        st["landmarks"] += (time.perf_counter() - t2) * 1e3
        self.prev = pts if self.sane(pts, hw, None) else None
        return pts

    def reset(self) -> None:
        self.prev = None

    def fit_image(self, image: np.ndarray, gt_box: np.ndarray, fallback_box: np.ndarray | None) -> dict[str, Any]:
        """Still image: dlib's own detector (detection with the best IoU with ``gt_box``,
        above 0.3); when none, the 300-W ``fallback_box`` as a ``dlib.rectangle``."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        dets = self.detect(gray)
        best = max(dets, key=lambda d: box_iou(d[0], gt_box), default=None)
        if best is not None and box_iou(best[0], gt_box) > 0.3:
            return {"landmarks": _pts_list(self.predict(gray, best[0])), "how": "detector", "n_detections": len(dets)}
        if fallback_box is not None:
            return {"landmarks": _pts_list(self.predict(gray, np.asarray(fallback_box, np.float64))), "how": "fallback-300w-box",
                    "n_detections": len(dets)}
        return {"landmarks": None, "how": "not-found", "n_detections": len(dets)}


# ---- MediaPipe -----------------------------------------------------------------------------
class MediaPipeRunner:
    """MediaPipe face mesh (legacy ``solutions.face_mesh``; runs offline from its package)."""

    def __init__(self, static: bool = False, max_faces: int = 1) -> None:
        import mediapipe as mp

        self.mp = mp
        self.static = static
        self.max_faces = max_faces
        self.mesh = self._new()

    def _new(self) -> Any:
        return self.mp.solutions.face_mesh.FaceMesh(static_image_mode=self.static, max_num_faces=self.max_faces,
                                                    refine_landmarks=False, min_detection_confidence=0.5,
                                                    min_tracking_confidence=0.5)

    def version(self) -> str:
        return str(self.mp.__version__)

    def reset(self) -> None:
        self.mesh.close()
        self.mesh = self._new()

    def close(self) -> None:
        self.mesh.close()

    def meshes(self, bgr: np.ndarray, st: dict[str, float] | None = None) -> list[np.ndarray]:
        """Face meshes ``(468, 2)`` image px found in a BGR frame."""
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        t1 = time.perf_counter()
        res = self.mesh.process(rgb)
        t2 = time.perf_counter()
        h, w = bgr.shape[:2]
        out = []
        for face in res.multi_face_landmarks or []:
            out.append(np.array([(p.x * w, p.y * h) for p in face.landmark], np.float64))
        if st is not None:
            st["convert"] = (t1 - t0) * 1e3
            st["landmarks"] = (t2 - t1) * 1e3
            st["post"] = (time.perf_counter() - t2) * 1e3
        return out

    def frame(self, frame: np.ndarray, st: dict[str, float]) -> np.ndarray | None:
        m = self.meshes(frame, st)
        if not m:
            return None
        t0 = time.perf_counter()
        pts = mp_to_68(m[0])
        st["post"] += (time.perf_counter() - t0) * 1e3
        return pts

    def fit_image(self, image: np.ndarray, gt_box: np.ndarray) -> dict[str, Any]:
        """Still image (static mode): the mesh whose 68-point box overlaps ``gt_box`` most."""
        bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        cands = [mp_to_68(m) for m in self.meshes(bgr)]
        best = max(cands, key=lambda p: box_iou(tight_box(p), gt_box), default=None)
        if best is None or box_iou(tight_box(best), gt_box) <= 0.3:
            return {"landmarks": None, "how": "not-found", "n_detections": len(cands)}
        return {"landmarks": _pts_list(best), "how": "detector", "n_detections": len(cands)}


# ---- tasks ---------------------------------------------------------------------------------
def make_runner(method: str, spec: dict[str, Any]) -> Any:
    """The runner object for ``method`` (imports dlib / mediapipe here)."""
    if method in ("dlib", "dlib-tracked"):
        return DlibRunner(spec.get("upsample", 0), spec.get("dlib_calibration"), spec.get("checks"))
    if method == "mediapipe":
        return MediaPipeRunner(static=spec.get("task") == "images", max_faces=1 if spec.get("task") == "video" else 5)
    raise ValueError(f"unknown peer method {method!r} (known: dlib, dlib-tracked, mediapipe)")


def run_video(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one peer over a video decoded to memory (after ``warmup`` frames on a throwaway
    state): per-frame wall ms per stage and total, CPU seconds, landmarks per frame."""
    method = spec["method"]
    runner = make_runner(method, spec)  # first: a missing package is reported before any work
    rss_loaded = vm_rss_mib()
    frames, decode_ms = decode_video(spec["video"], spec.get("max_frames"))
    step: Callable[[np.ndarray, dict[str, float]], np.ndarray | None]
    if method == "dlib":
        step = runner.frame_every
    elif method == "dlib-tracked":
        step = runner.frame_tracked
    else:
        step = runner.frame
    for f in frames[: int(spec.get("warmup", 10))]:
        step(f, {})
    runner.reset()
    total_ms: list[float] = []
    stages: dict[str, list[float]] = {}
    landmarks: list[list | None] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for f in frames:
        st: dict[str, float] = {}
        t0 = time.perf_counter()
        pts = step(f, st)
        total_ms.append((time.perf_counter() - t0) * 1e3)
        for k, v in st.items():
            stages.setdefault(k, []).append(v)
        landmarks.append(_pts_list(pts))
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"method": method, "video": spec["video"], "frames": len(frames), "decode_ms": decode_ms, "total_ms": total_ms,
            "stage_ms": stages, "write_ms": None, "cpu_s": cpu_s, "wall_s": wall_s, "landmarks": landmarks,
            "version": runner.version(), "vm_hwm_mib": vm_hwm_mib(), "rss_loaded_mib": rss_loaded,
            "frames_mib": frames_mib(frames)}


def run_images(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit each still image of ``spec["items"]`` (``image``, ``gt_box``, ``box_300w``)."""
    method = spec["method"]
    runner = make_runner(method, spec)
    out = []
    for item in spec["items"]:
        img = cv2.imread(item["image"], cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"{item['image']}: cannot read image")
        gt_box = np.asarray(item["gt_box"], np.float64)
        if method == "mediapipe":
            r = runner.fit_image(img, gt_box)
        else:
            r = runner.fit_image(img, gt_box, item.get("box_300w"))
        out.append({"image": item["image"], **r})
    return {"method": method, "results": out, "version": runner.version(), "vm_hwm_mib": vm_hwm_mib()}


def main(argv: list[str] | None = None) -> int:
    """``peers.py SPEC.json OUT.json``: run the spec's task, write the result JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print("usage: peers.py SPEC.json OUT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="peers: %(message)s")
    spec = json.loads(Path(argv[0]).read_text())
    task = spec.get("task")
    if task == "video":
        res = run_video(spec)
    elif task == "images":
        res = run_images(spec)
    else:
        print(f"{argv[0]}: unknown task {task!r} (video, images)", file=sys.stderr)
        return 2
    res["python"] = sys.executable
    res["numpy"] = np.__version__
    res["opencv"] = cv2.__version__
    Path(argv[1]).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
