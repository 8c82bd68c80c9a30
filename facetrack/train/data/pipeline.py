"""The training data pipeline: lazy decoding and augmentation in ``DataLoader`` workers.

Nothing of the training set is kept in memory: each sample decodes its picture from disk (or
its frame from a video; a JPEG at 1/2, 1/4 or 1/8 of its resolution when the face stays larger
than the training face size), cuts the face region (:func:`facetrack.train.data.datasets.cache_face`),
and augments it (:func:`facetrack.train.data.augment.augment`; with ``p_profile`` a share of the faces is
first turned further by a synthetic head turn, :mod:`facetrack.train.data.profile`), all inside the
worker processes.

Randomness: :class:`StepBatches` draws the faces of optimiser step ``t`` and one 63-bit seed per
sample from ``numpy.random.default_rng([seed, t])``; each sample's augmentation uses its own
seed. The batches therefore do not depend on the number of workers, a resumed run sees exactly
the batches the uninterrupted run would have seen (no sampler state to save), and with
distributed training each rank takes its slice of the same global batch. Each worker's global
generators (``random``, numpy's legacy one, torch) are seeded from ``(seed, epoch, worker)``
(:func:`seed_worker`; the epoch is the step the loader started at divided by the steps per
pass over the data), so nothing drawn from them is repeated across workers.

Background negatives avoid every face of their picture: the other labelled faces and, because
the video frames of the pseudo-labelled sets hold unlabelled faces, the faces the default
detector finds (detected once per picture and worker, only for pictures a negative is drawn from).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from typing import Any, Iterator

import cv2
import numpy as np
import torch

from facetrack.tracker.geometry import box_of, to_gray, to_input
from facetrack.train.data.augment import AugmentConfig, augment, mdm_init
from facetrack.train.data.datasets import CachedFace, FaceSample, cache_face, read_image
from facetrack.train.data.profile import Profiler

log = logging.getLogger(__name__)


def read_picture(sample: FaceSample) -> np.ndarray:
    """The decoded picture of ``sample`` (BGR or grey ``uint8``): its image file, or frame
    ``sample.frame`` (1-based) of its video. ``OSError`` naming the file when it cannot be read."""
    if sample.frame is None:
        return read_image(sample.image)
    import cv2

    cap = cv2.VideoCapture(str(sample.image))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, sample.frame - 1)
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise OSError(f"{sample.image}: cannot read frame {sample.frame}")
    return frame


_REDUCED = {2: "IMREAD_REDUCED_COLOR_2", 4: "IMREAD_REDUCED_COLOR_4", 8: "IMREAD_REDUCED_COLOR_8"}


def read_reduced(sample: FaceSample, face_px: float) -> tuple[np.ndarray, int]:
    """``(picture, k)``: the picture decoded at 1/k of its resolution, ``k`` in 1, 2, 4, 8 the
    largest that keeps the face at least ``face_px`` px (JPEG decodes at 1/k directly: a 2000-px
    photo whose face is 600 px decodes about 10 times faster at k = 4). Video frames: k = 1."""
    lm = sample.landmarks
    side = float(np.sqrt(max(float(np.prod(lm.max(0) - lm.min(0))), 1e-6)))
    k = 1
    while k < 8 and side / (2 * k) >= face_px:
        k *= 2
    if k == 1 or sample.frame is not None:
        return read_picture(sample), 1
    import cv2

    img = cv2.imread(str(sample.image), getattr(cv2, _REDUCED[k]))
    if img is None:
        raise OSError(f"{sample.image}: cannot read image (missing or not an image)")
    return img, k


def _reduce_points(p: np.ndarray, k: int) -> np.ndarray:
    """Image px -> px of the 1/k decode (pixel centres: ``(x + 0.5) / k - 0.5``)."""
    return ((np.asarray(p, np.float64) + 0.5) / k - 0.5).astype(np.float32)


def picture_key(sample: FaceSample) -> tuple[str, int | None]:
    return (str(sample.image), sample.frame)


def negatives_detector() -> Any:
    """The detector whose boxes background negatives avoid: the tracker's default (Haar), or
    the project's CNN detector where OpenCV has no Haar cascades (OpenCV 5, as on the lent GPU
    machines' image): training must not stop for the want of one detector."""
    from facetrack.tracker.detect import default_detector, make_detector

    try:
        return default_detector()
    except RuntimeError as e:
        log.warning("%s: background negatives avoid the faces of the cnn detector instead", e)
        return make_detector("cnn")


class TrainingFaces(torch.utils.data.Dataset):
    """Lazily decoded, augmented training samples. Index with ``(face index, sample seed)``.

    Returns ``(image (1, S, S) float32 [0, 1], gt (68, 2) float32 crop px, init (68, 2) float32,
    is_face bool, from_template bool)``; MDM starts negatives from the template and positives
    from :func:`mdm_init` (the template with probability ``p_template``).
    """

    def __init__(self, samples: list[FaceSample], size: int, cfg: AugmentConfig, face_px: float,
                 p_template: float = 0.5, detect_faces: bool = True) -> None:
        self.samples = samples
        self.size, self.cfg, self.face_px, self.p_template = size, cfg, float(face_px), float(p_template)
        self.detect_faces = detect_faces
        boxes: dict[tuple[str, int | None], list[np.ndarray]] = {}
        for s in samples:
            boxes.setdefault(picture_key(s), []).append(box_of(s.landmarks))
        self._labelled = {k: np.stack(v) for k, v in boxes.items()}
        self._detected: dict[tuple[str, int | None, int], np.ndarray] = {}
        self._detector: Any = None
        # synthetic head turns: a 3-D mean face from the training shapes themselves
        self.profiler = Profiler.from_shapes([s.landmarks for s in samples]) if cfg.p_profile > 0 else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict[str, Any]:
        # what goes to a worker process: the detector (an OpenCV object) is made again there
        return {**self.__dict__, "_detector": None}

    def _detections(self, key: tuple[str, int | None, int], image: np.ndarray) -> np.ndarray:
        if key not in self._detected:
            if self._detector is None:
                self._detector = negatives_detector()
            dets = self._detector.detect(to_gray(image))
            self._detected[key] = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
        return self._detected[key]

    def face(self, i: int, with_detections: bool = False) -> CachedFace:
        """Face ``i`` decoded from disk, its region cut at the training face size."""
        s = self.samples[i]
        key = picture_key(s)
        image, k = read_reduced(s, self.face_px)
        own = box_of(s.landmarks)
        others = [b for b in self._labelled[key] if not np.allclose(b, own)]
        if k > 1:  # the face and the other boxes in the px of the reduced decode
            others = [_reduce_points(b.reshape(2, 2), k).reshape(4) for b in others]
            s = replace(s, landmarks=_reduce_points(s.landmarks, k),
                        box=None if s.box is None else _reduce_points(s.box.reshape(2, 2), k).reshape(4))
            own = box_of(s.landmarks)
        if with_detections and self.detect_faces:
            # detector boxes that are not this face (a detection overlapping it is this face)
            from facetrack.tracker.geometry import box_iou

            others += [b for b in self._detections((*key, k), image) if box_iou(b, own) < 0.3]
        return cache_face(image, s, self.face_px, 2.0, np.array(others, np.float32).reshape(-1, 4))

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, bool]:
        i, seed = key
        rng = np.random.default_rng(seed)
        negative = bool(rng.random() < self.cfg.p_negative)
        background = negative and bool(rng.random() < 0.5)  # only background crops need the detector
        face = self.face(int(i), with_detections=background)
        if self.profiler is not None and not negative and rng.random() < self.cfg.p_profile:
            t = self.profiler.random_turn(face.image, face.landmarks, rng, self.cfg.profile_low, self.cfg.profile_high)
            face = replace(face, image=t.image, landmarks=t.landmarks, box=None)
        fc = augment(face, self.size, rng, self.cfg, negative=negative, background=background if negative else None)
        init, from_template = mdm_init(fc.landmarks, self.size, rng, p_template=self.p_template if fc.is_face else 1.0)
        return (to_input(fc.crop)[0], fc.landmarks.astype(np.float32), init.astype(np.float32), bool(fc.is_face), bool(from_template))


class StepBatches(torch.utils.data.Sampler):
    """Batches of ``(face index, sample seed)`` for steps ``start`` .. ``end - 1``: ``batch``
    faces per step drawn with probability proportional to ``weights`` from
    ``default_rng([seed, step])``; rank ``rank`` of ``world`` gets its slice of each batch."""

    def __init__(self, weights: np.ndarray, batch: int, seed: int, start: int, end: int, rank: int = 0, world: int = 1) -> None:
        if batch % world:
            raise ValueError(f"--batch {batch} is not divisible by the {world} processes")
        w = np.asarray(weights, np.float64)
        self.p = w / w.sum()
        self.batch, self.seed, self.start, self.end, self.rank, self.world = batch, seed, start, end, rank, world

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def step_batch(self, step: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, step])
        idx = rng.choice(len(self.p), size=self.batch, p=self.p)
        seeds = rng.integers(0, 2**63 - 1, size=self.batch)
        per = self.batch // self.world
        sl = slice(self.rank * per, (self.rank + 1) * per)
        return [(int(i), int(s)) for i, s in zip(idx[sl], seeds[sl])]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.end):
            yield self.step_batch(step)


@dataclass
class _WorkerSeed:
    seed: int
    epoch: int

    def __call__(self, worker: int) -> None:
        seed_worker(self.seed, self.epoch, worker)


def seed_worker(seed: int, epoch: int, worker: int) -> None:
    """Seed a worker's global generators from ``(seed, epoch, worker)``."""
    s = int(np.random.SeedSequence([seed, epoch, worker]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    torch.set_num_threads(1)  # workers decode and warp; the model's threads stay with the trainer
    cv2.setNumThreads(1)  # safe: workers start from a fresh forkserver process, not a fork of the trainer


def make_loader(dataset: TrainingFaces, sampler: StepBatches, workers: int, epoch: int = 0) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over ``sampler``'s batches with ``workers`` processes (0: in-process).

    Workers come from a ``forkserver`` (``spawn`` where there is none), never a plain fork of the
    trainer: a fork inherits OpenCV's and PyTorch's thread pools in whatever state they are, and
    a worker forked while one of their threads held a lock hangs for ever (seen in the tests)."""
    import multiprocessing

    context = None
    if workers:
        context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, multiprocessing_context=context,
        worker_init_fn=_WorkerSeed(sampler.seed, epoch) if workers else None,
        persistent_workers=False, prefetch_factor=4 if workers else None, pin_memory=torch.cuda.is_available())


__all__ = ["TrainingFaces", "StepBatches", "make_loader", "read_picture", "seed_worker"]
