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
3. **Re-acquisition**: for ``reacquire_frames`` frames after a face is lost (not at a cut),
   the tracking model looks for it around its last landmarks (a few scales and in-plane
   angles, one batched call every other frame), as OpenFace and MediaPipe do.
4. **Detection**: at once on a cut or when a track was lost, then at intervals that start at
   ``detect_every`` frames and double (up to ``search_backoff``) while searches find nothing,
   as long as fewer than ``max_faces`` faces are tracked; for ``search_after_loss`` frames after
   a face is lost they do not double. Searches at a doubled interval, the
   search at a cut and the search after losing only large faces (``coarse_min_face``) look at
   a half-size copy (``backoff_scale``); when the one at a cut leaves fewer than ``max_faces``
   faces tracked, the full-size frame is searched at the next frame. With no face tracked a search runs
   whole; with a face tracked it is spread over frames, one of the detector's ``parts`` per
   frame, so no tracked frame waits for a whole search. Detections overlapping a tracked face
   (IoU of landmark-equivalent boxes over ``iou_threshold``, or the smaller box inside the other
   by more than ``overlap_threshold`` of its area) are ignored; the rest are fitted
   by the model choice's :class:`facetrack.tracker.models.FitChain` (``mdm``: MDM from the
   calibrated box; ``aan``: AAN; ``aan+mdm``: AAN from the box, then MDM from AAN's shape),
   then refitted by the tracking model in the crop aligned on that fit: a face is accepted
   only when the refit stays put (``max_refit_shift``), passes the sanity checks and its
   confidence passes ``confidence_threshold`` (a collar or a hand drifts or scores low).
   Two tracks that converge on one face become one (the surer stays).
5. Optional One Euro smoothing of the reported landmarks (tracking itself uses raw fits),
   moved first by each face's motion from the previous frame, measured by optical flow.

With a chain of models (``aan+mdm``) the models take turns on a tracked face, one per frame,
and each fit is averaged with the others' last fits carried by the same flow (:meth:`Tracker._track_fits`).

Face ids are slots ``0 .. max_faces-1``; a new face takes the lowest free id, so with
``max_faces=1`` every face is id 0, as in OpenFace.
"""
from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import cv2
import numpy as np

from facetrack.tracker.geometry import apply_affine, box_iou, box_of, box_overlap, eye_scale, to_gray
from facetrack.tracker.landmarker import Fit
from facetrack.tracker.models import FitChain, open_landmarkers, parse_model
from facetrack.tracker.motion import face_motion
from facetrack.tracker.smoothing import PoseShapeFilter, face_size

log = logging.getLogger(__name__)

STAGES = ("detect", "crop", "infer", "post")


class LandmarkerLike(Protocol):
    """What the tracker needs of a landmarker (:class:`facetrack.tracker.landmarker.Landmarker`)."""

    kind: str

    def fit_boxes(self, gray: np.ndarray, boxes: Sequence[np.ndarray], timings: Any = None) -> list[Fit]: ...

    def fit_shapes(self, gray: np.ndarray, shapes: Sequence[np.ndarray], timings: Any = None,
                   init: str = "shape", starts: Sequence[np.ndarray] | None = None) -> list[Fit]: ...


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker settings.

    ``model``: ``"mdm"`` (alias of ``"mdm-rt"``), ``"aan"``, ``"aan+mdm"`` or a model file path.
    ``backend``/``threads``: passed to the landmarkers' runtime.
    ``detect_every``: frames between searches for new faces while fewer than ``max_faces``
    are tracked (1: every such frame); a lost track or a cut always searches at once.
    ``cut_threshold``: thumbnail correlation (in [-1, 1]) below which a frame starts a new shot.
    ``smooth_*``: One Euro parameters (min_cutoff, d_cutoff Hz; beta per face size per second)
    of the pose, and ``smooth_shape_*`` of the shape (:class:`~facetrack.tracker.smoothing.PoseShapeFilter`).
    ``smooth_flow``: before smoothing, each face's filter is moved by the face's motion
    measured by optical flow (:func:`facetrack.tracker.motion.face_motion`), so the pose filter
    smooths the fits' own errors without lagging behind the head.
    ``track_init``: how MDM starts on a tracked face. Both crop around the previous landmarks
    (similarity-aligned); ``"template"`` starts MDM from the template in that crop,
    ``"shape"`` from the previous landmarks (MDM's 300VW protocol), first projected onto the
    first ``shape_modes`` modes of the shipped shape model (:mod:`facetrack.tracker.shape_model`;
    ``None``: the number chosen on held-out sequences and stored with it; 0: the previous
    landmarks as they are). Started from its raw previous fit the shipped mdm-rt drifts and its
    jaw and mouth collapse within a few hundred frames; the projected start keeps it on the face,
    but the template start is still as accurate or more (README, "MDM's start shape when
    tracking"), hence the default.
    ``search_backoff``: while searches find nothing new, the frames between them double from
    ``detect_every`` up to this (or ``detect_every`` if larger); a cut or a lost face starts
    again at ``detect_every``. A search costs more than tracking a face, and most frames
    without a new face stay so.
    ``search_after_loss``: for this many frames after a face is lost (not at a cut, and not
    re-acquired in the same frame) searches do not back off (in the half-size copy when the
    lost faces were large): a face lost at a head
    turn is usually still there, and is found again when it turns back. On the Hamilton clip's
    frontal shot ``aan+mdm`` found its face again 9 frames after losing it, against 43 with the
    searches backing off at once (92 against 59 of the shot's 101 frames with a face).
    ``backoff_scale``: searches at a longer interval than ``detect_every`` (after one that
    found nothing), the search at a cut and the search after losing only large faces look at
    the frame scaled by this (1: full size, and no second search after a cut).
    ``coarse_min_face``: after a loss, the search looks at the ``backoff_scale`` copy when every
    lost face is at least this large (geometric-mean side of its landmarks' box, as a fraction
    of the frame's short side), else at the full frame. The default detector finds faces from
    about 1/9 of the short side in a half-size copy of a 360-px frame (1/12 in larger ones); a
    full-size search costs 2.5 times as much (docs/DETECTORS.md).
    ``reacquire_frames``: for this many frames after a face is lost (not at a cut), the tracking
    model looks for it around its last landmarks (a few scales and in-plane angles).
    ``max_refit_shift``: a new face is accepted only when refitting it in the crop aligned on
    its first fit moves the landmarks by at most this (mean, in outer-eye distances; for a turned
    face, whose eye distance shrinks, in those of a frontal face of its size) and the
    refit's confidence passes ``confidence_threshold``.
    ``flip``: every fit also runs on the mirrored crop and the two are averaged (the landmarkers
    the tracker opens; see :class:`facetrack.tracker.landmarker.Landmarker`): less error and
    flicker for twice the model's CPU. The CLI turns it on for still images.
    ``turned_model``: a second model choice (as ``model``) for turned faces, trained with
    synthetic head turns (the shipped ``aan-turned+mdm-turned``; ``None``: none). A new face that
    ``model`` rejects gets a last chance from it, with the same checks; a face it accepted is
    tracked, refitted and looked for again by it (a view, as OpenFace's multi-view models).
    Faces ``model`` accepts never reach it, so frontal faces are fitted as without it.
    """

    model: str = "mdm"
    backend: str = "auto"
    threads: int | None = None
    max_faces: int = 1
    smooth: bool = False
    smooth_min_cutoff: float = 1.0
    smooth_beta: float = 10.0  # tuned by flicker on moved faces (python -m facetrack.bench.smoothing); 40 without smooth_flow
    smooth_d_cutoff: float = 1.0
    smooth_shape_min_cutoff: float = 1.0  # the shape (expression) apart from the pose: see PoseShapeFilter
    smooth_shape_beta: float = 10.0
    smooth_flow: bool = True
    confidence_threshold: float = 0.5
    detect_every: int = 3
    cut_threshold: float = 0.5
    max_scale_change: float = 1.35
    min_inside: float = 0.6
    min_face_px: float = 12.0
    iou_threshold: float = 0.3
    overlap_threshold: float = 0.35
    default_fps: float = 30.0
    track_init: str = "template"
    shape_modes: int | None = None
    search_backoff: int = 24
    search_after_loss: int = 12
    backoff_scale: float = 0.5
    coarse_min_face: float = 1 / 6
    reacquire_frames: int = 8
    max_refit_shift: float = 0.35
    flip: bool = False
    turned_model: str | None = None

    def __post_init__(self) -> None:
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold}")
        if self.track_init not in ("template", "shape"):
            raise ValueError(f"track_init must be 'template' or 'shape', got {self.track_init!r}")
        if self.shape_modes is not None and self.shape_modes < 0:
            raise ValueError(f"shape_modes must be >= 0, got {self.shape_modes}")
        if self.max_scale_change <= 1.0:
            raise ValueError(f"max_scale_change must be > 1, got {self.max_scale_change}")
        if not 0.0 < self.backoff_scale <= 1.0:
            raise ValueError(f"backoff_scale must be in (0, 1], got {self.backoff_scale}")


def resolve_shape_modes(shape_modes: int | None) -> int:
    """``TrackerConfig.shape_modes`` as a number: ``None`` takes the shipped shape model's
    ``tracking_modes`` (chosen on held-out sequences by ``python -m facetrack.train.loops.shape_model
    --choose``), 0 without a shape model."""
    if shape_modes is not None:
        return int(shape_modes)
    from facetrack.tracker.shape_model import default_shape_model

    model = default_shape_model()
    return int(model.record.get("tracking_modes", 0)) if model is not None else 0


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
    filter: PoseShapeFilter | None = None
    turn: int = 0  # with a chain: the stage that fits this face in the next frame (modulo the chain's length)
    fits: dict[int, np.ndarray] = field(default_factory=dict)  # with a chain: each stage's last fit, carried to this frame
    view: int = 0  # index into Tracker.chains: the chain that accepted this face fits it


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
    :func:`facetrack.tracker.models.resolve_model`. ``detector``: a
    :class:`facetrack.tracker.detect.FaceDetector` (``detect``, ``detect_part``, ``parts``,
    ``calibration``; default: ``facetrack.tracker.detect.default_detector(max_faces)``).
    """

    def __init__(self, config: TrackerConfig | None = None, landmarkers: Mapping[str, LandmarkerLike] | None = None,
                 detector: Any = None) -> None:
        self.config = config or TrackerConfig()
        choice = parse_model(self.config.model)
        lms, self._owned = open_landmarkers(choice, self.config.backend, self.config.threads, landmarkers,
                                            flip=self.config.flip)
        #: new faces are fitted by the model choice's chain; tracked faces by its stages in turn
        self.chain = FitChain([lms[k] for k in choice.stages])
        #: the turned view's chain (``turned_model``; see :class:`TrackerConfig`), or ``None``
        self.turned: FitChain | None = None
        if self.config.turned_model:
            turned = parse_model(self.config.turned_model)
            tl, owned = open_landmarkers(turned, self.config.backend, self.config.threads, landmarkers,
                                         flip=self.config.flip)
            self._owned += [lm for lm in owned if lm not in self._owned]
            self.turned = FitChain([tl[k] for k in turned.stages])
        if detector is None:
            from facetrack.tracker.detect import default_detector

            detector = default_detector(self.config.max_faces)
        self.detector = detector
        self.cuts = CutDetector(self.config.cut_threshold)
        self._shape_modes = resolve_shape_modes(self.config.shape_modes) if self.config.track_init == "shape" else 0
        self._shape_model = None
        if self._shape_modes:
            from facetrack.tracker.shape_model import default_shape_model

            self._shape_model = default_shape_model()
            if self._shape_model is None:
                raise ValueError("shape_modes needs the shape model facetrack/tracker/data/shape_model.json, which is missing")
        self.reset()

    @property
    def chains(self) -> tuple[FitChain, ...]:
        """The views, by a track's ``view``: :attr:`chain`, then :attr:`turned` when there is one."""
        return (self.chain,) if self.turned is None else (self.chain, self.turned)

    @property
    def track_model(self) -> LandmarkerLike:
        """The chain's last stage: it refits new faces (the shape check) and looks for lost ones."""
        return self.chain.track

    def reset(self) -> None:
        """Forget every face and the previous frame (the next frame searches for faces)."""
        self._tracks: dict[int, _Track] = {}
        self._index = 0
        self._search_now()  # the first frame searches
        self._lost_recently: dict[int, tuple[np.ndarray, int, int]] = {}  # face id -> (last landmarks, frames since, view)
        self._eager_until = 0  # searches do not back off before this frame index (a face was lost)
        self._eager_scale = 1.0  # the scale of those searches (the half-size copy after losing a large face)
        self._prev_gray: np.ndarray | None = None  # the previous frame, for the tracked faces' flow
        self.cuts.reset()

    def _search_now(self, coarse: bool = False, then_full: bool = False) -> None:
        """Start a new search cycle at this frame, at the shortest interval. ``coarse``: the
        cycle looks at the ``backoff_scale`` copy; ``then_full``: when it leaves fewer than
        ``max_faces`` faces tracked, a cycle on the full frame follows at the next frame."""
        self._interval = self.config.detect_every
        self._since_search = self._interval
        self._part = 0
        self._cycle_found = False
        coarse = coarse and self.config.backoff_scale < 1.0
        self._cycle_scale = self.config.backoff_scale if coarse else 1.0
        self._then_full = coarse and then_full

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
            self._lost_recently.clear()
            # a new shot: its faces are unknown, so the cheap copy first and the full frame after
            self._search_now(coarse=cut, then_full=True)
        elif self._tracks:
            tracks = list(self._tracks.values())
            motions = self._motions(gray, tracks, timings)
            for t, m in zip(tracks, motions):
                # motions are also measured for a chain's fits: the filters move only with smooth_flow
                if m is not None and t.filter is not None and c.smooth_flow:
                    t.filter.move(m)
            fits = self._track_fits(gray, tracks, motions, timings)
            if self.turned is not None:
                fits = self._hand_over(gray, tracks, fits, timings)
            t0 = time.perf_counter()
            for t, f in zip(tracks, fits):
                sane = self._sane(f, gray.shape[:2], t.landmarks)
                if sane and f.confidence >= c.confidence_threshold:
                    t.landmarks, t.confidence = f.landmarks, f.confidence
                else:
                    lost[t.face_id] = self._lost(t, f.confidence if sane else 0.0)
                    self._lost_recently[t.face_id] = (t.landmarks, 0, t.view)
                    del self._tracks[t.face_id]
            for t in self._duplicates():  # two tracks that converged on one face: keep the surer
                lost[t.face_id] = self._lost(t, t.confidence)
                del self._tracks[t.face_id]
            for t in self._tracks.values():
                out[t.face_id] = self._report(t, ts, "tracking")
            if lost:
                # a large face that was lost is found in the half-size copy if it is still there;
                # a small one (or a new face nearby) needs the full frame
                self._search_now(coarse=self._large(lost.values(), gray))
            timings["post"] += (time.perf_counter() - t0) * 1000

        detector_ran = False
        if gray is not None and self._lost_recently and len(self._tracks) < c.max_faces:
            for face in self._reacquire(gray, ts, timings):
                out[face.face_id] = face
                lost.pop(face.face_id, None)
        if lost and gray is not None and not cut:
            # faces lost in this frame and not found again around their last place: the searches
            # stay eager for a while
            self._eager_until = self._index + c.search_after_loss
            self._eager_scale = c.backoff_scale if self._large(lost.values(), gray) else 1.0
        if gray is not None and len(self._tracks) < c.max_faces and (self._part > 0 or self._since_search >= self._interval):
            detector_ran = True
            for face in self._search(gray, ts, timings):
                out[face.face_id] = face
                lost.pop(face.face_id, None)
        self._keep_frame(frame, gray)
        faces = tuple(sorted([*out.values(), *lost.values()], key=lambda f: f.face_id))
        timings["total"] = (time.perf_counter() - t_start) * 1000
        return FrameResult(index, ts, faces, timings, detector_ran, cut)

    def _large(self, faces: Any, gray: np.ndarray) -> bool:
        """Whether all these faces are large enough to be found in the half-size copy
        (``coarse_min_face`` of the frame's short side)."""
        short = min(gray.shape[:2])
        return all(face_size(f.landmarks) >= self.config.coarse_min_face * short for f in faces)

    def _wants_flow(self) -> bool:
        """Whether tracked faces need their motion between frames: to move their filters
        (``smooth_flow``), or to carry a chain's fits to the next frame."""
        c = self.config
        return (c.smooth and c.smooth_flow) or any(len(ch.stages) > 1 for ch in self.chains)

    def _motions(self, gray: np.ndarray, tracks: list[_Track], timings: dict[str, float]) -> list[np.ndarray | None]:
        """Each face's motion since the previous frame (:func:`face_motion`; ``None``: unknown)."""
        if self._prev_gray is None or not self._wants_flow():
            return [None] * len(tracks)
        t0 = time.perf_counter()
        out = [face_motion(self._prev_gray, gray, t.landmarks) for t in tracks]
        timings["post"] += (time.perf_counter() - t0) * 1000
        return out

    def _track_fits(self, gray: np.ndarray, tracks: list[_Track], motions: list[np.ndarray | None],
                    timings: dict[str, float]) -> list[Fit]:
        """Fit every tracked face from its previous landmarks by its view's chain
        (:meth:`_chain_fits`)."""
        fits: list[Fit | None] = [None] * len(tracks)
        for v, chain in enumerate(self.chains):
            idx = [i for i, t in enumerate(tracks) if t.view == v]
            if not idx:
                continue
            # the turned view tracks with its tracking model alone, from the face's last fit
            got = (self._chain_fits(gray, [tracks[i] for i in idx], [motions[i] for i in idx], timings) if v == 0
                   else self._refit_shapes(chain, gray, [tracks[i].landmarks for i in idx], timings))
            for i, f in zip(idx, got):
                fits[i] = f
        return fits

    def _chain_fits(self, gray: np.ndarray, tracks: list[_Track], motions: list[np.ndarray | None],
                    timings: dict[str, float]) -> list[Fit]:
        """Fit these tracked faces from their previous landmarks: one batched call per model.

        With one model, that model. With a chain (``aan+mdm``) the models take turns, one per face
        and frame, and each fit is averaged with the other models' last fits of the face carried
        to this frame by its motion: the models err differently, so the mean errs less than
        either, for the CPU of one model per frame (moved faces 1-7: 3.40 % NME, against 3.63 %
        for MDM alone, 3.38 % for both models on every frame). The tracking model (the last)
        has the confidence head trained on its own tracking (drifted fits are negatives); on the
        other models' turns a face keeps the lower of its last such confidence and the model's own.
        """
        c = self.config
        stages = self.chain.stages
        n = len(stages)
        fits: list[Fit | None] = [None] * len(tracks)
        for k in range(n):
            idx = [i for i, t in enumerate(tracks) if t.turn % n == k]
            if not idx:
                continue
            if k == n - 1:
                fit = functools.partial(stages[k].fit_shapes, init=c.track_init)
                if self._shape_model is not None:
                    # MDM from its previous fit, kept to shapes faces make: the crop stays aligned on the
                    # fit itself (aligning it on the projection tracked held-out sequences worse: 4.12
                    # against 3.88 % NME at best), only the start is projected
                    fit = functools.partial(fit, starts=[self._shape_model.project(tracks[i].landmarks, self._shape_modes) for i in idx])
            else:
                fit = stages[k].fit_shapes
            for i, f in zip(idx, self._call(fit, gray, [tracks[i].landmarks for i in idx], timings, len(idx))):
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

    def _hand_over(self, gray: np.ndarray, tracks: list[_Track], fits: list[Fit], timings: dict[str, float]) -> list[Fit]:
        """A tracked face its view's model loses gets one try from the other view's tracking
        model, started in the crop aligned on its last landmarks, before it is lost: a face that
        turns away passes to the turned view (and one that turns back, to the first) without a
        search. Accepted by the same checks; the face then stays with that view."""
        failed = [i for i, (t, f) in enumerate(zip(tracks, fits)) if not self._accept(f, gray.shape[:2], t.landmarks)]
        out = list(fits)
        for v, chain in enumerate(self.chains):
            idx = [i for i in failed if tracks[i].view != v]
            if not idx:
                continue
            for i, f in zip(idx, self._refit_shapes(chain, gray, [tracks[i].landmarks for i in idx], timings)):
                if self._accept(f, gray.shape[:2], tracks[i].landmarks):
                    t = tracks[i]
                    out[i], t.view, t.turn, t.fits = f, v, 0, {}
        return out

    def _refit_shapes(self, chain: FitChain, gray: np.ndarray, shapes: list[np.ndarray], timings: dict[str, float]) -> list[Fit]:
        """``chain``'s tracking model fits each shape in the crop aligned on it, started as
        :meth:`_refit_init` says: the refit check, re-acquisition, the hand-over between views and
        the turned view's tracking."""
        fit = functools.partial(chain.track.fit_shapes, init=self._refit_init(chain))
        return self._call(fit, gray, shapes, timings, len(shapes))

    def _keep_frame(self, frame: Any, gray: np.ndarray | None) -> None:
        """Keep this frame for the next one's flow when tracked faces need it."""
        if gray is None or not (self._tracks and self._wants_flow()):
            self._prev_gray = None
            return
        # a grey frame comes back from to_gray as it is, and a caller may reuse its buffer
        self._prev_gray = gray.copy() if np.may_share_memory(gray, frame) else gray

    def _same_face(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether two boxes are taken for one face: IoU over ``iou_threshold``, or the smaller box
        inside the larger by more than ``overlap_threshold`` of its area (a fit on a face's upper
        half, which IoU alone lets through)."""
        c = self.config
        return box_iou(a, b) > c.iou_threshold or box_overlap(a, b) > c.overlap_threshold

    def _duplicates(self) -> list[_Track]:
        """Tracks whose box a surer track's box takes for the same face (:meth:`_same_face`)."""
        drop: list[_Track] = []
        kept: list[np.ndarray] = []
        for t in sorted(self._tracks.values(), key=lambda t: -t.confidence):
            b = box_of(t.landmarks)
            if any(self._same_face(b, k) for k in kept):
                drop.append(t)
            else:
                kept.append(b)
        return drop

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
        dets = self._detect(gray)
        calib = getattr(self.detector, "calibration", None)
        tracked = [box_of(t.landmarks) for t in self._tracks.values()]
        boxes = []
        for d in sorted(dets, key=lambda d: -float(d.score)):
            b = np.asarray(calib(d.box) if calib is not None else d.box, np.float32)
            if b.shape != (4,) or not np.isfinite(b).all() or not (b[2] > b[0] and b[3] > b[1]):
                continue
            if any(self._same_face(b, tb) for tb in tracked):
                continue
            boxes.append(b)
        boxes = boxes[: len(free) + 2]  # a few spares in case the best ones fail the checks
        timings["detect"] += (time.perf_counter() - t0) * 1000
        if not boxes:
            self._end_part(False)
            return []
        # a failed call gives one plain invalid fit per face, not each stage's
        staged = [s if isinstance(s, tuple) else (s,)
                  for s in self._call(self.chain.fit_boxes_staged, gray, boxes, timings, len(boxes))]
        fits = self._refit(gray, [s[-1] for s in staged], timings, [s[:-1] for s in staged])
        if len(self.chain.stages) > 1:
            fits = self._fall_back(gray, boxes, fits, timings)
        views = [0] * len(fits)
        if len(self.chains) > 1:
            fits, views = self._turned_chance(gray, boxes, fits, timings)
        t0 = time.perf_counter()
        new: list[FaceResult] = []
        accepted = [box_of(t.landmarks) for t in self._tracks.values()]
        for f, view in zip(fits, views):
            if not free:
                break
            if f is None or not self._accept(f, gray.shape[:2], None):
                continue
            fb = box_of(f.landmarks)
            if any(self._same_face(fb, a) for a in accepted):
                continue
            accepted.append(fb)
            face_id = free.pop(0)
            self._lost_recently.pop(face_id, None)  # the slot holds a new face now
            new.append(self._start_track(face_id, f, ts, view))
        timings["post"] += (time.perf_counter() - t0) * 1000
        self._end_part(bool(new))
        return new

    def _detect(self, gray: np.ndarray) -> list[Any]:
        """This frame's share of the search: the whole search when no face is tracked (no
        frame waits for it), else the next part of the detector's search (one per frame).
        Searches after one that found nothing (the back-off) look at a copy scaled by
        ``backoff_scale``: faces missed at full size are seldom found at the next search, and
        the copy costs a fraction; faces that come in are usually large. So do the search at a
        cut (the full frame follows if faces are left to find) and the one after losing only
        large faces (see :meth:`_search_now`)."""
        parts = max(1, int(self.detector.parts))
        f = self.config.backoff_scale if self._interval > self.config.detect_every else self._cycle_scale
        img = gray
        if f < 1.0:
            img = cv2.resize(gray, (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f))), interpolation=cv2.INTER_AREA)
            f = img.shape[1] / gray.shape[1]
        try:
            if not self._tracks and self._part == 0:
                self._part = parts - 1  # the whole cycle in this frame
                dets = list(self.detector.detect(img))
            else:
                dets = list(self.detector.detect_part(img, self._part % parts))
        except Exception as e:  # noqa: BLE001 - a detector failure on one frame is not fatal
            log.warning("detector failed on frame %d: %s: %s", self._index - 1, type(e).__name__, e)
            return []
        if f < 1.0:
            dets = [type(d)(np.asarray(d.box, np.float32) / f, d.score) for d in dets]
        return dets

    def _end_part(self, found: bool) -> None:
        """Count one part of the search cycle; at the end of a cycle that found nothing the
        interval to the next one doubles (up to ``search_backoff``)."""
        c = self.config
        self._cycle_found |= found
        self._part += 1
        if self._part >= max(1, int(self.detector.parts)):
            then_full, self._then_full, self._cycle_scale = self._then_full, False, 1.0
            if then_full and len(self._tracks) < c.max_faces:
                self._part, self._since_search = 0, self._interval  # the full-size cycle at the next frame
                return
            if self._cycle_found:
                self._interval = c.detect_every
            elif self._index < self._eager_until:
                # a face just lost is likely still there: look again soon, in the copy its size allows
                self._interval, self._cycle_scale = c.detect_every, self._eager_scale
            else:
                self._interval = min(2 * self._interval, max(c.search_backoff, c.detect_every))
            self._part, self._since_search, self._cycle_found = 0, 0, False

    def _refit(self, gray: np.ndarray, fits: list[Fit], timings: dict[str, float],
               earlier: Sequence[Sequence[Fit]], chain: FitChain | None = None) -> list[Fit | None]:
        """The shape check of new faces: each fit is refitted by the tracking model (``chain``'s,
        default :attr:`chain`'s) in the crop
        aligned on it. A face (and not a collar, a hand or a lamp) keeps its landmarks there;
        a fit whose refit moves by more than ``max_refit_shift`` outer-eye distances, or fails
        the sanity checks against it (scale change included), gives ``None``; the others give
        the mean of every fit made of the face (``earlier``: the fits of the chain's stages
        before the last, e.g. aan's before MDM's; then the fit and its refit), with the refit's
        confidence (which decides acceptance). The mean is free (all the fits are made anyway)
        and beats each alone: stage-6 mdm-rt on the 298 held-out validation faces from the
        detector's box, mirror-averaged, 2.92 % (refit) -> 2.83 % NME (fit and refit); with
        ``aan+mdm`` (aan stage 5) 2.63 % (fit and refit) -> 2.50 % (aan's fit too)."""
        good = [i for i, f in enumerate(fits) if f.valid and np.isfinite(f.landmarks).all()]
        out: list[Fit | None] = [None] * len(fits)
        if not good:
            return out
        refits = self._refit_shapes(chain or self.chain, gray, [fits[i].landmarks for i in good], timings)
        for i, r in zip(good, refits):
            a, b = fits[i].landmarks, r.landmarks
            shift = float(np.linalg.norm(b - a, axis=1).mean()) / max(eye_scale(a), 1e-6)
            if np.isfinite(shift) and shift <= self.config.max_refit_shift and self._sane(r, gray.shape[:2], a):
                prior = [e.landmarks for e in earlier[i] if e.valid and np.isfinite(e.landmarks).all()]
                out[i] = Fit(np.mean([*prior, a, b], axis=0).astype(np.float32), r.confidence, r.valid)
        return out

    def _refit_init(self, chain: FitChain) -> str:
        """How the tracking model starts when it refits a new face, looks for a lost one or (turned
        view) tracks one, in the crop aligned on the face: the first view from the template, the
        turned view from the face's shape itself. The template is a frontal face, too far from a
        face turned by 60 degrees for MDM's few steps: on the Hamilton clip's audience shot the
        turned chain fitted the man at confidence 0.90-0.94 and its refit from the template fell
        to 0.08-0.19."""
        return "template" if chain is self.chain else "shape"

    def _fall_back(self, gray: np.ndarray, boxes: list[np.ndarray], fits: list[Fit | None],
                   timings: dict[str, float]) -> list[Fit | None]:
        """A chain's new faces that fail the checks get a second chance from the tracking model
        alone (its fit from the box, then the same refit check). On a turned face the chain's
        first model can start MDM where its refit does not hold while MDM from the box does: on
        the Hamilton clip's frontal shot, lost at a head turn, ``aan+mdm`` tracks 92 of its 101
        frames with this second chance and 89 without (``mdm``: 95)."""
        failed = [i for i, f in enumerate(fits) if f is None or not self._accept(f, gray.shape[:2], None)]
        if not failed:
            return fits
        own = self._call(self.track_model.fit_boxes, gray, [boxes[i] for i in failed], timings, len(failed))
        out = list(fits)
        for i, f in zip(failed, self._refit(gray, own, timings, [()] * len(failed))):
            if f is not None:
                out[i] = f
        return out

    def _turned_chance(self, gray: np.ndarray, boxes: list[np.ndarray], fits: list[Fit | None],
                       timings: dict[str, float]) -> tuple[list[Fit | None], list[int]]:
        """The new faces the first chain rejects get a last chance from the turned chain
        (``chains[1]``): its fits from the same boxes, its refit check. Returns the fits and each
        one's view (1 where the turned chain's fit replaced a rejected one)."""
        views = [0] * len(fits)
        failed = [i for i, f in enumerate(fits) if f is None or not self._accept(f, gray.shape[:2], None)]
        if not failed:
            return fits, views
        turned = self.chains[1]
        staged = [s if isinstance(s, tuple) else (s,)
                  for s in self._call(turned.fit_boxes_staged, gray, [boxes[i] for i in failed], timings, len(failed))]
        out = list(fits)
        refits = self._refit(gray, [s[-1] for s in staged], timings, [s[:-1] for s in staged], turned)
        for i, f in zip(failed, refits):
            if f is not None and self._accept(f, gray.shape[:2], None):
                out[i], views[i] = f, 1
        return out, views

    #: re-acquisition hypotheses around a lost face: (scale, in-plane angle in degrees)
    REACQUIRE = ((1.0, 0.0), (0.85, 0.0), (1.2, 0.0), (1.0, 20.0), (1.0, -20.0))

    def _reacquire(self, gray: np.ndarray, ts: float, timings: dict[str, float]) -> list[FaceResult]:
        """Look for recently lost faces around their last landmarks with the tracking model:
        every other frame for ``reacquire_frames`` frames, all hypotheses of all lost faces in
        one batched call; the surest hypothesis that passes the checks (and overlaps no tracked
        face) takes the lowest free id."""
        c = self.config
        for fid, (pts, age, view) in list(self._lost_recently.items()):
            if age >= c.reacquire_frames:
                del self._lost_recently[fid]
            else:
                self._lost_recently[fid] = (pts, age + 1, view)
        todo = [(fid, pts, view) for fid, (pts, age, view) in self._lost_recently.items() if age % 2 == 1]
        if not todo:
            return []
        fits: list[Fit] = []
        owner: list[int] = []
        for v, chain in enumerate(self.chains):  # one batched call per view's tracking model
            shapes = []
            for fid, pts, view in todo:
                if view != v:
                    continue
                centre = pts.mean(0)
                for scale, deg in self.REACQUIRE:
                    a = np.deg2rad(deg)
                    m = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
                    shapes.append(((pts - centre) @ m.T + centre).astype(np.float32))
                    owner.append(fid)
            if shapes:
                fits += self._refit_shapes(chain, gray, shapes, timings)
        t0 = time.perf_counter()
        new: list[FaceResult] = []
        for fid, pts, view in todo:
            cands = [f for f, o in zip(fits, owner) if o == fid and self._accept(f, gray.shape[:2], pts)]
            free = [i for i in range(c.max_faces) if i not in self._tracks]
            if not cands or not free:
                continue
            best = max(cands, key=lambda f: f.confidence)
            b = box_of(best.landmarks)
            if any(self._same_face(b, box_of(t.landmarks)) for t in self._tracks.values()):
                continue
            del self._lost_recently[fid]
            new.append(self._start_track(free[0], best, ts, view))
        timings["post"] += (time.perf_counter() - t0) * 1000
        return new

    def _start_track(self, face_id: int, fit: Fit, ts: float, view: int = 0) -> FaceResult:
        """Track an accepted new (or re-acquired) face in slot ``face_id`` with the chain of
        ``view``; its report."""
        c = self.config
        t = _Track(face_id, fit.landmarks, fit.confidence, view=view)
        if c.smooth:
            t.filter = PoseShapeFilter(c.smooth_min_cutoff, c.smooth_beta, c.smooth_shape_min_cutoff, c.smooth_shape_beta,
                                       c.smooth_d_cutoff, 1.0 / c.default_fps)
        self._tracks[face_id] = t
        return self._report(t, ts, "detected")

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
