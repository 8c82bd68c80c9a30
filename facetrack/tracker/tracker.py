"""The video tracker: detect faces, fit them, follow them frame to frame, notice when they are
lost or the shot cuts, and re-detect.

Per frame:

1. **Cut check** (cheap): the normalised correlation of 32x32 grey thumbnails of this frame
   and the previous one; below ``cut_threshold`` every track is dropped (landmarks are never
   dragged across a cut) and the detector runs.
2. **Tracking**: every tracked face is cropped around its previous (unsmoothed) landmarks and
   refitted in one batched call (``fit_shapes``; MDM starts from the template placed in that
   crop, or from the previous shape itself with ``track_init="shape"``).
   A track is lost when the model's confidence is under ``confidence_threshold`` or a sanity
   check fails: fewer than ``min_inside`` of the points inside the frame, a face smaller than
   ``min_face_px``, or a size change over ``max_scale_change`` between consecutive frames.
3. **Detection**: on a cut, when a track was lost, and every ``detect_every`` frames while
   fewer than ``max_faces`` faces are tracked. Detections overlapping a tracked face
   (IoU of landmark-equivalent boxes over ``iou_threshold``) are ignored; the rest are fitted
   by the model choice's :class:`facetrack.tracker.models.FitChain` (``mdm``: MDM from the
   calibrated box; ``aan``: AAN; ``aan+mdm``: AAN from the box, then MDM from AAN's shape) and
   accepted only if the fit passes the same checks.
4. Optional One Euro smoothing of the reported landmarks (tracking itself uses raw fits).

Face ids are slots ``0 .. max_faces-1``; a new face takes the lowest free id, so with
``max_faces=1`` every face is id 0, as in OpenFace.
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import cv2
import numpy as np

from facetrack.tracker.geometry import box_iou, box_of, to_gray
from facetrack.tracker.landmarker import Fit
from facetrack.tracker.models import FitChain, open_landmarkers, parse_model
from facetrack.tracker.smoothing import OneEuroFilter, face_size

log = logging.getLogger(__name__)

STAGES = ("detect", "crop", "infer", "post")


class LandmarkerLike(Protocol):
    """What the tracker needs of a landmarker (:class:`facetrack.tracker.landmarker.Landmarker`)."""

    kind: str

    def fit_boxes(self, gray: np.ndarray, boxes: Sequence[np.ndarray], timings: Any = None) -> list[Fit]: ...

    def fit_shapes(self, gray: np.ndarray, shapes: Sequence[np.ndarray], timings: Any = None) -> list[Fit]: ...
    # optional keyword ``init="shape"|"template"`` (see :attr:`TrackerConfig.track_init`)


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker settings.

    ``model``: ``"mdm"`` (alias of ``"mdm-rt"``), ``"aan"``, ``"aan+mdm"`` or a model file path.
    ``backend``/``threads``: passed to the landmarkers' runtime.
    ``detect_every``: frames between searches for new faces while fewer than ``max_faces``
    are tracked (1: every such frame); a lost track or a cut always searches at once.
    ``cut_threshold``: thumbnail correlation (in [-1, 1]) below which a frame starts a new shot.
    ``smooth_*``: One Euro parameters (min_cutoff, d_cutoff Hz; beta per face size per second).
    ``track_init``: how MDM starts on a tracked face. Both crop around the previous landmarks
    (similarity-aligned); ``"template"`` starts MDM from the template in that crop,
    ``"shape"`` from the previous landmarks themselves (MDM's 300VW protocol). With the shipped
    mdm-rt, ``"shape"`` drifts (mean NME 0.105 vs 0.065 over 20 moved frames of the 8 300-W
    common test faces), hence the default.
    """

    model: str = "mdm"
    backend: str = "auto"
    threads: int | None = None
    max_faces: int = 1
    smooth: bool = False
    smooth_min_cutoff: float = 1.0
    smooth_beta: float = 10.0
    smooth_d_cutoff: float = 1.0
    confidence_threshold: float = 0.5
    detect_every: int = 3
    cut_threshold: float = 0.5
    max_scale_change: float = 1.35
    min_inside: float = 0.6
    min_face_px: float = 12.0
    iou_threshold: float = 0.3
    default_fps: float = 30.0
    track_init: str = "template"

    def __post_init__(self) -> None:
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold}")
        if self.track_init not in ("template", "shape"):
            raise ValueError(f"track_init must be 'template' or 'shape', got {self.track_init!r}")
        if self.max_scale_change <= 1.0:
            raise ValueError(f"max_scale_change must be > 1, got {self.max_scale_change}")


@dataclass(frozen=True)
class FaceResult:
    """One face in one frame.

    ``landmarks``: ``(68, 2)`` float32 image px, finite (for ``state == "lost"``: the last
    landmarks before the loss). ``confidence`` in [0, 1] (0 when a sanity check failed).
    ``box``: tight box ``(x0, y0, x1, y1)`` float32 of ``landmarks``.
    ``state``: ``"detected"`` (new this frame), ``"tracking"`` or ``"lost"`` (lost this frame).
    """

    face_id: int
    landmarks: np.ndarray
    confidence: float
    success: bool
    box: np.ndarray
    state: str


@dataclass(frozen=True)
class FrameResult:
    """One processed frame. ``index``: 0-based count of frames given to this tracker since the
    last reset; ``timestamp``: seconds; ``timings``: stage (``detect``, ``crop``, ``infer``,
    ``post``, ``total``) -> milliseconds; ``cut``: a shot cut was detected before this frame."""

    index: int
    timestamp: float
    faces: tuple[FaceResult, ...]
    timings: dict[str, float]
    detector_ran: bool
    cut: bool

    @property
    def success(self) -> bool:
        """True when at least one face was fitted in this frame."""
        return any(f.success for f in self.faces)


@dataclass
class _Track:
    face_id: int
    landmarks: np.ndarray  # raw last fit, image px
    confidence: float
    filter: OneEuroFilter | None = None
    age: int = 0


class CutDetector:
    """Shot-cut test: normalised correlation of 32x32 area-averaged grey thumbnails of
    consecutive frames. A flat (uniform) frame correlates 1 with a flat frame of similar
    brightness and 0 with anything else."""

    SIZE = 32

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        self.last_score: float = 1.0
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame."""
        self._prev: tuple[np.ndarray, float, float] | None = None

    def __call__(self, gray: np.ndarray) -> bool:
        """True when ``gray`` (``uint8`` ``(H, W)``) starts a new shot."""
        # a strided subsample first: the area filter over a whole HD frame costs more than the rest of the check
        step = max(1, min(gray.shape[:2]) // (4 * self.SIZE))
        t = cv2.resize(gray[::step, ::step], (self.SIZE, self.SIZE), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
        mean = float(t.mean())
        v = t - mean
        norm = float(np.linalg.norm(v))
        prev, self._prev = self._prev, (v, norm, mean)
        if prev is None:
            self.last_score = 1.0
            return False
        pv, pn, pm = prev
        flat, pflat = norm < 1e-3 * self.SIZE, pn < 1e-3 * self.SIZE
        if flat and pflat:
            score = 1.0 if abs(mean - pm) < 10.0 else 0.0
        elif flat or pflat:
            score = 0.0
        else:
            score = float(v @ pv / (norm * pn))
        self.last_score = score
        return score < self.threshold


class Tracker:
    """Multi-face landmark tracker (see the module docstring for the per-frame steps).

    ``landmarkers``: optional mapping from the keys the model choice needs (``"mdm"``,
    ``"aan"``, or the model path) to landmarkers; missing ones are loaded from
    :func:`facetrack.tracker.models.resolve_model`. ``detector``: an object with ``detect(gray) ->
    list[Detection]`` and ``calibration`` (default: ``facetrack.tracker.detect.default_detector()``).
    """

    def __init__(self, config: TrackerConfig | None = None, landmarkers: Mapping[str, LandmarkerLike] | None = None,
                 detector: Any = None) -> None:
        self.config = config or TrackerConfig()
        choice = parse_model(self.config.model)
        lms, self._owned = open_landmarkers(choice, self.config.backend, self.config.threads, landmarkers)
        #: new faces are fitted by the model choice's chain; its last stage tracks them
        self.chain = FitChain([lms[k] for k in choice.stages])
        self.init_chain: list[LandmarkerLike] = list(self.chain.stages)
        self.track_model: LandmarkerLike = self.chain.track
        self._warned_init = False
        self._track_fit_cache: tuple[Any, Any, Any] | None = None
        if detector is None:
            from facetrack.tracker.detect import default_detector

            detector = default_detector()
        self.detector = detector
        self.cuts = CutDetector(self.config.cut_threshold)
        self.reset()

    def reset(self) -> None:
        """Forget every face and the previous frame (the next frame searches for faces)."""
        self._tracks: dict[int, _Track] = {}
        self._index = 0
        self._since_search = self.config.detect_every  # the first frame searches
        self.cuts.reset()

    def close(self) -> None:
        """Close the landmarkers this tracker opened itself."""
        for lm in self._owned:
            lm.close()
        self._owned.clear()

    # --- checks ----------------------------------------------------------------------------
    def _sane(self, fit: Fit, hw: tuple[int, int], prev: np.ndarray | None) -> bool:
        c = self.config
        pts = fit.landmarks
        if not fit.valid or not np.isfinite(pts).all() or not np.isfinite(fit.confidence):
            return False
        h, w = hw
        inside = ((pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)).mean()
        if inside < c.min_inside:
            return False
        size = face_size(pts)
        if size < c.min_face_px:
            return False
        if prev is not None:
            ratio = size / face_size(prev)
            if not (1.0 / c.max_scale_change <= ratio <= c.max_scale_change):
                return False
        return True

    def _accept(self, fit: Fit, hw: tuple[int, int], prev: np.ndarray | None) -> bool:
        return fit.confidence >= self.config.confidence_threshold and self._sane(fit, hw, prev)

    # --- per frame -------------------------------------------------------------------------
    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        """Track one frame (grey, BGR or BGRA; ``uint8``, ``uint16`` or float; any size).

        ``timestamp``: seconds (default: ``index / default_fps``). Never raises for an image
        array; frames that are not images give a result with every face lost.
        """
        t_start = time.perf_counter()
        c = self.config
        timings = {k: 0.0 for k in STAGES}
        index = self._index
        self._index += 1
        ts = float(timestamp) if timestamp is not None and math.isfinite(timestamp) else index / c.default_fps
        self._since_search += 1
        lost: dict[int, FaceResult] = {}
        out: dict[int, FaceResult] = {}

        try:
            gray = to_gray(frame)
        except (ValueError, TypeError, cv2.error) as e:
            log.warning("frame %d is not an image (%s); all faces lost", index, e)
            gray = None
        cut = False if gray is None else self.cuts(gray)
        if gray is None or cut:
            for t in self._tracks.values():
                lost[t.face_id] = self._lost(t)
            self._tracks.clear()
        elif self._tracks:
            tracks = list(self._tracks.values())
            fits = self._call(self._track_fit(), gray, [t.landmarks for t in tracks], timings, len(tracks))
            t0 = time.perf_counter()
            for t, f in zip(tracks, fits):
                sane = self._sane(f, gray.shape[:2], t.landmarks)
                if sane and f.confidence >= c.confidence_threshold:
                    t.landmarks, t.confidence = f.landmarks, f.confidence
                    t.age += 1
                    out[t.face_id] = self._report(t, ts, "tracking")
                else:
                    lost[t.face_id] = self._lost(t, f.confidence if sane else 0.0)
                    del self._tracks[t.face_id]
            timings["post"] += (time.perf_counter() - t0) * 1000

        detector_ran = False
        if gray is not None and (cut or lost or (len(self._tracks) < c.max_faces and self._since_search >= c.detect_every)):
            detector_ran = True
            self._since_search = 0
            for face in self._search(gray, ts, timings):
                out[face.face_id] = face
                lost.pop(face.face_id, None)
        faces = tuple(sorted([*out.values(), *lost.values()], key=lambda f: f.face_id))
        timings["total"] = (time.perf_counter() - t_start) * 1000
        return FrameResult(index, ts, faces, timings, detector_ran, cut)

    def _track_fit(self) -> Any:
        """``track_model.fit_shapes`` with the configured ``init`` when it takes one (bound once
        per tracking model: the signature look-up is too slow for every frame)."""
        cached = self._track_fit_cache
        if cached is not None and cached[0] is self.track_model and cached[1] == self.config.track_init:
            return cached[2]
        fn = self._bind_track_fit()
        self._track_fit_cache = (self.track_model, self.config.track_init, fn)
        return fn

    def _bind_track_fit(self) -> Any:
        fn = self.track_model.fit_shapes
        if self.config.track_init == "shape":
            return fn
        try:
            takes_init = "init" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_init = False
        if takes_init:
            return functools.partial(fn, init=self.config.track_init)
        if not self._warned_init:
            log.warning("%r has no 'init' option; tracking starts from the previous shape", self.track_model)
            self._warned_init = True
        return fn

    def _call(self, fn: Any, gray: np.ndarray, items: list, timings: dict[str, float], n: int) -> list[Fit]:
        """A landmarker call that cannot take the tracker down: failures become invalid fits."""
        try:
            fits = list(fn(gray, items, timings))
            if len(fits) == n:
                return fits
            log.warning("landmarker returned %d fits for %d faces", len(fits), n)
        except Exception as e:  # noqa: BLE001 - one bad frame must not end a video
            log.warning("landmarker failed on frame %d: %s: %s", self._index - 1, type(e).__name__, e)
        return [Fit(np.zeros((68, 2), np.float32), 0.0, False) for _ in range(n)]

    def _search(self, gray: np.ndarray, ts: float, timings: dict[str, float]) -> list[FaceResult]:
        c = self.config
        free = [i for i in range(c.max_faces) if i not in self._tracks]
        if not free:
            return []
        t0 = time.perf_counter()
        try:
            dets = list(self.detector.detect(gray))
        except Exception as e:  # noqa: BLE001 - a detector failure on one frame is not fatal
            log.warning("detector failed on frame %d: %s: %s", self._index - 1, type(e).__name__, e)
            dets = []
        calib = getattr(self.detector, "calibration", None)
        tracked = [box_of(t.landmarks) for t in self._tracks.values()]
        boxes = []
        for d in sorted(dets, key=lambda d: -float(d.score)):
            b = np.asarray(calib(d.box) if calib is not None else d.box, np.float32)
            if b.shape != (4,) or not np.isfinite(b).all() or not (b[2] > b[0] and b[3] > b[1]):
                continue
            if any(box_iou(b, tb) > c.iou_threshold for tb in tracked):
                continue
            boxes.append(b)
        boxes = boxes[: len(free) + 2]  # a few spares in case the best ones fail the checks
        timings["detect"] += (time.perf_counter() - t0) * 1000
        if not boxes:
            return []
        fits = self._call(self.chain.fit_boxes, gray, boxes, timings, len(boxes))
        t0 = time.perf_counter()
        new: list[FaceResult] = []
        accepted = [box_of(t.landmarks) for t in self._tracks.values()]
        for f in fits:
            if not free:
                break
            if not self._accept(f, gray.shape[:2], None):
                continue
            fb = box_of(f.landmarks)
            if any(box_iou(fb, a) > c.iou_threshold for a in accepted):
                continue
            accepted.append(fb)
            t = _Track(free.pop(0), f.landmarks, f.confidence)
            if c.smooth:
                t.filter = OneEuroFilter(c.smooth_min_cutoff, c.smooth_beta, c.smooth_d_cutoff, 1.0 / c.default_fps)
            self._tracks[t.face_id] = t
            new.append(self._report(t, ts, "detected"))
        timings["post"] += (time.perf_counter() - t0) * 1000
        return new

    @staticmethod
    def _report(t: _Track, ts: float, state: str) -> FaceResult:
        pts = t.filter(t.landmarks, ts) if t.filter is not None else t.landmarks
        pts = np.array(pts, np.float32)
        return FaceResult(t.face_id, pts, float(t.confidence), True, box_of(pts), state)

    @staticmethod
    def _lost(t: _Track, confidence: float = 0.0) -> FaceResult:
        """The lost face's last landmarks; ``confidence``: the failed fit's (0 if not sane)."""
        pts = np.array(t.landmarks, np.float32)
        return FaceResult(t.face_id, pts, float(confidence), False, box_of(pts), "lost")
