"""Face detection for (re)initialising the tracker, with no model download.

A :class:`FaceDetector` returns face boxes in image pixels, best first; its
:attr:`~FaceDetector.calibration` maps its boxes to an estimate of the tight box of the 68
landmarks (:class:`facetrack.tracker.geometry.BoxCalibration`), so ``crop_from_box(calibration(box))``
gives the crop the models were trained on. Calibrations are fitted by ``facetrack/train/loops/calibrate.py``
on training faces and stored in ``facetrack/tracker/data/calibration.json``.

Detectors: OpenCV's Haar cascades (shipped inside ``opencv-python`` 4.x, ``cv2.data.haarcascades``;
frontal cascades, optionally the profile cascade on the image and its mirror) run on a
downscaled copy; dlib's HOG detector with the ``dlib`` extra (``dlib-bin``); the project's own
CNN (:mod:`facetrack.tracker.detect_cnn`); several of them as one (:class:`CombinedDetector`). A search can be
spread over frames, one part per frame (:class:`FaceDetector`). ``default_detector()`` returns
the one chosen by ``facetrack/bench/detectors.py`` (recall and false detections on real frames,
ms per search; table in docs/DETECTORS.md).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from facetrack.tracker.geometry import BoxCalibration, box_iou

log = logging.getLogger(__name__)

#: detector name used by ``default_detector()``, chosen by ``facetrack/bench/detectors.py``
#: (docs/DETECTORS.md): the cascade with the best recall of those that need no extra package,
#: with the project's CNN beside it for the faces the cascade misses (large, cut by the frame's
#: edge, turned up): the cascade's recall and false detections on held-out frames, more faces
#: found on images68 and pseudo_dlib, for the cascade's CPU per search. ``haar-alt2-fast`` (1.2
#: pyramid step) costs 57 % of the cascade but missed small faces the tests and the Hamilton
#: clip hold (a far face, a face in a 4K frame); the tracker's back-off searches save more.
DEFAULT_DETECTOR = "haar-alt2+cnn"

#: detector name used by ``still_detector()`` for still images, where nothing waits for the next
#: frame: the default with the CNN also searching the image at long sides 640 and 800
#: (:data:`WIDE_SIDES`). The network saw frames of 160-640 px; a face of a fifth of a large photo's
#: width is under 100 px at the default's 480 and scores below the 0.6 it needs beside the
#: cascade. Chosen on stills no test face is in (docs/DETECTORS.md, "Still images"): more faces
#: found on images68's training pool and frames_v2's training photos, no more false faces
#: reported, the same on held-out frames, for 14 ms more CPU per photo (97 -> 111 ms median).
STILL_DETECTOR = "haar-alt2+cnn-wide"

#: detector name for video and cameras when more than one face is wanted (``--max-faces`` over 1;
#: :func:`video_detector_name`): the default with the profile cascade beside it, on the frame and
#: its mirror (:data:`DETECTORS` ``"haar-profile"``), which finds faces turned 45-90 degrees the
#: others miss (the Hamilton clip's audience). A run for one face keeps the face it has (turned
#: faces pass to the tracker's turned view) and searches only while it has none, where the profile
#: passes would cost more CPU per frame than the whole of MediaPipe's tracking (docs/DETECTORS.md);
#: a run for several faces searches while it tracks, a part per frame.
GROUP_DETECTOR = "haar-alt2+cnn+profile"

#: the CNN's long sides (px) for still images (:data:`STILL_DETECTOR`)
WIDE_SIDES = (320, 480, 640, 800)


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` ``(x0, y0, x1, y1)`` float32 image pixels, ``score`` (larger is
    surer; the scale depends on the detector)."""

    box: np.ndarray
    score: float


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in a grey frame, in one call or spread over several frames.

    A full search is split into ``parts`` (at least 1) independent parts; the union of
    ``detect_part(gray, k)`` for ``k`` in ``range(parts)``, merged, is what ``detect(gray)``
    returns. The tracker runs one part per frame, so a frame never waits for a whole search.
    """

    name: str
    calibration: BoxCalibration
    parts: int

    def detect(self, gray: np.ndarray) -> list[Detection]:
        """``gray``: ``uint8`` ``(H, W)``. Returns detections sorted best first."""
        ...

    def detect_part(self, gray: np.ndarray, part: int) -> list[Detection]:
        """Part ``part`` (``0 <= part < parts``) of a search of ``gray``; best first."""
        ...


# ---- box calibration ----------------------------------------------------------------------
def _calibration_path() -> Path:
    return Path(str(resources.files("facetrack.tracker") / "data" / "calibration.json"))


@lru_cache(maxsize=4)
def _load_calibrations(path: str) -> dict[str, BoxCalibration]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        sources = data["sources"]
        return {k: BoxCalibration(float(v["sx"]), float(v["sy"]), float(v["dx"]), float(v["dy"])) for k, v in sources.items()}
    except FileNotFoundError:
        log.warning("%s: no box calibration file (run facetrack/train/loops/calibrate.py); using identity calibrations", p)
        return {}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{p}: not a box calibration file ({e!r})") from None


def box_calibration(source: str, path: str | Path | None = None) -> BoxCalibration:
    """The calibration of a box source: ``"detector:<name>"``, ``"300w"`` (the 300-W / MDM
    initialisation boxes) or ``"gt"`` (a tight landmark box: identity).

    Read from ``facetrack/tracker/data/calibration.json`` (or ``path``). Raises ``ValueError`` naming the
    known sources for an unknown one; a detector with no fitted entry gets the identity
    (logged), so a new detector still runs before it is calibrated.
    """
    if source == "gt":
        return BoxCalibration()
    table = _load_calibrations(str(path or _calibration_path()))
    if source in table:
        return table[source]
    if source.startswith("detector:"):
        log.warning("no box calibration for %s; using the identity (run facetrack/train/loops/calibrate.py)", source)
        return BoxCalibration()
    raise ValueError(f"unknown box source {source!r} (known: gt, {', '.join(sorted(table)) or 'none fitted'})")


# ---- helpers -------------------------------------------------------------------------------
def merge_detections(dets: list[Detection], iou: float = 0.3) -> list[Detection]:
    """Greedy merge of overlapping detections (best score first): a box overlapping a kept one
    by more than ``iou``, or lying mostly inside it, is dropped. Returns best first."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: (-d.score, -float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))):
        area = float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        dup = False
        for k in kept:
            ov = box_iou(d.box, k.box)
            iw = max(0.0, min(d.box[2], k.box[2]) - max(d.box[0], k.box[0]))
            ih = max(0.0, min(d.box[3], k.box[3]) - max(d.box[1], k.box[1]))
            if ov > iou or (area > 0 and iw * ih / area > 0.7):
                dup = True
                break
        if not dup:
            kept.append(d)
    return kept


def _check_gray(gray: np.ndarray) -> np.ndarray:
    g = np.asarray(gray)
    if g.ndim != 2 or g.dtype != np.uint8:
        raise ValueError(f"detect() needs a uint8 (H, W) grey image, got {g.dtype} {g.shape}")
    return g


def _downscale(gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``gray`` shrunk (area filter) so its long side is at most ``max_side``; returns the
    image and the factor ``f`` (small = f * original)."""
    h, w = gray.shape
    f = min(1.0, max_side / max(h, w))
    if f >= 1.0:
        return gray, 1.0
    small = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return small, small.shape[1] / w


# ---- OpenCV Haar cascades ------------------------------------------------------------------
HAAR_FILES: dict[str, str] = {
    "default": "haarcascade_frontalface_default.xml",
    "alt": "haarcascade_frontalface_alt.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
    "profile": "haarcascade_profileface.xml",
}


def _load_cascade(key: str) -> "cv2.CascadeClassifier":
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise RuntimeError(f"OpenCV {cv2.__version__} has no Haar cascades (facetrack needs opencv-python 4.x)")
    path = Path(cv2.data.haarcascades) / HAAR_FILES[key]
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"{path}: cannot load the Haar cascade (is opencv-python 4.x installed?)")
    return cascade


class HaarDetector:
    """OpenCV Haar cascade(s) on a downscaled, histogram-equalised copy of the frame.

    ``frontal``: cascade key(s) of :data:`HAAR_FILES`; ``profile``: also run the profile
    cascade on the image and on its mirror (the cascade knows faces turned one way only);
    ``"fallback"``: only when the frontal cascades find nothing (in :meth:`detect`; as parts
    the profile passes always run). Each cascade pass is one part of a search
    (:class:`FaceDetector`). ``max_side``: the long side of the copy searched (px);
    ``min_face``: smallest face as a fraction of the copy's short side (at least 20 px, the
    cascades' window); ``min_neighbors``: OpenCV's grouping threshold; ``scale_factor``: the
    pyramid step (1.2 costs about 60 % of 1.1). Score: the number of raw detections grouped
    into the box (OpenCV's ``numDetections``).
    """

    def __init__(self, frontal: tuple[str, ...] = ("alt2",), profile: bool | str = False, max_side: int = 640,
                 min_face: float = 1 / 12, min_neighbors: int = 3, scale_factor: float = 1.1, name: str | None = None,
                 calibration: BoxCalibration | None = None) -> None:
        if profile not in (True, False, "fallback"):
            raise ValueError(f"profile must be True, False or 'fallback', not {profile!r}")
        if not frontal and profile is not True:
            raise ValueError("a Haar detector without a frontal cascade needs profile=True")
        self.name = name or "haar-" + "+".join(frontal) + {True: "+profile", False: "", "fallback": "+profile-fallback"}[profile]
        self._profile_mode = profile
        self._passes: list[tuple["cv2.CascadeClassifier", bool]] = [(_load_cascade(k), False) for k in frontal]
        self._n_frontal = len(self._passes)
        if profile:
            prof = _load_cascade("profile")
            self._passes += [(prof, False), (prof, True)]
        self.parts = len(self._passes)
        self.max_side, self.min_face = int(max_side), float(min_face)
        self.min_neighbors, self.scale_factor = int(min_neighbors), float(scale_factor)
        if calibration is None:
            # the boxes are the frontal cascade's kind of square window (the profile cascade's too):
            # without a calibration of its own, a combination takes its first frontal cascade's (the
            # profile cascade alone, alt2's: the same kind of square window)
            own, first = f"detector:{self.name}", f"detector:haar-{frontal[0] if frontal else 'alt2'}"
            calibration = box_calibration(own if own in _load_calibrations(str(_calibration_path())) else first)
        self.calibration = calibration

    def _pass(self, k: int, small: np.ndarray, f: float) -> list[Detection]:
        cascade, mirrored = self._passes[k]
        img = np.ascontiguousarray(small[:, ::-1]) if mirrored else small
        min_px = max(20, int(round(min(small.shape) * self.min_face)))
        rects, counts = cascade.detectMultiScale2(img, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                                  minSize=(min_px, min_px))
        w = small.shape[1]
        dets = []
        for (x, y, rw, rh), c in zip(np.asarray(rects, np.float64).reshape(-1, 4), np.asarray(counts, np.float64).reshape(-1)):
            x0 = (w - x - rw) if mirrored else x
            dets.append(Detection((np.array([x0, y, x0 + rw, y + rh], np.float64) / f).astype(np.float32), float(c)))
        return dets

    def detect_part(self, gray: np.ndarray, part: int) -> list[Detection]:
        """One cascade pass (``part`` in ``range(self.parts)``) over ``gray``; best first."""
        if not 0 <= part < self.parts:
            raise ValueError(f"{self.name}: part {part} out of range 0..{self.parts - 1}")
        small, f = _downscale(_check_gray(gray), self.max_side)
        return merge_detections(self._pass(part, cv2.equalizeHist(small), f))

    def detect(self, gray: np.ndarray) -> list[Detection]:
        """Faces in ``gray`` (``uint8`` ``(H, W)``), boxes in its pixels, best first."""
        small, f = _downscale(_check_gray(gray), self.max_side)
        small = cv2.equalizeHist(small)
        dets: list[Detection] = []
        for k in range(self._n_frontal):
            dets += self._pass(k, small, f)
        if self._profile_mode is True or (self._profile_mode == "fallback" and not dets):
            for k in range(self._n_frontal, self.parts):
                dets += self._pass(k, small, f)
        return merge_detections(dets)


# ---- dlib HOG (optional) --------------------------------------------------------------------
class DetectorUnavailableError(RuntimeError):
    """A known detector whose package is not installed; the message says what to install."""


def dlib_available() -> bool:
    """Whether ``dlib`` is importable (it is not a facetrack dependency: ``pip install
    'facetrack[dlib]'`` installs the prebuilt ``dlib-bin`` wheel)."""
    import importlib.util

    return importlib.util.find_spec("dlib") is not None


class DlibHogDetector:
    """dlib's HOG + linear SVM face detector (five filters: frontal, turned left and right up
    to about 45 degrees, tilted), on a copy with long side ``max_side`` (upsampled once when
    the copy is small). One part per search. Score: dlib's detection score.
    Raises :class:`DetectorUnavailableError` when ``dlib`` is not installed."""

    parts = 1

    def __init__(self, max_side: int = 640, name: str = "dlib-hog", calibration: BoxCalibration | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise DetectorUnavailableError(f"face detector {name!r} needs dlib: pip install 'facetrack[dlib]' "
                                           "(the prebuilt dlib-bin wheel)") from None
        self.name = name
        self.max_side = int(max_side)
        self._det = dlib.get_frontal_face_detector()
        self.calibration = calibration if calibration is not None else box_calibration(f"detector:{self.name}")

    def detect(self, gray: np.ndarray) -> list[Detection]:
        """Faces in ``gray`` (``uint8`` ``(H, W)``), boxes in its pixels, best first."""
        g = _check_gray(gray)
        small, f = _downscale(g, self.max_side)
        upsample = 1 if max(small.shape) < 480 else 0
        rects, scores, _ = self._det.run(np.ascontiguousarray(small), upsample, 0.0)
        dets = [Detection((np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64) / f).astype(np.float32),
                          float(s)) for r, s in zip(rects, scores)]
        return merge_detections(dets)

    def detect_part(self, gray: np.ndarray, part: int) -> list[Detection]:
        """The whole search (one part)."""
        if part != 0:
            raise ValueError(f"{self.name}: part {part} out of range 0..0")
        return self.detect(gray)


# ---- several detectors as one ----------------------------------------------------------------
class CombinedDetector:
    """The faces that any of ``members`` finds: each member's search parts are parts of this
    search (first member's first). The detectors miss different faces: the project's CNN finds
    faces filling the frame, cut by its edge or turned up that the Haar cascade misses, and the
    cascade finds small faces the CNN misses (docs/DETECTORS.md).

    Boxes: a later member's boxes are mapped into the first member's convention through their
    calibrations (to the landmark box, then back through the first's), so :attr:`calibration`
    is the first member's unless ``calibration`` is given (the benches pass the identity to
    see the raw boxes). Where members find the same face (overlap as in
    :func:`merge_detections`) the earlier member's box is kept. Scores: member ``k`` of ``n``
    scores in ``(n - k - 1, n - k)`` (its own score squashed into ``(0, 1)``), so a sort by
    score ranks the first member's faces first, each member's by its own score.
    """

    def __init__(self, members: Sequence[FaceDetector], name: str | None = None,
                 calibration: BoxCalibration | None = None) -> None:
        if not members:
            raise ValueError("a combined detector needs at least one member")
        self.members = list(members)
        self.name = name or "+".join(m.name for m in self.members)
        self._base = self.members[0].calibration
        self.calibration = calibration if calibration is not None else self._base
        self._member_parts = [max(1, int(m.parts)) for m in self.members]
        self.parts = sum(self._member_parts)

    def _mapped(self, k: int, dets: Sequence[Detection]) -> list[Detection]:
        n, own = len(self.members), self.members[k].calibration
        out = []
        for d in dets:
            box = d.box if k == 0 else self._base.invert(own(d.box))
            s = float(d.score)
            out.append(Detection(np.asarray(box, np.float32), (n - k - 1) + 0.5 + 0.5 * s / (1.0 + abs(s))))
        return out

    def detect_part(self, gray: np.ndarray, part: int) -> list[Detection]:
        """Part ``part`` of the search: the next part of one member's search; best first."""
        if not 0 <= part < self.parts:
            raise ValueError(f"{self.name}: part {part} out of range 0..{self.parts - 1}")
        for k, (m, parts) in enumerate(zip(self.members, self._member_parts)):
            if part < parts:
                return self._mapped(k, m.detect_part(gray, part))
            part -= parts
        raise AssertionError("unreachable: part checked against self.parts")

    def detect(self, gray: np.ndarray) -> list[Detection]:
        """Every member's faces, boxes in the first member's convention, best first."""
        dets: list[Detection] = []
        for k, m in enumerate(self.members):
            dets += self._mapped(k, m.detect(gray))
        return merge_detections(dets)


#: detector name -> factory; facetrack/bench/detectors.py measures every entry.
DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "haar-default": lambda **kw: HaarDetector(("default",), min_neighbors=5, **kw),
    "haar-alt": lambda **kw: HaarDetector(("alt",), **kw),
    "haar-alt2": lambda **kw: HaarDetector(("alt2",), **kw),
    "haar-alt2-fast": lambda **kw: HaarDetector(("alt2",), scale_factor=1.2, name="haar-alt2-fast", **kw),
    "haar-alt2+profile": lambda **kw: HaarDetector(("alt2",), profile=True, **kw),
    "haar-alt2+profile-fast": lambda **kw: HaarDetector(("alt2",), profile=True, scale_factor=1.2, name="haar-alt2+profile-fast", **kw),
    "haar-alt2+profile-fallback": lambda **kw: HaarDetector(("alt2",), profile="fallback", **kw),
    "haar-default+alt2+profile": lambda **kw: HaarDetector(("default", "alt2"), profile=True, **kw),
    "dlib-hog": lambda **kw: DlibHogDetector(**kw),
    # the project's own CNN (facetrack/train/loops/face_detector.py), ONNX Runtime; imported when asked for.
    # Sides and thresholds chosen on frames_v2 training groups (docs/DETECTORS.md)
    "cnn": lambda **kw: _cnn_detector(sides=(320, 480), threshold=0.45, name="cnn", **kw),
    "cnn-320": lambda **kw: _cnn_detector(sides=(320,), threshold=0.45, name="cnn-320", **kw),
    "cnn-640": lambda **kw: _cnn_detector(sides=(320, 640), threshold=0.5, name="cnn-640", **kw),
    "cnn-wide": lambda **kw: _cnn_detector(sides=WIDE_SIDES, threshold=0.45, name="cnn-wide", **kw),
    # the cascade and the CNN miss different faces (docs/DETECTORS.md)
    "haar-alt2+cnn": lambda **kw: CombinedDetector([make_detector("haar-alt2"), _cnn_beside_cascade()],
                                                   name="haar-alt2+cnn", **kw),
    # still images: the CNN also at long sides 640 and 800 (see STILL_DETECTOR)
    "haar-alt2+cnn-wide": lambda **kw: CombinedDetector([make_detector("haar-alt2"), _cnn_beside_cascade(WIDE_SIDES)],
                                                        name="haar-alt2+cnn-wide", **kw),
    "cnn+haar-alt2": lambda **kw: CombinedDetector([_cnn_beside_cascade(), make_detector("haar-alt2")],
                                                   name="cnn+haar-alt2", **kw),
    # turned faces: the profile cascade on the frame and its mirror, looking for faces of at least an
    # eighth of the frame's height in a 480-px copy, where a face of the Hamilton clip's audience
    # shot is found as often as at 640 px and at half the CPU (docs/DETECTORS.md)
    "haar-profile": lambda **kw: HaarDetector((), profile=True, max_side=480, min_face=1 / 8, min_neighbors=2,
                                              name="haar-profile", **kw),
    "haar-alt2+cnn+profile": lambda **kw: CombinedDetector(
        [make_detector("haar-alt2"), _cnn_beside_cascade(), make_detector("haar-profile")], name="haar-alt2+cnn+profile", **kw),
}


def _cnn_detector(**kw: object) -> FaceDetector:
    from facetrack.tracker.detect_cnn import CnnFaceDetector

    return CnnFaceDetector(**kw)  # type: ignore[arg-type]


def _cnn_beside_cascade(sides: tuple[int, ...] = (320, 480)) -> FaceDetector:
    """The CNN as a member beside the Haar cascade. It needs a surer score there: 0.6, the lowest
    threshold that added no false detection to the cascade's on frames_v2's training groups and
    none on 40 frames of noise (its own 0.45 added 1 per 100 frames)."""
    return _cnn_detector(sides=sides, threshold=0.6, name="cnn-0.6")


def make_detector(name: str, **options: object) -> FaceDetector:
    """A detector of :data:`DETECTORS` by name; ``ValueError`` listing the names for an unknown
    one, :class:`DetectorUnavailableError` (saying what to install) for a known one whose
    package is missing."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown face detector {name!r} (known: {', '.join(DETECTORS)})") from None
    return factory(**options)


def video_detector_name(max_faces: int = 1) -> str:
    """The detector video and cameras are searched with for up to ``max_faces`` faces:
    :data:`DEFAULT_DETECTOR` for one, :data:`GROUP_DETECTOR` for more."""
    return DEFAULT_DETECTOR if max_faces <= 1 else GROUP_DETECTOR


def default_detector(max_faces: int = 1) -> FaceDetector:
    """The detector the tracker uses to (re)find up to ``max_faces`` faces
    (:func:`video_detector_name`)."""
    return make_detector(video_detector_name(max_faces))


def still_detector() -> FaceDetector:
    """The detector for still images: :data:`STILL_DETECTOR`."""
    return make_detector(STILL_DETECTOR)
