"""New faces: how a detection becomes an accepted face (:func:`fit_new_faces`), and how a face
lost a moment ago is looked for around its last place (:func:`reacquire_hypotheses`).

A detection is fitted by the main view's chain, then refitted by its tracking model in the crop
aligned on that fit: a face (and not a collar, a hand or a lamp) keeps its landmarks there
(:func:`refit_check`). A chain's rejected face gets a second chance from the tracking model
alone, and a face the main view rejects a last chance from the turned view.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from facetrack.tracker.checks import FaceChecks
from facetrack.tracker.geometry import box_of, eye_scale, face_size
from facetrack.tracker.landmarker import Fit
from facetrack.tracker.views import Call, View

#: the scale check of a new face: refit from its box grown and shrunk by these factors (empty: no check)
SCALE_CHECK: tuple[float, ...] = (0.7, 1.5)
#: the turned view's: the grown box only (its chain from a box 0.7x a turned face's loses it:
#: Hamilton --max-faces 4, audience frames with 3 faces 58 -> 0 of 61 with both factors, 58 with this)
SCALE_CHECK_TURNED: tuple[float, ...] = (1.5,)
#: how far those refits may differ from the fit and still agree: size ratio, centre shift (face sizes)
SCALE_AGREE = (1.25, 0.25)


def scaled_box(points: np.ndarray, factor: float) -> np.ndarray:
    """The tight box of ``points`` ``(68, 2)`` scaled by ``factor`` about its centre, ``(4,)`` float32."""
    b = box_of(np.asarray(points, np.float64)).astype(np.float64)
    c, half = (b[:2] + b[2:]) / 2, factor * (b[2:] - b[:2]) / 2
    return np.concatenate([c - half, c + half]).astype(np.float32)


def scales_agree(fit: np.ndarray, others: Sequence[np.ndarray], max_ratio: float = SCALE_AGREE[0],
                 max_shift: float = SCALE_AGREE[1]) -> bool:
    """Whether the fits ``others`` (each ``(68, 2)`` image px; refits from other boxes) find the
    face of ``fit`` at its scale and place: face sizes within ``max_ratio`` of each other and
    centres within ``max_shift`` of its face size. A fit on a fifth of a face (its mouth) refitted
    from a box 1.5x its size finds a larger face, and a frontal shape spread over a turned head
    moves: issue 30's confident failures."""
    size = face_size(np.asarray(fit, np.float64))
    centre = np.asarray(fit, np.float64).mean(0)
    for o in others:
        o = np.asarray(o, np.float64)
        if not np.isfinite(o).all():
            return False
        r = face_size(o) / max(size, 1e-6)
        if not (1.0 / max_ratio <= r <= max_ratio) or np.linalg.norm(o.mean(0) - centre) > max_shift * size:
            return False
    return True


def scale_check(view: View, gray: np.ndarray, fits: list[Fit | None], timings: dict[str, float], call: Call,
                checks: FaceChecks) -> list[Fit | None]:
    """The fits whose face ``view``'s chain finds again from the fit's box grown and shrunk
    (:data:`SCALE_CHECK`, or :data:`SCALE_CHECK_TURNED` for a view that refits from shapes;
    :func:`scales_agree`); the others become ``None``. Only fits that would
    be accepted are checked (one batched chain call per factor for all of them)."""
    todo = [i for i, f in enumerate(fits) if f is not None and checks.accept(f, gray.shape[:2], None)]
    factors = SCALE_CHECK if view.refit_init == "template" else SCALE_CHECK_TURNED
    if not todo or not factors or not getattr(checks.config, "scale_check", True):
        return fits
    boxes = [scaled_box(fits[i].landmarks, k) for k in factors for i in todo]
    got = call(view.chain.fit_boxes, gray, boxes, timings, len(boxes))
    out = list(fits)
    for j, i in enumerate(todo):
        others = [got[k * len(todo) + j] for k in range(len(factors))]
        if not all(o.valid for o in others) or not scales_agree(fits[i].landmarks, [o.landmarks for o in others]):
            out[i] = None
    return out


#: re-acquisition hypotheses around a lost face: (scale, in-plane angle in degrees)
REACQUIRE = ((1.0, 0.0), (0.85, 0.0), (1.2, 0.0), (1.0, 20.0), (1.0, -20.0))


def _staged(call: Call, view: View, gray: np.ndarray, boxes: list[np.ndarray], timings: dict[str, float]) -> list[tuple]:
    # a failed call gives one plain invalid fit per face, not each stage's
    return [s if isinstance(s, tuple) else (s,) for s in call(view.chain.fit_boxes_staged, gray, boxes, timings, len(boxes))]


def refit_check(view: View, checks: FaceChecks, gray: np.ndarray, fits: list[Fit], earlier: Sequence[Sequence[Fit]],
                timings: dict[str, float], call: Call) -> list[Fit | None]:
    """The shape check of new faces: each fit is refitted by ``view``'s tracking model in the
    crop aligned on it. A fit whose refit moves by more than ``max_refit_shift`` eye distances
    (pose-fair: :func:`~facetrack.tracker.geometry.eye_scale`), or fails the sanity checks
    against it (scale change included), gives ``None``; the others give the mean of every fit
    made of the face (``earlier``: the fits of the chain's stages before the last, e.g. aan's
    before MDM's; then the fit and its refit), with the refit's confidence (which decides
    acceptance). The mean is free (all the fits are made anyway) and beats each alone: stage-6
    mdm-rt on the 298 held-out validation faces from the detector's box, mirror-averaged, 2.92 %
    (refit) -> 2.83 % NME (fit and refit); with ``aan+mdm`` (aan stage 5) 2.63 % -> 2.50 %."""
    good = [i for i, f in enumerate(fits) if f.valid and np.isfinite(f.landmarks).all()]
    out: list[Fit | None] = [None] * len(fits)
    if not good:
        return out
    refits = view.refit(gray, [fits[i].landmarks for i in good], timings, call)
    for i, r in zip(good, refits):
        a, b = fits[i].landmarks, r.landmarks
        shift = float(np.linalg.norm(b - a, axis=1).mean()) / max(eye_scale(a), 1e-6)
        if np.isfinite(shift) and shift <= checks.config.max_refit_shift and checks.sane(r, gray.shape[:2], a):
            prior = [e.landmarks for e in earlier[i] if e.valid and np.isfinite(e.landmarks).all()]
            out[i] = Fit(np.mean([*prior, a, b], axis=0).astype(np.float32), r.confidence, r.valid)
    return out


def _rejected(checks: FaceChecks, gray: np.ndarray, fits: list[Fit | None]) -> list[int]:
    return [i for i, f in enumerate(fits) if f is None or not checks.accept(f, gray.shape[:2], None)]


def fit_new_faces(views: Sequence[View], checks: FaceChecks, gray: np.ndarray, boxes: list[np.ndarray],
                  timings: dict[str, float], call: Call) -> list[tuple[Fit | None, View]]:
    """Each box's fit and the view that made it (``None``: no view's fit passed the refit check;
    a fit returned may still fail :meth:`FaceChecks.accept`, which the caller applies).

    1. The main view's chain from the box, then :func:`refit_check`.
    2. With a chain of several models, a rejected face's second chance: the tracking model alone
       from the box, then the same check. On a turned face the chain's first model can start MDM
       where its refit does not hold while MDM from the box does: on the Hamilton clip's frontal
       shot, lost at a head turn, ``aan+mdm`` tracks 92 of its 101 frames with this second chance
       and 89 without (``mdm``: 95).
    3. With a turned view, a face still rejected gets its last chance from the turned chain
       (its fits from the same box, its refit check).

    Every fit that would be accepted also passes :func:`scale_check`: its view's chain finds the
    same face from the fit's box grown and shrunk (:data:`SCALE_CHECK`; the turned view's from the
    grown box only, :data:`SCALE_CHECK_TURNED`), or the fit is rejected."""
    main = views[0]
    staged = _staged(call, main, gray, boxes, timings)
    fits = refit_check(main, checks, gray, [s[-1] for s in staged], [s[:-1] for s in staged], timings, call)
    fits = scale_check(main, gray, fits, timings, call, checks)
    if len(main.chain.stages) > 1:
        failed = _rejected(checks, gray, fits)
        if failed:
            own = call(main.track_model.fit_boxes, gray, [boxes[i] for i in failed], timings, len(failed))
            own = refit_check(main, checks, gray, own, [()] * len(failed), timings, call)
            for i, f in zip(failed, scale_check(main, gray, own, timings, call, checks)):
                if f is not None:
                    fits[i] = f
    out: list[tuple[Fit | None, View]] = [(f, main) for f in fits]
    for view in views[1:]:
        failed = _rejected(checks, gray, [f for f, _ in out])
        if not failed:
            break
        staged = _staged(call, view, gray, [boxes[i] for i in failed], timings)
        refits = refit_check(view, checks, gray, [s[-1] for s in staged], [s[:-1] for s in staged], timings, call)
        refits = scale_check(view, gray, refits, timings, call, checks)
        for i, f in zip(failed, refits):
            if f is not None and checks.accept(f, gray.shape[:2], None):
                out[i] = (f, view)
    return out


def larger_of_same(boxes: Sequence[np.ndarray], same_face: Callable[[np.ndarray, np.ndarray], bool]) -> list[int]:
    """Which of one search's accepted faces (landmark boxes, in the order they take slots) to keep
    when some are one face (``same_face``, e.g. a fit on the mouth inside the whole face's): the
    larger, in the place of the first. Issue 30: a face filling a portrait was reported as a fifth
    of its size on its mouth, found first, while the whole face was dropped as the same face.
    Returns the indices kept, in slot order; faces that clash with none keep their order."""
    def area(b: np.ndarray) -> float:
        return float(max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0))

    kept: list[int] = []
    for i, b in enumerate(boxes):
        clash = [k for k in kept if same_face(b, boxes[k])]
        if not clash:
            kept.append(i)
        elif all(area(b) > area(boxes[k]) for k in clash):
            kept[kept.index(clash[0])] = i
            kept = [k for k in kept if k not in clash[1:]]
    return kept


def reacquire_hypotheses(pts: np.ndarray) -> list[np.ndarray]:
    """Where a face lost at landmarks ``pts`` (68, 2) may be now: ``pts`` scaled and turned in
    the image plane about their centre (:data:`REACQUIRE`)."""
    centre = pts.mean(0)
    out = []
    for scale, deg in REACQUIRE:
        a = np.deg2rad(deg)
        m = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        out.append(((pts - centre) @ m.T + centre).astype(np.float32))
    return out
