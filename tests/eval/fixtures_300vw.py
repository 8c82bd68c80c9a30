"""Helpers that build real 300VW-format clips (``<id>/vid.avi`` + ``annot/NNNNNN.pts``) in a
temporary folder from the real faces in ``../shared/data``, and a fake predictor with known
errors for the evaluation tests."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from facetrack.tracker.geometry import apply_affine, compose_affine, similarity_matrix
from facetrack.io.landmarks import read_pts, write_pts
from facetrack.eval.metrics import normaliser

FPS = 25.0
HELEN_FACE = "images68/helen_test/30542618_1"


def write_clip(root: Path, video_id: str, frames: Sequence[np.ndarray], annotations: Mapping[int, np.ndarray],
               fps: float = FPS) -> Path:
    """Write ``root/<video_id>/vid.avi`` (MJPG) from BGR ``frames`` (frame 1 first) and
    ``annot/NNNNNN.pts`` for each 1-based frame number in ``annotations``."""
    d = root / video_id
    (d / "annot").mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(d / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "MJPG writer failed to open"
    for f in frames:
        writer.write(np.ascontiguousarray(f))
    writer.release()
    for n, pts in annotations.items():
        write_pts(d / "annot" / f"{n:06d}.pts", pts)
    return d


def real_401_clip(root: Path, data_dir: Path) -> dict[int, np.ndarray]:
    """Video 401 with its two real annotated frames at their true numbers 731 and 732:
    frames 1..730 are black padding without annotations. Returns frame -> ground truth."""
    src = data_dir / "300vw_samples" / "401"
    real = {n: cv2.imread(str(src / "imgs" / f"{n:06d}.jpg")) for n in (731, 732)}
    blank = np.zeros_like(real[731])
    frames = [blank] * 730 + [real[731], real[732]]
    gts = {n: read_pts(src / "annot" / f"{n:06d}.pts") for n in (731, 732)}
    write_clip(root, "401", frames, gts)
    return gts


def moving_face_clip(root: Path, data_dir: Path, video_id: str, n_frames: int, moving: bool = True,
                     size: tuple[int, int] = (480, 360), interocular: float = 70.0) -> dict[int, np.ndarray]:
    """A clip of a real annotated face (helen_test) moved by known similarity transforms
    (rotation up to 8 degrees, scale 0.9-1.1, translation up to 30 px; ``moving=False``: the
    same pose every frame), its annotation moved the same way. Returns frame -> ground truth
    as written to the ``.pts`` files (read back, so exactly what the evaluator reads)."""
    img = cv2.imread(str(data_dir / f"{HELEN_FACE}.jpg"))
    gt0 = read_pts(data_dir / f"{HELEN_FACE}.pts")
    w, h = size
    s0 = interocular / float(normaliser(gt0))
    c0 = gt0.mean(0)
    base = np.array([[s0, 0, w / 2 - s0 * c0[0]], [0, s0, h / 2 - s0 * c0[1]]])
    frames, gts = [], {}
    for k in range(n_frames):
        t = k / max(1, n_frames - 1) if moving else 0.0
        ang = np.deg2rad(8.0) * np.sin(2 * np.pi * t)
        sc = 1.0 + 0.1 * np.sin(np.pi * t)
        tx, ty = 30.0 * np.sin(2 * np.pi * t), 15.0 * (1 - np.cos(2 * np.pi * t))
        centre = np.array([[1, 0, -w / 2], [0, 1, -h / 2]], np.float64)
        back = np.array([[1, 0, w / 2 + tx], [0, 1, h / 2 + ty]], np.float64)
        m = compose_affine(back, compose_affine(similarity_matrix(sc, ang, 0, 0), compose_affine(centre, base)))
        frames.append(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR))
        gts[k + 1] = apply_affine(m, gt0)
    write_clip(root, video_id, frames, gts)
    vdir = root / video_id / "annot"
    return {n: read_pts(vdir / f"{n:06d}.pts") for n in gts}


class OffsetPredictor:
    """Fake predictor: the ground truth shifted right by ``shift[n]`` outer-eye distances on
    frame ``n`` (so its NME is exactly ``shift[n]`` over any subset), ``None`` where
    ``shift[n]`` is ``None``. Sees every frame and counts them to know the frame number."""

    every_frame = True
    uses_ground_truth = True

    def __init__(self, shifts: Mapping[str, Mapping[int, float | None]] | None = None,
                 keep: Sequence[int] = ()) -> None:
        self.shifts = shifts or {}
        self.keep = set(keep)
        self.video = ""
        self.n = 0
        self.calls: list[tuple[str, int]] = []
        self.with_gt: list[tuple[str, int]] = []
        self.kept: dict[tuple[str, int], np.ndarray] = {}

    def start_video(self, video_id: str) -> None:
        self.video, self.n = video_id, 0

    def predict(self, frame_bgr: np.ndarray, timestamp: float, gt: np.ndarray | None) -> np.ndarray | None:
        self.n += 1
        self.calls.append((self.video, self.n))
        if gt is not None:
            self.with_gt.append((self.video, self.n))
        if self.n in self.keep:
            self.kept[(self.video, self.n)] = frame_bgr.copy()
        assert abs(timestamp - (self.n - 1) / FPS) < 1e-6
        s = self.shifts.get(self.video, {}).get(self.n, 0.0)
        if gt is None or s is None:
            return None
        return (gt + np.array([s * float(normaliser(gt)), 0.0], np.float32)).astype(np.float32)
