"""A point distribution model of the 68-point face (mean shape and main modes, PCA), used to
keep MDM's start plausible when it starts from the previous frame's landmarks.

Why: MDM started from its own previous fit (``--track-init shape``, the 300VW protocol) feeds
its errors back into its next start. With the shipped weights the jaw and mouth points then
wander into shapes no face has (on the selfie, those fits' PCA residual reaches 6.1 % of the
face, against 1.6 % for the least face-like of the 2,952 training shapes) and the fit collapses
within 60-200 frames. Projecting the start onto the model's first
``modes`` modes (Cootes et al.'s shape constraint, as in ASM/CLM trackers) removes what no face
does and keeps what the expression and the head's turn do.

Shapes live in the template's frame (:func:`facetrack.tracker.geometry.template` at
:data:`FRAME`), aligned by the least-squares similarity (Umeyama); points in any other frame
(image or crop) are aligned onto the model first and mapped back after, so only their shape is
changed, never their position, size or roll.
The model file is made by ``python -m facetrack.train.loops.shape_model`` from training labels only.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.tracker.geometry import apply_affine, invert_affine, template, umeyama

#: the crop size whose template frame the model is stored in (any frame works; this one is readable)
FRAME = 100
DEFAULT_PATH = Path(__file__).with_name("data") / "shape_model.json"


class ShapeModel:
    """Mean ``(68, 2)`` and orthonormal ``modes`` ``(K, 136)`` (rows, largest variance first)
    in the template frame of a :data:`FRAME`-px crop; ``variance``: each mode's share of the
    training shapes' variance; ``record``: how the model was made."""

    def __init__(self, mean: np.ndarray, modes: np.ndarray, variance: np.ndarray, record: dict[str, Any] | None = None) -> None:
        self.mean = np.asarray(mean, np.float64).reshape(68, 2)
        self.modes = np.asarray(modes, np.float64).reshape(-1, 136)
        self.variance = np.asarray(variance, np.float64).reshape(-1)
        if len(self.variance) != len(self.modes):
            raise ValueError(f"{len(self.modes)} modes but {len(self.variance)} variances")
        self.record = dict(record or {})

    @classmethod
    def fit(cls, shapes: np.ndarray, keep: int = 40, record: dict[str, Any] | None = None) -> "ShapeModel":
        """PCA of ``shapes`` ``(N, 68, 2)`` (any frame: each is aligned onto the template first);
        keeps the first ``keep`` modes."""
        t = template(FRAME).astype(np.float64)
        aligned = np.stack([apply_affine(umeyama(s, t), s).astype(np.float64) for s in np.asarray(shapes, np.float64)])
        x = aligned.reshape(len(aligned), -1)
        mean = x.mean(0)
        _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
        share = sv**2 / max(float((sv**2).sum()), 1e-12)
        k = min(keep, len(vt))
        return cls(mean.reshape(68, 2), vt[:k], share[:k], record)

    def _in_modes(self, points: np.ndarray, modes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(m, v, w)``: the similarity aligning ``points`` onto the model, their deviation from
        the mean once aligned (136,) and that deviation's part in the first ``modes`` modes."""
        p = np.asarray(points, np.float64)
        k = max(0, min(int(modes), len(self.modes)))
        m = umeyama(p, self.mean)
        v = apply_affine(m, p).astype(np.float64).ravel() - self.mean.ravel()
        return m, v, self.modes[:k].T @ (self.modes[:k] @ v)

    def project(self, points: np.ndarray, modes: int) -> np.ndarray:
        """``points`` ``(68, 2)`` in any frame (image or crop px) projected onto the mean plus the
        first ``modes`` modes; float32 ``(68, 2)`` in the same frame. The similarity between the
        points and the model is kept: only the shape is constrained."""
        m, _, w = self._in_modes(points, modes)
        return apply_affine(invert_affine(m), (self.mean.ravel() + w).reshape(68, 2))  # the pose undone

    def residual(self, points: np.ndarray, modes: int) -> float:
        """RMS distance (per point, % of the :data:`FRAME`-px crop) between ``points`` (any
        frame) aligned onto the model and their projection on the first ``modes`` modes: how far
        the shape is from anything the model knows."""
        _, v, w = self._in_modes(points, modes)
        return float(np.sqrt(((v - w).reshape(68, 2) ** 2).sum(1).mean()) * 100.0 / FRAME)

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "frame": FRAME, "mean": self.mean.round(5).tolist(), "modes": self.modes.round(7).tolist(),
                "variance": self.variance.round(7).tolist(), "record": self.record}

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_json()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ShapeModel":
        """Raises ``ValueError`` naming the file when it is not a shape model of this format."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            if d.get("format") != 1 or d.get("frame") != FRAME:
                raise ValueError(f"format {d.get('format')}, frame {d.get('frame')}")
            return cls(np.array(d["mean"]), np.array(d["modes"]), np.array(d["variance"]), d.get("record"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a facetrack shape model ({e})") from None


@lru_cache(maxsize=1)
def default_shape_model() -> ShapeModel | None:
    """The shipped model (``facetrack/tracker/data/shape_model.json``), or None without one."""
    return ShapeModel.load(DEFAULT_PATH) if DEFAULT_PATH.is_file() else None
