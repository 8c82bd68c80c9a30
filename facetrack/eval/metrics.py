"""Landmark error metrics of the 300-W / 300VW literature, as small pure numpy functions.

Shapes are ``(..., 68, 2)`` (x, y) in any common unit; errors are unitless fractions
(0.05 = 5 % of the normalising distance).
"""
from __future__ import annotations

from typing import Literal, Mapping

import numpy as np

from facetrack.tracker.markup import OUTER_EYE_CORNERS, SUBSETS, pupils

Norm = Literal["outer", "pupil", "diag"]

#: The literature's threshold for AUC and failure rate on 300-W / 300VW.
THRESHOLD = 0.08
#: A gross failure: NME68 over this is a fit on the wrong place or scale, not an imprecise one
#: (issue 30: a fifth-size face on the mouth, a frontal shape on a profile).
GROSS = 0.20


def normaliser(gt: np.ndarray, norm: Norm = "outer") -> np.ndarray:
    """Normalising distance per shape ``(...)`` from the 68-point ground truth.

    ``outer``: outer eye corners (36, 45); ``pupil``: eye centres; ``diag``: diagonal of the
    ground truth's tight box.
    """
    g = np.asarray(gt, dtype=np.float64)
    if norm == "outer":
        a, b = g[..., OUTER_EYE_CORNERS[0], :], g[..., OUTER_EYE_CORNERS[1], :]
    elif norm == "pupil":
        p = pupils(g)
        a, b = p[..., 0, :], p[..., 1, :]
    elif norm == "diag":
        a, b = g.min(-2), g.max(-2)
    else:
        raise ValueError(f"unknown normalisation {norm!r}")
    return np.linalg.norm(a - b, axis=-1)


def point_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance per point ``(..., N)``."""
    return np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)


def nme(pred: np.ndarray, gt: np.ndarray, points: int = 68, norm: Norm = "outer") -> np.ndarray:
    """Normalised mean error per shape ``(...)``.

    ``pred``, ``gt``: 68-point shapes ``(..., 68, 2)``. ``points`` (68, 51 or 49) selects
    the subset averaged over; the normaliser always comes from the 68-point ground truth
    (the outer eye corners are points 19 and 28 of the 49-point subset: the same points).
    """
    if points not in SUBSETS:
        raise ValueError(f"points must be one of {sorted(SUBSETS)}, got {points!r}")
    idx = list(SUBSETS[points])
    e = point_errors(np.asarray(pred)[..., idx, :], np.asarray(gt)[..., idx, :]).mean(-1)
    d = normaliser(gt, norm)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, e / np.where(d > 0, d, 1.0), np.nan)


def ced(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Cumulative error distribution: share of errors ``<= t`` for each threshold."""
    e = np.sort(np.asarray(errors, np.float64).ravel())
    if e.size == 0:
        return np.zeros(len(np.asarray(thresholds)))
    return np.searchsorted(e, np.asarray(thresholds, np.float64), side="right") / e.size


def auc(errors: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Area under the CED from 0 to ``threshold``, divided by ``threshold`` (in [0, 1]).

    Exact for the empirical step CED: the mean of ``max(0, 1 - e / threshold)``.
    NaN errors (failed frames) count as failures.
    """
    e = np.asarray(errors, np.float64).ravel()
    if e.size == 0:
        return float("nan")
    e = np.where(np.isfinite(e), e, np.inf)
    return float(np.mean(np.clip(1.0 - e / threshold, 0.0, 1.0)))


def failure_rate(errors: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Share of errors above ``threshold`` (NaN counts as a failure)."""
    e = np.asarray(errors, np.float64).ravel()
    if e.size == 0:
        return float("nan")
    return float(np.mean(~(e <= threshold)))


def confident_failures(errors: np.ndarray, confidence: np.ndarray, accept: float, gross: float = GROSS) -> np.ndarray:
    """Which fits are *confident failures*: reported with a confidence at or above ``accept``
    (the tracker's threshold) while their error is over ``gross``. ``errors``, ``confidence``:
    one value per fit (NaN error: nothing reported, never a confident failure; NaN confidence:
    not reported). Returns a bool array of their shape."""
    e = np.asarray(errors, np.float64)
    c = np.asarray(confidence, np.float64)
    if e.shape != c.shape:
        raise ValueError(f"confident_failures needs one confidence per error, got {e.shape} and {c.shape}")
    with np.errstate(invalid="ignore"):
        return np.isfinite(e) & (e > gross) & (c >= accept)


def gross_failures(errors: np.ndarray, confidence: np.ndarray | None = None, accept: float = 0.5,
                   threshold: float = THRESHOLD, gross: float = GROSS) -> dict[str, float]:
    """The gross-failure figures beside a mean: ``failure`` (share over ``threshold``, 8 %),
    ``failure_gross`` (share over ``gross``, 20 %; NaN = missed counts in both) and, given each
    fit's ``confidence``, ``confident_failures`` (how many are reported at or above ``accept``
    with an error over ``gross``: :func:`confident_failures`) and their share of the fits."""
    e = np.asarray(errors, np.float64).ravel()
    out: dict[str, float] = {"failure": failure_rate(e, threshold), "failure_gross": failure_rate(e, gross)}
    if confidence is not None:
        n = int(confident_failures(e, np.asarray(confidence, np.float64).ravel(), accept, gross).sum())
        out["confident_failures"] = n
        out["confident_failure_rate"] = n / e.size if e.size else float("nan")
    return out


def summarize(errors: np.ndarray, threshold: float = THRESHOLD, confidence: np.ndarray | None = None,
              accept: float = 0.5) -> dict[str, float]:
    """Mean, median, AUC, failure rate at ``threshold`` and at :data:`GROSS` of one pool of
    per-frame errors, ``gross_reported`` (finite errors over :data:`GROSS`: fits that were
    reported, so confident failures where only accepted fits are reported); with ``confidence``
    (one per error) also the confident failures (:func:`gross_failures`)."""
    e = np.asarray(errors, np.float64).ravel()
    finite = e[np.isfinite(e)]
    out = {
        "frames": int(e.size),
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "median": float(np.median(finite)) if finite.size else float("nan"),
        "auc": auc(e, threshold),
        # reported fits over GROSS: where only accepted faces are reported (the tracker), each is a confident failure
        "gross_reported": int(np.sum(finite > GROSS)),
    }
    out.update(gross_failures(e, confidence, accept, threshold))
    return out


def aggregate(per_video: Mapping[str, np.ndarray], threshold: float = THRESHOLD) -> dict[str, float]:
    """Category figures from per-video per-frame errors, the three ways the literature uses.

    ``mean_pooled``: mean over all frames pooled; ``mean_of_videos``: mean of per-video
    means; ``median_pooled``: median over pooled frames. AUC and the failure rates (at
    ``threshold`` and at :data:`GROSS`) are over the pooled frames.
    """
    arrays = [np.asarray(v, np.float64).ravel() for v in per_video.values()]
    pooled = np.concatenate(arrays) if arrays else np.zeros(0)
    s = summarize(pooled, threshold)
    means = [a[np.isfinite(a)].mean() for a in arrays if np.isfinite(a).any()]
    return {
        "videos": len(arrays),
        "frames": s["frames"],
        "mean_pooled": s["mean"],
        "mean_of_videos": float(np.mean(means)) if means else float("nan"),
        "median_pooled": s["median"],
        "auc": s["auc"],
        "failure": s["failure"],
        "failure_gross": s["failure_gross"],
        "gross_reported": s["gross_reported"],
    }


def jitter(pred: np.ndarray, gt: np.ndarray | None = None, norm: np.ndarray | None = None) -> float:
    """Mean frame-to-frame displacement of predictions, normalised per frame (unitless).

    ``pred``: ``(T, 68, 2)`` consecutive frames, (x, y) pixels. Without ``gt`` every
    displacement counts: ``|p[t] - p[t-1]|`` per point. With ``gt`` (same shape) the ground
    truth's own motion is taken out as a vector, ``|(p[t] - p[t-1]) - (g[t] - g[t-1])|`` per
    point, so true motion is not counted as jitter while lag, wobble and motion in the wrong
    direction are (the result is never negative; 0 when the prediction moves exactly as the
    truth). ``norm``: per-frame normaliser ``(T,)`` in pixels; default the outer-eye distance
    of ``gt`` if given, else of ``pred``; each step uses the mean of its two frames'.
    Frame pairs with a non-finite value (a lost frame) are left out; NaN when none is left.
    """
    p = np.asarray(pred, np.float64)
    if len(p) < 2:
        return float("nan")
    d = normaliser(gt if gt is not None else p)
    if norm is not None:
        d = np.asarray(norm, np.float64)
    motion = np.diff(p, axis=0)
    if gt is not None:
        motion = motion - np.diff(np.asarray(gt, np.float64), axis=0)
    step = np.linalg.norm(motion, axis=-1).mean(-1)
    scale = (d[1:] + d[:-1]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        per_step = step / scale
    per_step = per_step[np.isfinite(per_step)]
    return float(per_step.mean()) if per_step.size else float("nan")


def flicker(pred: np.ndarray, gt: np.ndarray) -> float:
    """Normalised mean flicker: how much the *error* changes from one frame to the next.

    ``pred``, ``gt``: ``(T, 68, 2)`` consecutive frames. With ``e[t] = pred[t] - gt[t]`` (per point,
    a vector), each step contributes the root mean square over points of ``|e[t] - e[t-1]|``
    over the outer-eye distance (the mean of its two frames'); the result is the mean over steps.
    A constant error (a fit that is off but steady) has no flicker; so has an exact fit. It is
    :func:`jitter` with ground truth, but squared per point before averaging, so a few points
    that jump weigh more than all points creeping, as the eye sees flicker.
    Frame pairs with a non-finite value (a lost frame) are left out; NaN when none is left.
    """
    p = np.asarray(pred, np.float64)
    g = np.asarray(gt, np.float64)
    if p.shape != g.shape:
        raise ValueError(f"flicker needs pred and gt of one shape, got {p.shape} and {g.shape}")
    if len(p) < 2:
        return float("nan")
    change = np.diff(p - g, axis=0)
    rms = np.sqrt((change**2).sum(-1).mean(-1))
    d = normaliser(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_step = rms / ((d[1:] + d[:-1]) / 2)
    per_step = per_step[np.isfinite(per_step)]
    return float(per_step.mean()) if per_step.size else float("nan")
