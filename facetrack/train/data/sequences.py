"""Training and test sequences for tracking: what a tracker sees from frame to frame.

Two kinds, one representation (:class:`Sequence`): frame ``t`` is the cached face image
``faces[t]`` placed in a virtual video frame by the similarity ``matrices[t]`` (cached-image
px -> frame px), with a smooth photometric change. Nothing renders whole frames: a tracker's
crop of frame ``t`` is rendered straight from the cached image (:meth:`Sequence.crop`), which is
the same picture at a fraction of the cost.

- **Still faces moved** (:func:`still_sequence`): one face, a smooth random similarity motion
  (:func:`smooth_motion`) and a smooth photometric drift. The face never changes shape, so the
  error a tracker accumulates is its own.
- **Video faces** (:func:`video_sequences`, :func:`video_sequence`): consecutive kept frames of one
  face track of a ``pseudo_v2`` video (manifest ``source`` ends with `` frame N``; ordered by N).
  Each ``pseudo_v2`` face is its own crop, so the head's real rigid motion between frames is
  lost; each frame is placed by the similarity that aligns its landmarks on the first frame's
  (taking the rigid part out) and then moved by the same smooth random motion. What is left
  between frames is the real non-rigid change: expression, mouth, out-of-plane turns.

Torch-free (the moved-face benchmark uses it too). All randomness from the generator passed in.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from facetrack.tracker.geometry import apply_affine, compose_affine, face_size, similarity_matrix, umeyama, warp_crop
from facetrack.tracker.markup import MIRROR_PERMUTATION

from facetrack.train.data.datasets import CachedFace, FaceSample

_FRAME = re.compile(r" frame (\d+)$")


@dataclass(frozen=True)
class MotionConfig:
    """Smooth random similarity motion, per frame at 30 fps: each velocity (shift in face sizes,
    rotation in degrees, log-scale) follows a damped random walk (``damping`` of the previous
    velocity kept, the rest drawn uniformly in ``[-max, max]``), and the pose is pulled back
    towards the start by ``pull`` per frame so that long sequences stay in view."""

    shift: float = 0.03
    rotation_deg: float = 1.2
    scale: float = 0.012
    damping: float = 0.85
    pull: float = 0.02


@dataclass(frozen=True)
class PhotoConfig:
    """Photometric drift over a sequence: gain ``1 ± gain`` and offset ``± offset`` (fraction of
    255) move linearly from a random start to a random end; Gaussian noise up to ``noise``
    grey levels, redrawn every frame (sensor noise)."""

    gain: float = 0.25
    offset: float = 0.12
    noise: float = 4.0


def smooth_motion(n: int, rng: np.random.Generator, centre: np.ndarray, size: float,
                  cfg: MotionConfig = MotionConfig()) -> list[np.ndarray]:
    """``n`` similarity matrices ``(2, 3)`` (frame 0: identity) moving a face of ``size`` px
    about ``centre`` (frame px) smoothly; see :class:`MotionConfig`."""
    vel = np.zeros(4)  # tx, ty (face sizes), angle (deg), log-scale
    pose = np.zeros(4)
    lim = np.array([cfg.shift, cfg.shift, cfg.rotation_deg, cfg.scale])
    c = np.asarray(centre, np.float64)
    out = []
    for k in range(n):
        if k:
            vel = cfg.damping * vel + (1 - cfg.damping) * rng.uniform(-lim, lim) / (1 - cfg.damping) ** 0.5
            pose = (1 - cfg.pull) * pose + vel
        m = similarity_matrix(float(np.exp(pose[3])), float(np.deg2rad(pose[2])), 0.0, 0.0)
        m[:, 2] = c - m[:, :2] @ c + pose[:2] * size
        out.append(m)
    return out


@dataclass
class Sequence:
    """Frames of one face; see the module docstring.

    ``faces[t]``: the cached image of frame ``t``; ``matrices[t]``: cached-image px -> frame px;
    ``mirror``: the frames are mirrored (landmarks reindexed); ``gain``/``offset``: per-frame
    photometric change; ``noise``: noise sigma (grey levels); ``seed``: the frame noise's seed.
    """

    faces: list[CachedFace]
    matrices: list[np.ndarray]
    gain: np.ndarray
    offset: np.ndarray
    noise: float = 0.0
    mirror: bool = False
    seed: int = 0
    name: str = ""
    _gt: list[np.ndarray] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.faces)

    def landmarks(self, t: int) -> np.ndarray:
        """Ground truth of frame ``t``, ``(68, 2)`` float32 frame px."""
        if not self._gt:
            for f, m in zip(self.faces, self.matrices):
                g = apply_affine(m, f.landmarks)
                self._gt.append(g[MIRROR_PERMUTATION] if self.mirror else g)
        return self._gt[t]

    def crop(self, t: int, matrix: np.ndarray, size: int) -> np.ndarray:
        """The ``size`` x ``size`` grey ``uint8`` crop of frame ``t`` that the frame -> crop
        similarity ``matrix`` defines (as :func:`facetrack.tracker.geometry.warp_crop` of the frame)."""
        img = self.faces[t].image
        if img.ndim == 3:
            import cv2

            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        crop = warp_crop(img, compose_affine(matrix, self.matrices[t]), size).astype(np.float32)
        f = crop * self.gain[t] + self.offset[t] * 255.0
        if self.noise > 0:
            f = f + np.random.default_rng((self.seed, t)).normal(0.0, self.noise, f.shape)
        return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def _photometric(n: int, rng: np.random.Generator, cfg: PhotoConfig) -> tuple[np.ndarray, np.ndarray, float]:
    g0, g1 = rng.uniform(1 - cfg.gain, 1 + cfg.gain, 2)
    o0, o1 = rng.uniform(-cfg.offset, cfg.offset, 2)
    w = np.linspace(0.0, 1.0, n)
    return (1 - w) * g0 + w * g1, (1 - w) * o0 + w * o1, float(rng.uniform(0, cfg.noise))


def _mirror(face: CachedFace) -> np.ndarray:
    w = face.image.shape[1]
    return np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]])


def still_sequence(face: CachedFace, n: int, rng: np.random.Generator, motion: MotionConfig = MotionConfig(),
                   photo: PhotoConfig = PhotoConfig(), p_mirror: float = 0.5) -> Sequence:
    """``n`` frames of one still face under a smooth random similarity motion."""
    mirror = bool(rng.random() < p_mirror)
    base = _mirror(face) if mirror else np.eye(2, 3)
    lm = apply_affine(base, face.landmarks)
    mats = [compose_affine(m, base) for m in smooth_motion(n, rng, lm.mean(0), face_size(lm), motion)]
    gain, offset, noise = _photometric(n, rng, photo)
    return Sequence([face] * n, mats, gain, offset, noise, mirror, int(rng.integers(1 << 31)), str(face.sample.image))


def video_tracks(samples: list[FaceSample], sources: dict[str, str], tracks: dict[str, str] | None = None,
                 min_frames: int = 2) -> list[list[int]]:
    """Indices of ``samples`` grouped into face tracks of one video, ordered by frame number.

    ``sources``: image path -> the manifest's ``source`` (`` frame N`` at the end for video
    frames; photos are left out); ``tracks``: image path -> the manifest's ``track`` (default:
    the group, i.e. one face per video). Tracks with fewer than ``min_frames`` frames are dropped.
    """
    by: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for i, s in enumerate(samples):
        src = sources.get(str(s.image), "")
        m = _FRAME.search(src)
        if not m:
            continue
        video = src[: m.start()]
        key = (s.group, video, (tracks or {}).get(str(s.image), s.group))
        by.setdefault(key, []).append((int(m.group(1)), i))
    out = []
    for key in sorted(by):
        items = sorted(by[key])
        if len(items) >= min_frames:
            out.append([i for _, i in items])
    return out


def read_manifest_columns(data_dir: str, columns: tuple[str, ...] = ("source", "track")) -> dict[str, dict[str, str]]:
    """``column -> {image path (as load_pseudo_v2 gives it): value}`` from ``pseudo_v2/manifest.csv``."""
    import csv
    from pathlib import Path

    root = Path(data_dir) / "pseudo_v2"
    out: dict[str, dict[str, str]] = {c: {} for c in columns}
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for c in columns:
                out[c][str(root / row["image"])] = row.get(c, "")
    return out


def video_sequence(faces: list[CachedFace], rng: np.random.Generator, motion: MotionConfig = MotionConfig(),
                   photo: PhotoConfig = PhotoConfig(), p_mirror: float = 0.5) -> Sequence:
    """Consecutive frames of one video face track (cached, in frame order) as a :class:`Sequence`:
    each frame aligned on the first by a similarity of its landmarks (rigid motion out, the
    non-rigid change kept), then the smooth random motion and the photometric drift."""
    n = len(faces)
    mirror = bool(rng.random() < p_mirror)
    ref = faces[0].landmarks.astype(np.float64)
    aligned = []
    for f in faces:
        a = umeyama(f.landmarks, ref)
        if mirror:
            a = compose_affine(_mirror(faces[0]), a)
        aligned.append(a)
    lm0 = apply_affine(aligned[0], faces[0].landmarks)
    mats = [compose_affine(m, a) for m, a in zip(smooth_motion(n, rng, lm0.mean(0), face_size(lm0), motion), aligned)]
    gain, offset, noise = _photometric(n, rng, photo)
    return Sequence(list(faces), mats, gain, offset, noise, mirror, int(rng.integers(1 << 31)), str(faces[0].sample.group))


class SequenceSource:
    """Draws training sequences: a share ``p_video`` from the video face tracks (a random run of
    ``n`` consecutive kept frames; shorter tracks are used whole and padded by repeating the last
    frame), the rest from still faces."""

    def __init__(self, stills: list[CachedFace], video_faces: list[CachedFace], tracks: list[list[int]],
                 p_video: float = 0.5, still_weights: np.ndarray | None = None,
                 motion: MotionConfig = MotionConfig(), photo: PhotoConfig = PhotoConfig()) -> None:
        self.stills, self.video_faces, self.tracks = stills, video_faces, [t for t in tracks if len(t) >= 2]
        self.p_video = p_video if self.tracks else 0.0
        self.weights = still_weights
        self.motion, self.photo = motion, photo

    def draw(self, n: int, rng: np.random.Generator) -> Sequence:
        """One sequence of ``n`` frames."""
        if rng.random() < self.p_video:
            tr = self.tracks[int(rng.integers(len(self.tracks)))]
            s = int(rng.integers(0, max(1, len(tr) - n + 1)))
            idx = tr[s : s + n]
            idx = idx + [idx[-1]] * (n - len(idx))
            return video_sequence([self.video_faces[i] for i in idx], rng, self.motion, self.photo)
        i = int(rng.choice(len(self.stills), p=self.weights))
        return still_sequence(self.stills[i], n, rng, self.motion, self.photo)
