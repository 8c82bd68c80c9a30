"""Hard cases made from labelled faces: the starts and pictures that give gross failures.

The shipped models fit a face well from a box near its own; what goes wrong for users is the
rest (issue 30): a detector box a third of the face's size or twice it, a box shifted off the
face, a face turned past what the main models learned, a face that fills the frame or is cut by
its edge. This module makes those cases from any labelled face (image and 68 landmarks), for
the confidence head's hard negatives (:mod:`facetrack.train.loops.confidence_head`) and for the
stress set (:mod:`facetrack.bench.stress`). Numpy and OpenCV only; every random choice is made by
the caller's generator.

Boxes are *landmark boxes* (``(x0, y0, x1, y1)`` image px, an estimate of the landmarks' tight
box, as :meth:`facetrack.tracker.landmarker.Landmarker.fit_boxes` takes them).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetrack.tracker.geometry import box_of

#: start-box kinds: (low, high) of the box's size as a multiple of the face's, shift as a
#: fraction of the face's size (low, high), in a random direction
START_KINDS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "near": ((0.9, 1.1), (0.0, 0.05)),
    "small": ((0.3, 0.6), (0.0, 0.3)),
    "large": ((1.5, 2.0), (0.0, 0.3)),
    "shifted": ((0.8, 1.25), (0.15, 0.3)),
}


def start_box(landmarks: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A start box of ``kind`` (:data:`START_KINDS`) for the face of ``landmarks`` ``(68, 2)``:
    its tight box scaled about its centre and shifted, ``(4,)`` float64 image px. A small box
    lands anywhere inside the face (the detector's false find on a mouth or an eye)."""
    (s0, s1), (d0, d1) = START_KINDS[kind]
    b = box_of(np.asarray(landmarks, np.float64)).astype(np.float64)
    c = (b[:2] + b[2:]) / 2
    side = b[2:] - b[:2]
    s = rng.uniform(s0, s1)
    a = rng.uniform(0, 2 * np.pi)
    c = c + rng.uniform(d0, d1) * side * np.array([np.cos(a), np.sin(a)])
    half = s * side / 2
    return np.concatenate([c - half, c + half])


@dataclass(frozen=True)
class Picture:
    """A made picture: ``image`` ``uint8`` (grey or BGR), its face's ``landmarks`` ``(68, 2)``
    float32 image px (points may lie outside a cut picture), and what was done (``kind``)."""

    image: np.ndarray
    landmarks: np.ndarray
    kind: str


def enlarged(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, fill: tuple[float, float] = (0.6, 0.95),
             megapixels: tuple[float, float] = (1.0, 3.0)) -> Picture:
    """The face scaled up until its landmarks' box fills ``fill`` of the frame's short side,
    in a frame of ``megapixels`` (aspect 4:3 or 3:2, landscape or portrait), the face placed at
    random where it fits; what lies outside the source picture is its edge replicated."""
    pts = np.asarray(landmarks, np.float64)
    b = box_of(pts).astype(np.float64)
    side = float(max(b[2] - b[0], b[3] - b[1]))
    mp = rng.uniform(*megapixels) * 1e6
    aspect = float(rng.choice([4 / 3, 3 / 2]))
    long_ = np.sqrt(mp * aspect)
    w, h = (long_, long_ / aspect) if rng.random() < 0.5 else (long_ / aspect, long_)
    w, h = int(round(w)), int(round(h))
    k = rng.uniform(*fill) * min(w, h) / side
    face = (b[2:] - b[:2]) * k
    room = np.maximum(np.array([w, h]) - face, 0.0)
    x0, y0 = rng.uniform(0, room[0] + 1e-9), rng.uniform(0, room[1] + 1e-9)
    m = np.array([[k, 0, x0 - k * b[0]], [0, k, y0 - k * b[1]]])
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Picture(out, (pts * k + m[:, 2]).astype(np.float32), "enlarged")


def cut_by_edge(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, share: tuple[float, float] = (0.15, 0.4)) -> Picture:
    """The picture cropped so that one edge cuts ``share`` of the face's landmark box off
    (left, right, top or bottom at random); the landmarks keep the points now outside."""
    pts = np.asarray(landmarks, np.float64)
    h, w = image.shape[:2]
    b = box_of(pts).astype(np.float64)
    f = rng.uniform(*share)
    x0, y0, x1, y1 = 0, 0, w, h
    side = int(rng.integers(4))
    if side == 0:
        x0 = int(np.clip(b[0] + f * (b[2] - b[0]), 0, w - 2))
    elif side == 1:
        x1 = int(np.clip(b[2] - f * (b[2] - b[0]), x0 + 2, w))
    elif side == 2:
        y0 = int(np.clip(b[1] + f * (b[3] - b[1]), 0, h - 2))
    else:
        y1 = int(np.clip(b[3] - f * (b[3] - b[1]), y0 + 2, h))
    out = np.ascontiguousarray(image[y0:y1, x0:x1])
    return Picture(out, (pts - [x0, y0]).astype(np.float32), "cut")


def visible_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The landmarks' tight box clipped to a picture of ``shape`` (what a detector can see of
    a face cut by the edge)."""
    b = box_of(np.asarray(landmarks, np.float64)).astype(np.float64)
    h, w = shape[:2]
    return np.array([max(b[0], 0), max(b[1], 0), min(b[2], w - 1), min(b[3], h - 1)], np.float64)


__all__ = ["START_KINDS", "Picture", "cut_by_edge", "enlarged", "start_box", "visible_box"]
