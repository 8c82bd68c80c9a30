"""The tracker's settings (:class:`TrackerConfig`): models, thresholds, the search schedule,
smoothing. The product's defaults per kind of input are :mod:`facetrack.tracker.presets`; a bare
``TrackerConfig()`` is the plain tracker those presets start from."""
from __future__ import annotations

from dataclasses import dataclass

from facetrack.tracker.pose import Camera


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
    smooths the fits' own errors without lagging behind the head. ``smooth_reset``: a fit
    farther than this (face sizes) from where the moved filter expects the face restarts the
    filter from the fit (motion the flow missed: blur, fast turns; 0: never).
    ``track_init``: how MDM starts on a tracked face. Both crop around the previous landmarks
    (similarity-aligned); ``"template"`` starts MDM from the template in that crop,
    ``"shape"`` from the previous landmarks (MDM's 300VW protocol), first projected onto the
    first ``shape_modes`` modes of the shipped shape model (:mod:`facetrack.tracker.shape_model`;
    ``None``: the number chosen on held-out sequences and stored with it; 0: the previous
    landmarks as they are). The template start is the default: it is as accurate or more
    (docs/TRACKING.md, "MDM's start shape when tracking").
    ``search_backoff``: while searches find nothing new, the frames between them double from
    ``detect_every`` up to this (or ``detect_every`` if larger); a cut or a lost face starts
    again at ``detect_every``. A search costs more than tracking a face, and most frames
    without a new face stay so.
    ``search_after_loss``: for this many frames after a face is lost (not at a cut, and not
    re-acquired in the same frame) searches do not back off (in the half-size copy when the
    lost faces were large): a face lost at a head turn is usually still there, and is found again
    when it turns back (figures: docs/TRACKING.md).
    ``backoff_scale``: searches at a longer interval than ``detect_every`` (after one that
    found nothing), the search at a cut and the search after losing only large faces look at
    the frame scaled by this (1: full size, and no second search after a cut).
    ``coarse_min_face``: after a loss, the search looks at the ``backoff_scale`` copy when every
    lost face is at least this large (geometric-mean side of its landmarks' box, as a fraction
    of the frame's short side), else at the full frame (why this size: docs/DETECTORS.md).
    ``reacquire_frames``: for this many frames after a face is lost (not at a cut), the tracking
    model looks for it around its last landmarks (a few scales and in-plane angles).
    ``scale_check``: a new face is accepted only when its view's chain finds the same face again
    from the fit's box grown 1.5x and (main view) shrunk 0.7x (:func:`facetrack.tracker.acquire.scale_check`):
    a fit on a part of a face, or of a scale the face does not have, is refused (issue 30). On in
    the product's presets (:mod:`facetrack.tracker.presets`); off here, for models that only
    refine a box (test stand-ins) and cannot find a face again from another box.
    ``max_refit_shift``: a new face is accepted only when refitting it in the crop aligned on
    its first fit moves the landmarks by at most this (mean, in outer-eye distances; for a turned
    face, whose eye distance shrinks, in those of a frontal face of its size) and the
    refit's confidence passes ``confidence_threshold``.
    ``flip``: every fit also runs on the mirrored crop and the two are averaged (the landmarkers
    the tracker opens; see :class:`facetrack.tracker.landmarker.Landmarker`): less error and
    flicker for twice the model's CPU. The ``image`` preset turns it on.
    ``turned_model``: a second model choice (as ``model``) for turned faces, trained with
    synthetic head turns (the shipped ``aan-turned+mdm-turned``; ``None``: none). A new face that
    ``model`` rejects gets a last chance from it, with the same checks; a face it accepted is
    tracked, refitted and looked for again by it (a view, as OpenFace's multi-view models).
    Faces ``model`` accepts never reach it, so frontal faces are fitted as without it.
    ``pose``: each reported face gets its head pose from its reported (smoothed) landmarks
    (:mod:`facetrack.tracker.pose`, under 0.2 ms a face); ``camera``: the intrinsics it assumes
    (``None``: OpenFace's defaults for each frame's size).
    """

    model: str = "mdm"
    backend: str = "auto"
    threads: int | None = None
    max_faces: int = 1
    smooth: bool = False
    smooth_min_cutoff: float = 1.0
    smooth_beta: float = 10.0  # tuned by flicker on moved faces (python -m facetrack.bench.smoothing); 40 without smooth_flow
    smooth_d_cutoff: float = 1.0
    # the shape (expression) apart from the pose (PoseShapeFilter); 8 Hz, not 1: on real talking
    # faces a slower shape filter lags the mouth and a turning head (python -m facetrack.bench.fast_motion)
    smooth_shape_min_cutoff: float = 8.0
    smooth_shape_beta: float = 10.0
    smooth_flow: bool = True
    smooth_reset: float = 0.02  # face sizes; 0: never (see PoseShapeFilter.reset_at; chosen by bench.fast_motion)
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
    scale_check: bool = False
    flip: bool = False
    turned_model: str | None = None
    pose: bool = True
    camera: Camera | None = None

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
