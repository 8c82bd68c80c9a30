"""The tracker's views: the main models and, optionally, the turned-face models, each a
:class:`View` that fits new faces from boxes, refits shapes and tracks the faces it accepted.

A face belongs to the view that accepted it (as OpenFace's multi-view models); a tracked face its
view loses gets one try from the other view before it is lost (the hand-over, in
:mod:`facetrack.tracker.tracker`).
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from facetrack.tracker.geometry import apply_affine
from facetrack.tracker.landmarker import Fit
from facetrack.tracker.models import FitChain

log = logging.getLogger(__name__)

#: ``call(fn, gray, items, timings, n) -> n fits``: a landmarker call that cannot fail (see :func:`safe_fits`)
Call = Callable[[Any, np.ndarray, list, dict, int], list[Fit]]


def invalid_fits(n: int) -> list[Fit]:
    """``n`` fits that every check rejects."""
    return [Fit(np.zeros((68, 2), np.float32), 0.0, False) for _ in range(n)]


def safe_fits(fn: Any, gray: np.ndarray, items: list, timings: dict[str, float], n: int, frame: int) -> list[Fit]:
    """``fn(gray, items, timings)``, which cannot take the tracker down: a failure or a wrong
    number of fits gives ``n`` invalid fits and a warning naming frame ``frame``."""
    try:
        fits = list(fn(gray, items, timings))
        if len(fits) == n:
            return fits
        log.warning("landmarker returned %d fits for %d faces", len(fits), n)
    except Exception as e:  # noqa: BLE001 - one bad frame must not end a video
        log.warning("landmarker failed on frame %d: %s: %s", frame, type(e).__name__, e)
    return invalid_fits(n)


@dataclass(eq=False)
class View:
    """One set of models behind the tracker.

    ``chain``: fits new faces from their boxes (first stage from the box, each next from the
    previous shape); its last stage is the tracking model. ``refit_init``: how the tracking model
    starts when it refits a face in the crop aligned on it (the refit check, re-acquisition, the
    hand-over): the main view from the template, the turned view from the face's shape itself
    (the template is a frontal face, too far from a face turned by 60 degrees for MDM's few steps:
    on the Hamilton clip's audience shot the turned chain fitted the man at confidence 0.90-0.94
    and its refit from the template fell to 0.08-0.19). ``takes_turns``: tracked faces are fitted
    by the chain's stages in turn (the main view; see :meth:`track`); otherwise by the tracking
    model alone, refitted from the face's last fit. ``track_init``, ``shape_model`` and
    ``shape_modes``: how the tracking model starts on a tracked face when the stages take turns
    (:class:`~facetrack.tracker.config.TrackerConfig`).
    """

    name: str
    chain: FitChain
    refit_init: str
    takes_turns: bool
    track_init: str = "template"
    shape_model: Any = None
    shape_modes: int = 0

    @property
    def track_model(self) -> Any:
        """The chain's last stage: it refits new faces, tracks and looks for lost ones."""
        return self.chain.track

    def refit(self, gray: np.ndarray, shapes: list[np.ndarray], timings: dict[str, float], call: Call) -> list[Fit]:
        """The tracking model fits each shape in the crop aligned on it, started as ``refit_init``."""
        fit = functools.partial(self.chain.track.fit_shapes, init=self.refit_init)
        return call(fit, gray, shapes, timings, len(shapes))

    def track(self, gray: np.ndarray, tracks: Sequence[Any], motions: Sequence[np.ndarray | None],
              timings: dict[str, float], call: Call) -> list[Fit]:
        """Fit these tracked faces (``.landmarks``, ``.confidence``, ``.turn``, ``.fits``) from
        their previous landmarks: one batched call per model.

        Without turns, the tracking model refits each face's last fit. With one model, that
        model. With a chain (``aan+mdm``) the models take turns, one per face and frame, and each
        fit is averaged with the other models' last fits of the face carried to this frame by its
        motion: the models err differently, so the mean errs less than either, for the CPU of one
        model per frame (moved faces 1-7: 3.40 % NME, against 3.63 % for MDM alone, 3.38 % for
        both models on every frame). The tracking model (the last) has the confidence head
        trained on its own tracking (drifted fits are negatives); on the other models' turns a
        face keeps the lower of its last such confidence and the model's own."""
        if not self.takes_turns:
            return self.refit(gray, [t.landmarks for t in tracks], timings, call)
        stages = self.chain.stages
        n = len(stages)
        fits: list[Fit | None] = [None] * len(tracks)
        for k in range(n):
            idx = [i for i, t in enumerate(tracks) if t.turn % n == k]
            if not idx:
                continue
            if k == n - 1:
                fit = functools.partial(stages[k].fit_shapes, init=self.track_init)
                if self.shape_model is not None:
                    # MDM from its previous fit, kept to shapes faces make: the crop stays aligned on the
                    # fit itself (aligning it on the projection tracked held-out sequences worse: 4.12
                    # against 3.88 % NME at best), only the start is projected
                    starts = [self.shape_model.project(tracks[i].landmarks, self.shape_modes) for i in idx]
                    fit = functools.partial(fit, starts=starts)
            else:
                fit = stages[k].fit_shapes
            for i, f in zip(idx, call(fit, gray, [tracks[i].landmarks for i in idx], timings, len(idx))):
                fits[i] = f
        if n == 1:
            return fits
        t0 = time.perf_counter()
        out = []
        for t, f, m in zip(tracks, fits, motions):
            k = t.turn % n
            t.turn += 1
            # the other models' fits move with the face; without a motion they cannot be carried
            t.fits = {j: apply_affine(m, p) for j, p in t.fits.items() if j != k} if m is not None else {}
            if not f.valid or not np.isfinite(f.landmarks).all() or not np.isfinite(f.confidence):
                t.fits = {}
                out.append(f)  # as it is: the checks lose the face
                continue
            pts = np.mean([f.landmarks, *t.fits.values()], axis=0).astype(np.float32)
            t.fits[k] = f.landmarks
            conf = f.confidence if k == n - 1 else min(f.confidence, t.confidence)
            out.append(Fit(pts, conf, True))
        timings["post"] += (time.perf_counter() - t0) * 1000
        return out
