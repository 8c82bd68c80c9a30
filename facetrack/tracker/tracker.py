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
and each fit is averaged with the others' last fits carried by the same flow (:meth:`facetrack.tracker.views.View.track`).

Modules: :mod:`~facetrack.tracker.cuts` (step 1), :mod:`~facetrack.tracker.views` (the main and turned
views: step 2), :mod:`~facetrack.tracker.acquire` (new faces and re-acquisition: steps 3-4),
:mod:`~facetrack.tracker.schedule` (when and where to search), :mod:`~facetrack.tracker.checks`,
:mod:`~facetrack.tracker.config`, :mod:`~facetrack.tracker.results`.

Face ids are slots ``0 .. max_faces-1``; a new face takes the lowest free id, so with
``max_faces=1`` every face is id 0, as in OpenFace.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Protocol, Sequence

import cv2
import numpy as np

from facetrack.tracker.acquire import REACQUIRE, fit_new_faces, larger_of_same, reacquire_hypotheses
from facetrack.tracker.checks import FaceChecks
from facetrack.tracker.config import TrackerConfig, resolve_shape_modes
from facetrack.tracker.cuts import CutDetector
from facetrack.tracker.geometry import box_of, face_size, to_gray
from facetrack.tracker.landmarker import Fit
from facetrack.tracker.models import FitChain, open_landmarkers, parse_model
from facetrack.tracker.motion import face_motion
from facetrack.tracker.pose import HeadPose, PoseSolver
from facetrack.tracker.results import FaceResult, FaceState, FrameResult
from facetrack.tracker.schedule import SearchSchedule
from facetrack.tracker.smoothing import PoseShapeFilter
from facetrack.tracker.views import View, safe_fits

__all__ = ["CutDetector", "FaceResult", "FaceState", "FrameResult", "Tracker", "TrackerConfig", "resolve_shape_modes"]

log = logging.getLogger(__name__)

STAGES = ("detect", "crop", "infer", "post")


class LandmarkerLike(Protocol):
    """What the tracker needs of a landmarker (:class:`facetrack.tracker.landmarker.Landmarker`)."""

    kind: str

    def fit_boxes(self, gray: np.ndarray, boxes: Sequence[np.ndarray], timings: Any = None) -> list[Fit]: ...

    def fit_shapes(self, gray: np.ndarray, shapes: Sequence[np.ndarray], timings: Any = None,
                   init: str = "shape", starts: Sequence[np.ndarray] | None = None) -> list[Fit]: ...


@dataclass
class _Track:
    face_id: int
    landmarks: np.ndarray  # raw last fit, image px
    confidence: float
    view: View  # the view that accepted this face fits it
    filter: PoseShapeFilter | None = None
    turn: int = 0  # with a chain: the stage that fits this face in the next frame (modulo the chain's length)
    fits: dict[int, np.ndarray] = field(default_factory=dict)  # with a chain: each stage's last fit, carried to this frame


class Tracker:
    """Multi-face landmark tracker (see the module docstring for the per-frame steps).

    ``landmarkers``: optional mapping from the keys the model choice needs (``"mdm"``,
    ``"aan"``, or the model path) to landmarkers; missing ones are loaded from
    :func:`facetrack.tracker.models.resolve_model`. ``detector``: a
    :class:`facetrack.tracker.detect.FaceDetector` (``detect``, ``detect_part``, ``parts``,
    ``calibration``; default: ``facetrack.tracker.detect.default_detector(max_faces)``).
    """

    #: re-acquisition hypotheses around a lost face (:data:`facetrack.tracker.acquire.REACQUIRE`)
    REACQUIRE = REACQUIRE

    def __init__(self, config: TrackerConfig | None = None, landmarkers: Mapping[str, LandmarkerLike] | None = None,
                 detector: Any = None) -> None:
        self.config = c = config or TrackerConfig()
        shape_modes = resolve_shape_modes(c.shape_modes) if c.track_init == "shape" else 0
        shape_model = None
        if shape_modes:
            from facetrack.tracker.shape_model import default_shape_model

            shape_model = default_shape_model()
            if shape_model is None:
                raise ValueError("shape_modes needs the shape model facetrack/tracker/data/shape_model.json, which is missing")
        self._owned: list[Any] = []
        #: the main view, then the turned view (``turned_model``; see :class:`TrackerConfig`) if any
        self.views: tuple[View, ...] = (
            View("main", self._open_chain(c.model, landmarkers), "template", True, c.track_init, shape_model, shape_modes),)
        if c.turned_model:
            self.views += (View("turned", self._open_chain(c.turned_model, landmarkers), "shape", False),)
        if detector is None:
            from facetrack.tracker.detect import default_detector

            detector = default_detector(c.max_faces)
        self.detector = detector
        self.cuts = CutDetector(c.cut_threshold)
        self.checks = FaceChecks(c)
        self.pose = PoseSolver(camera=c.camera) if c.pose else None
        self.reset()

    def _open_chain(self, model: str, landmarkers: Mapping[str, LandmarkerLike] | None) -> FitChain:
        choice = parse_model(model)
        lms, owned = open_landmarkers(choice, self.config.backend, self.config.threads, landmarkers, flip=self.config.flip)
        self._owned += [lm for lm in owned if lm not in self._owned]
        return FitChain([lms[k] for k in choice.stages])

    @property
    def chain(self) -> FitChain:
        """The main view's chain: new faces are fitted by it, tracked faces by its stages in turn."""
        return self.views[0].chain

    @chain.setter
    def chain(self, chain: FitChain) -> None:
        self.views[0].chain = chain

    @property
    def chains(self) -> tuple[FitChain, ...]:
        """Every view's chain, the main view's first."""
        return tuple(v.chain for v in self.views)

    @property
    def track_model(self) -> LandmarkerLike:
        """The main chain's last stage: it refits new faces (the shape check) and looks for lost ones."""
        return self.chain.track

    def reset(self) -> None:
        """Forget every face and the previous frame (the next frame searches for faces)."""
        self._tracks: dict[int, _Track] = {}
        self._index = 0
        self.schedule = SearchSchedule(self.config)  # the first frame searches
        self._lost_recently: dict[int, tuple[np.ndarray, int, View]] = {}  # face id -> (last landmarks, frames since, view)
        self._prev_gray: np.ndarray | None = None  # the previous frame, for the tracked faces' flow
        self.cuts.reset()

    def close(self) -> None:
        """Close the landmarkers this tracker opened itself."""
        for lm in self._owned:
            lm.close()
        self._owned.clear()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

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
        self.schedule.tick()
        lost: dict[int, FaceResult] = {}
        out: dict[int, FaceResult] = {}
        gray = self._gray(frame, index)
        # 1. the cut check: a new shot (or a frame that is no image) drops every face
        cut = False if gray is None else self.cuts(gray)
        if gray is None or cut:
            self._drop_all(lost, cut)
        # 2. tracking: every tracked face refitted from its last landmarks
        elif self._tracks:
            self._track(gray, ts, timings, out, lost)
        # 3. re-acquisition: faces lost a moment ago looked for around their last place
        if gray is not None and self._lost_recently and len(self._tracks) < c.max_faces:
            for face in self._reacquire(gray, ts, timings):
                out[face.face_id] = face
                lost.pop(face.face_id, None)
        if lost and gray is not None and not cut:
            # faces lost in this frame and not found again around their last place: the searches
            # stay eager for a while
            self.schedule.eager(self._index + c.search_after_loss, c.backoff_scale if self._large(lost.values(), gray) else 1.0)
        # 4. the search for new faces, while a slot is free
        detector_ran = False
        if gray is not None and len(self._tracks) < c.max_faces and self.schedule.due():
            detector_ran = True
            for face in self._search(gray, ts, timings):
                out[face.face_id] = face
                lost.pop(face.face_id, None)
        # 5. the report: each face's (smoothed) landmarks, the lost ones' last
        self._keep_frame(frame, gray)
        faces = tuple(sorted([*out.values(), *lost.values()], key=lambda f: f.face_id))
        if self.pose is not None:
            faces = self._posed(faces, gray, timings)
        timings["total"] = (time.perf_counter() - t_start) * 1000
        return FrameResult(index, ts, faces, timings, detector_ran, cut)

    def _gray(self, frame: Any, index: int) -> np.ndarray | None:
        try:
            return to_gray(frame)
        except (ValueError, TypeError, cv2.error) as e:
            log.warning("frame %d is not an image (%s); all faces lost", index, e)
            return None

    def _drop_all(self, lost: dict[int, FaceResult], cut: bool) -> None:
        for t in self._tracks.values():
            lost[t.face_id] = self._lost(t)
        self._tracks.clear()
        self._lost_recently.clear()
        # a new shot: its faces are unknown, so the cheap copy first and the full frame after
        self.schedule.start(coarse=cut, then_full=True)

    def _call(self, fn: Any, gray: np.ndarray, items: list, timings: dict[str, float], n: int) -> list[Fit]:
        """A landmarker call that cannot take the tracker down (:func:`~facetrack.tracker.views.safe_fits`)."""
        return safe_fits(fn, gray, items, timings, n, self._index - 1)

    # --- 2. tracking -----------------------------------------------------------------------
    def _track(self, gray: np.ndarray, ts: float, timings: dict[str, float],
               out: dict[int, FaceResult], lost: dict[int, FaceResult]) -> None:
        c = self.config
        tracks = list(self._tracks.values())
        motions = self._motions(gray, tracks, timings)
        for t, m in zip(tracks, motions):
            # motions are also measured for a chain's fits: the filters move only with smooth_flow
            if m is not None and t.filter is not None and c.smooth_flow:
                t.filter.move(m)
        fits: list[Fit | None] = [None] * len(tracks)
        for view in self.views:
            idx = [i for i, t in enumerate(tracks) if t.view is view]
            if idx:
                got = view.track(gray, [tracks[i] for i in idx], [motions[i] for i in idx], timings, self._call)
                for i, f in zip(idx, got):
                    fits[i] = f
        if len(self.views) > 1:
            fits = self._hand_over(gray, tracks, fits, timings)
        t0 = time.perf_counter()
        for t, f in zip(tracks, fits):
            sane = self.checks.sane(f, gray.shape[:2], t.landmarks)
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
            out[t.face_id] = self._report(t, ts, FaceState.TRACKING)
        if lost:
            # a large face that was lost is found in the half-size copy if it is still there;
            # a small one (or a new face nearby) needs the full frame
            self.schedule.start(coarse=self._large(lost.values(), gray))
        timings["post"] += (time.perf_counter() - t0) * 1000

    def _large(self, faces: Any, gray: np.ndarray) -> bool:
        """Whether all these faces are large enough to be found in the half-size copy
        (``coarse_min_face`` of the frame's short side)."""
        short = min(gray.shape[:2])
        return all(face_size(f.landmarks, 1.0) >= self.config.coarse_min_face * short for f in faces)

    def _wants_flow(self) -> bool:
        """Whether tracked faces need their motion between frames: to move their filters
        (``smooth_flow``), or to carry a chain's fits to the next frame."""
        c = self.config
        return (c.smooth and c.smooth_flow) or any(len(v.chain.stages) > 1 for v in self.views)

    def _motions(self, gray: np.ndarray, tracks: list[_Track], timings: dict[str, float]) -> list[np.ndarray | None]:
        """Each face's motion since the previous frame (:func:`face_motion`; ``None``: unknown)."""
        if self._prev_gray is None or not self._wants_flow():
            return [None] * len(tracks)
        t0 = time.perf_counter()
        out = [face_motion(self._prev_gray, gray, t.landmarks) for t in tracks]
        timings["post"] += (time.perf_counter() - t0) * 1000
        return out

    def _hand_over(self, gray: np.ndarray, tracks: list[_Track], fits: list[Fit], timings: dict[str, float]) -> list[Fit]:
        """A tracked face its view's model loses gets one try from the other view's tracking
        model, started in the crop aligned on its last landmarks, before it is lost: a face that
        turns away passes to the turned view (and one that turns back, to the main one) without a
        search. Accepted by the same checks; the face then stays with that view."""
        hw = gray.shape[:2]
        failed = [i for i, (t, f) in enumerate(zip(tracks, fits)) if not self.checks.accept(f, hw, t.landmarks)]
        out = list(fits)
        for view in self.views:
            idx = [i for i in failed if tracks[i].view is not view]
            if not idx:
                continue
            for i, f in zip(idx, view.refit(gray, [tracks[i].landmarks for i in idx], timings, self._call)):
                if self.checks.accept(f, hw, tracks[i].landmarks):
                    t = tracks[i]
                    out[i], t.view, t.turn, t.fits = f, view, 0, {}
        return out

    def _duplicates(self) -> list[_Track]:
        """Tracks whose box a surer track's box takes for the same face (:meth:`FaceChecks.same_face`)."""
        drop: list[_Track] = []
        kept: list[np.ndarray] = []
        for t in sorted(self._tracks.values(), key=lambda t: -t.confidence):
            b = box_of(t.landmarks)
            if any(self.checks.same_face(b, k) for k in kept):
                drop.append(t)
            else:
                kept.append(b)
        return drop

    def _keep_frame(self, frame: Any, gray: np.ndarray | None) -> None:
        """Keep this frame for the next one's flow when tracked faces need it."""
        if gray is None or not (self._tracks and self._wants_flow()):
            self._prev_gray = None
            return
        # a grey frame comes back from to_gray as it is, and a caller may reuse its buffer
        self._prev_gray = gray.copy() if np.may_share_memory(gray, frame) else gray

    # --- 3. re-acquisition -----------------------------------------------------------------
    def _reacquire(self, gray: np.ndarray, ts: float, timings: dict[str, float]) -> list[FaceResult]:
        """Look for recently lost faces around their last landmarks with their view's tracking
        model: every other frame for ``reacquire_frames`` frames, all hypotheses of all lost faces
        in one batched call per view; the surest hypothesis that passes the checks (and overlaps
        no tracked face) takes the lowest free id."""
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
        for v in self.views:
            shapes = []
            for fid, pts, view in todo:
                if view is v:
                    hyp = reacquire_hypotheses(pts)
                    shapes += hyp
                    owner += [fid] * len(hyp)
            if shapes:
                fits += v.refit(gray, shapes, timings, self._call)
        t0 = time.perf_counter()
        new: list[FaceResult] = []
        for fid, pts, view in todo:
            cands = [f for f, o in zip(fits, owner) if o == fid and self.checks.accept(f, gray.shape[:2], pts)]
            free = [i for i in range(c.max_faces) if i not in self._tracks]
            if not cands or not free:
                continue
            best = max(cands, key=lambda f: f.confidence)
            b = box_of(best.landmarks)
            if any(self.checks.same_face(b, box_of(t.landmarks)) for t in self._tracks.values()):
                continue
            del self._lost_recently[fid]
            new.append(self._start_track(free[0], best, ts, view))
        timings["post"] += (time.perf_counter() - t0) * 1000
        return new

    # --- 4. the search ---------------------------------------------------------------------
    def _search(self, gray: np.ndarray, ts: float, timings: dict[str, float]) -> list[FaceResult]:
        """This frame's part of the search: detections that overlap no tracked face, fitted and
        checked (:func:`~facetrack.tracker.acquire.fit_new_faces`), take the free slots, best
        detection first; when more faces are found than slots are free, the largest are kept."""
        c = self.config
        free = [i for i in range(c.max_faces) if i not in self._tracks]
        if not free:
            return []
        t0 = time.perf_counter()
        boxes = self._new_boxes(self._detect(gray))[: len(free) + 2]  # a few spares in case the best ones fail the checks
        timings["detect"] += (time.perf_counter() - t0) * 1000
        if not boxes:
            self._end_part(False)
            return []
        fitted = fit_new_faces(self.views, self.checks, gray, boxes, timings, self._call)
        t0 = time.perf_counter()
        new: list[FaceResult] = []
        tracked = [box_of(t.landmarks) for t in self._tracks.values()]
        cands = [(f, view, box_of(f.landmarks)) for f, view in fitted
                 if f is not None and self.checks.accept(f, gray.shape[:2], None)]
        cands = [c for c in cands if not any(self.checks.same_face(c[2], a) for a in tracked)]
        # one face found twice (a fit on its mouth, one on all of it): the larger is the face
        keep = larger_of_same([c[2] for c in cands], self.checks.same_face)
        if len(keep) > len(free):
            # more faces than free slots (a photo of two people with max_faces=1): the largest
            # faces are kept, as a user expects, not the detector's surest
            largest = set(sorted(keep, key=lambda k: -face_size(cands[k][0].landmarks, 1.0))[: len(free)])
            keep = [k for k in keep if k in largest]
        for k in keep:
            f, view, _ = cands[k]
            face_id = free.pop(0)
            self._lost_recently.pop(face_id, None)  # the slot holds a new face now
            new.append(self._start_track(face_id, f, ts, view))
        timings["post"] += (time.perf_counter() - t0) * 1000
        self._end_part(bool(new))
        return new

    def _new_boxes(self, dets: list[Any]) -> list[np.ndarray]:
        """The detections' calibrated boxes, best first, without invalid boxes and boxes of faces
        already tracked."""
        calib = getattr(self.detector, "calibration", None)
        tracked = [box_of(t.landmarks) for t in self._tracks.values()]
        boxes = []
        for d in sorted(dets, key=lambda d: -float(d.score)):
            b = np.asarray(calib(d.box) if calib is not None else d.box, np.float32)
            if b.shape != (4,) or not np.isfinite(b).all() or not (b[2] > b[0] and b[3] > b[1]):
                continue
            if any(self.checks.same_face(b, tb) for tb in tracked):
                continue
            boxes.append(b)
        return boxes

    def _detect(self, gray: np.ndarray) -> list[Any]:
        """This frame's share of the search, on the copy the schedule says
        (:meth:`SearchSchedule.scale`): the whole search when no face is tracked (no frame waits
        for it), else the next part of the detector's search (one per frame)."""
        parts = max(1, int(self.detector.parts))
        f = self.schedule.scale()
        img = gray
        if f < 1.0:
            img = cv2.resize(gray, (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f))), interpolation=cv2.INTER_AREA)
            f = img.shape[1] / gray.shape[1]
        try:
            if self.schedule.whole_now(bool(self._tracks), parts):
                dets = list(self.detector.detect(img))
            else:
                dets = list(self.detector.detect_part(img, self.schedule.part % parts))
        except Exception as e:  # noqa: BLE001 - a detector failure on one frame is not fatal
            log.warning("detector failed on frame %d: %s: %s", self._index - 1, type(e).__name__, e)
            return []
        if f < 1.0:
            dets = [type(d)(np.asarray(d.box, np.float32) / f, d.score) for d in dets]
        return dets

    def _end_part(self, found: bool) -> None:
        self.schedule.end_part(found, len(self._tracks) < self.config.max_faces, self._index, self.detector.parts)

    # --- 5. the report ---------------------------------------------------------------------
    def _start_track(self, face_id: int, fit: Fit, ts: float, view: View) -> FaceResult:
        """Track an accepted new (or re-acquired) face in slot ``face_id`` with ``view``; its report."""
        c = self.config
        t = _Track(face_id, fit.landmarks, fit.confidence, view)
        if c.smooth:
            t.filter = PoseShapeFilter(c.smooth_min_cutoff, c.smooth_beta, c.smooth_shape_min_cutoff, c.smooth_shape_beta,
                                       c.smooth_d_cutoff, 1.0 / c.default_fps, c.smooth_reset)
        self._tracks[face_id] = t
        return self._report(t, ts, FaceState.DETECTED)

    @staticmethod
    def _report(t: _Track, ts: float, state: FaceState) -> FaceResult:
        pts = t.filter(t.landmarks, ts) if t.filter is not None else t.landmarks
        pts = np.array(pts, np.float32)
        return FaceResult(t.face_id, pts, float(t.confidence), True, box_of(pts), state)

    def _posed(self, faces: tuple[FaceResult, ...], gray: np.ndarray | None, timings: dict[str, float]) -> tuple[FaceResult, ...]:
        """The faces with their head poses (from the reported landmarks; zeros for lost ones)."""
        t0 = time.perf_counter()
        size = (gray.shape[1], gray.shape[0]) if gray is not None else None
        out = tuple(replace(f, pose=self.pose.solve(f.landmarks, size) if f.success and size else HeadPose.failed())
                    for f in faces)
        timings["post"] += (time.perf_counter() - t0) * 1000
        return out

    @staticmethod
    def _lost(t: _Track, confidence: float = 0.0) -> FaceResult:
        """The lost face's last landmarks; ``confidence``: the failed fit's (0 if not sane)."""
        pts = np.array(t.landmarks, np.float32)
        return FaceResult(t.face_id, pts, float(confidence), False, box_of(pts), FaceState.LOST)
