"""The iBUG 68-point markup (300-W / 300VW): the one place that spells out its facts.

Landmarks everywhere in facetrack are ``float32`` arrays of shape ``(68, 2)`` holding
``(x, y)`` in 0-based pixel coordinates, origin at the top-left corner.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

N_POINTS = 68

#: Outer eye corners, used for the inter-ocular normalisation of 300-W / 300VW.
LEFT_EYE_OUTER = 36
RIGHT_EYE_OUTER = 45
OUTER_EYE_CORNERS = (LEFT_EYE_OUTER, RIGHT_EYE_OUTER)

JAW = tuple(range(0, 17))
RIGHT_BROW = tuple(range(17, 22))
LEFT_BROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_BASE = tuple(range(31, 36))
EYE_A = tuple(range(36, 42))  # subject's right eye, on the image's left
EYE_B = tuple(range(42, 48))
OUTER_MOUTH = tuple(range(48, 60))
INNER_MOUTH = tuple(range(60, 68))

#: 51 points: the 68 without the jaw line.
SUBSET_51 = tuple(range(17, 68))
#: 49 points: the 51 without the inner mouth corners 60 and 64 (300VW's 49-point protocol).
SUBSET_49 = tuple(i for i in SUBSET_51 if i not in (60, 64))
SUBSETS: dict[int, tuple[int, ...]] = {68: tuple(range(68)), 51: SUBSET_51, 49: SUBSET_49}


def _mirror_permutation() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer mouth
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner mouth
    perm = np.arange(N_POINTS)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


#: ``mirrored[i] = flip(original[MIRROR_PERMUTATION[i]])``; an involution.
MIRROR_PERMUTATION: np.ndarray = _mirror_permutation()
MIRROR_PERMUTATION.setflags(write=False)


def _edges() -> tuple[tuple[int, int], ...]:
    def chain(idx: tuple[int, ...], closed: bool = False) -> list[tuple[int, int]]:
        e = list(zip(idx[:-1], idx[1:]))
        if closed:
            e.append((idx[-1], idx[0]))
        return e

    edges: list[tuple[int, int]] = []
    edges += chain(JAW) + chain(RIGHT_BROW) + chain(LEFT_BROW) + chain(NOSE_BRIDGE)
    edges += chain((30,) + NOSE_BASE + (30,))
    edges += chain(EYE_A, closed=True) + chain(EYE_B, closed=True)
    edges += chain(OUTER_MOUTH, closed=True) + chain(INNER_MOUTH, closed=True)
    return tuple(edges)


#: Line segments of the standard 68-point drawing (contours of jaw, brows, nose, eyes, lips).
DRAW_EDGES: tuple[tuple[int, int], ...] = _edges()


def mirror_landmarks(landmarks: np.ndarray, width: float) -> np.ndarray:
    """Landmarks of the horizontally flipped image of width ``width`` pixels.

    ``landmarks``: ``(..., 68, 2)`` (x, y) 0-based pixels. A pixel centre at ``x`` lands at
    ``width - 1 - x`` and point ``i`` takes the role of ``MIRROR_PERMUTATION[i]``.
    """
    pts = np.asarray(landmarks)
    out = pts[..., MIRROR_PERMUTATION, :].copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out.astype(pts.dtype, copy=False)


@lru_cache(maxsize=1)
def mean_shape() -> np.ndarray:
    """The 68-point mean face shape (MDM reference code's ``meanFaceShape``), ``(68, 2)`` float32.

    Centred near the origin, (x, y), image orientation (y down), inter-ocular distance about 92.
    Returned read-only; copy before changing it.
    """
    ref = resources.files("facetrack.tracker") / "data" / "mean_shape.npy"
    with resources.as_file(ref) as path:
        shape = np.load(path).astype(np.float32)
    shape.setflags(write=False)
    return shape


def pupils(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres ``(..., 2, 2)``: the mean of each eye's six points."""
    pts = np.asarray(landmarks)
    return np.stack([pts[..., EYE_A, :].mean(-2), pts[..., EYE_B, :].mean(-2)], axis=-2)
