"""Odd frames through the real tracker (real Haar detector, real ONNX Runtime sessions): grey,
16-bit, 4-channel, tiny, 4K with a real face pasted in, black, the face cut by the border.
Every result must be either ``success=0`` or a valid fit, and never carry a NaN or infinite
number; models that emit NaN, inf, huge or out-of-range values must not leak them either.
The finiteness checks are also exercised one layer at a time (landmarker, tracker, smoothing).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.tracker import detect, models
from facetrack.tracker.geometry import template
from facetrack.io.landmarks import read_pts
from facetrack.tracker.landmarker import TIGHT_BOX, Fit, Landmarker
from facetrack.eval.metrics import nme
from facetrack.tracker.tracker import FrameResult, Tracker, TrackerConfig

FACE = "images68/helen_test/30542618_1"  # 640x427, one frontal face
SIZE, HIDDEN = 32, 8


# --- models -------------------------------------------------------------------------------------
def _onnx_model(path: Path, kind: str, landmarks: str, confidence: float | str) -> Path:
    """A tiny real ONNX model of ``kind`` with facetrack metadata (the tests' one stand-in,
    tests/onnx_standin.py).

    ``landmarks``: ``"identity"`` (MDM: returns ``init_shape``; AAN: the template),
    or a constant fill ``"nan"``, ``"inf"``, ``"huge"`` (1e30). ``confidence``: a constant
    (may be out of [0, 1]) or ``"nan"``.
    """
    from tests.onnx_standin import build_onnx_standin

    return build_onnx_standin(path, kind, size=SIZE, hidden=HIDDEN, landmarks=landmarks, confidence=confidence)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


def _landmarker(model_dir: Path, kind: str, landmarks: str = "identity", confidence: float | str = 0.9) -> Landmarker:
    """Opened without the load-time probe, which refuses a model broken on every crop
    (tests/engines/test_model_checks.py): the guards tested here are for a model that goes wrong
    on some crops only, which no probe can see."""
    from facetrack.engines.registry import open_backend

    path = _onnx_model(model_dir / f"{kind}_{landmarks}_{confidence}.onnx", kind, landmarks, confidence)
    return Landmarker(open_backend(path, probe=False))


@pytest.fixture(scope="module")
def face(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(BGR image, (68, 2) ground truth) of a real annotated face."""
    return cv2.imread(str(data_dir / f"{FACE}.jpg")), read_pts(data_dir / f"{FACE}.pts")


# --- frames -------------------------------------------------------------------------------------
def odd_frames(bgr: np.ndarray, gt: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """name -> (frame, ground truth in that frame or None when no whole face is in it)."""
    h, w = bgr.shape[:2]
    big = np.full((2160, 3840, 3), 90, np.uint8)  # 4K, the face scaled 2.5x and pasted off-centre
    s, ox, oy = 2.5, 1900, 500
    face4k = cv2.resize(bgr, (int(w * s), int(h * s)), interpolation=cv2.INTER_CUBIC)
    big[oy:oy + face4k.shape[0], ox:ox + face4k.shape[1]] = face4k
    # the face cut by the left border: shift left so a third of the face's width is outside
    lo, hi = gt.min(0), gt.max(0)
    dx = int(lo[0] + (hi[0] - lo[0]) / 3)
    m = np.float32([[1, 0, -dx], [0, 1, 0]])
    cut = cv2.warpAffine(bgr, m, (w, h), borderValue=(0, 0, 0))
    return {
        "bgr": (bgr, gt),
        "grey": (cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), gt),
        "uint16": (bgr.astype(np.uint16) * 257, gt),
        "bgra": (cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), gt),
        "float01": (bgr.astype(np.float32) / 255, gt),
        "tiny16": (cv2.resize(bgr, (16, 16), interpolation=cv2.INTER_AREA), None),
        "4k": (big, gt * s + [ox, oy]),
        "black": (np.zeros_like(bgr), None),
        "black_grey_4k": (np.zeros((2160, 3840), np.uint8), None),
        "cut_by_border": (cut, None),
        "empty": (np.zeros((0, 0, 3), np.uint8), None),
    }


def check_result(r: FrameResult, shape: tuple[int, ...]) -> None:
    """The contract of every result: finite numbers everywhere, confidence in [0, 1],
    (68, 2) float32 landmarks, successful faces mostly inside the frame."""
    assert np.isfinite(r.timestamp)
    assert all(np.isfinite(v) for v in r.timings.values())
    for f in r.faces:
        assert f.landmarks.shape == (68, 2) and f.landmarks.dtype == np.float32
        assert np.isfinite(f.landmarks).all(), f"non-finite landmarks in {f}"
        assert np.isfinite(np.asarray(f.box)).all()
        assert np.isfinite(f.confidence) and 0.0 <= f.confidence <= 1.0
        assert f.state in ("detected", "tracking", "lost") and f.success == (f.state != "lost")
        if f.success and len(shape) >= 2:
            x, y = f.landmarks[:, 0], f.landmarks[:, 1]
            inside = ((x >= 0) & (x <= shape[1] - 1) & (y >= 0) & (y <= shape[0] - 1)).mean()
            assert inside >= 0.6


# --- the real tracker on odd frames ------------------------------------------------------------
@pytest.mark.parametrize("model", ["mdm", "aan"])
def test_odd_frames_give_valid_or_failed_results(face, model_dir, model):
    bgr, gt = face
    lm = _landmarker(model_dir, model)
    tr = Tracker(TrackerConfig(model=model, detect_every=1), landmarkers={model: lm}, detector=detect.default_detector())
    found = {}
    for name, (frame, truth) in odd_frames(bgr, gt).items():
        tr.reset()
        rs = [tr.process(frame, t / 30) for t in range(2)]  # a detection, then one tracked frame
        for r in rs:
            check_result(r, frame.shape)
        found[name] = [r.success for r in rs]
        if truth is not None:
            for r in rs:  # where the face is whole, what is found is the real face
                assert r.success, name
                assert float(nme(r.faces[0].landmarks, truth)) < 0.35, name
    for name in ("tiny16", "black", "black_grey_4k", "empty"):
        assert found[name] == [False, False], name


def test_face_sliding_out_through_the_border_is_never_a_success_outside(face, model_dir):
    """The face slides out of the frame to the left, each position searched afresh (the
    stand-in model cannot follow motion): found while whole; never NaN, never a success with
    most points outside the frame (Haar's false positives in the background may be found:
    the stand-in model trusts every box, so no claim is made about them)."""
    bgr, gt = face
    lm = _landmarker(model_dir, "mdm")
    tr = Tracker(TrackerConfig(model="mdm", detect_every=1), landmarkers={"mdm": lm}, detector=detect.default_detector())
    h, w = bgr.shape[:2]
    states = []
    for k, dx in enumerate(np.linspace(0, gt[:, 0].max() + 20, 8)):
        frame = cv2.warpAffine(bgr, np.float32([[1, 0, -dx], [0, 1, 0]]), (w, h))
        tr.reset()
        r = tr.process(frame, k / 30)
        check_result(r, frame.shape)  # includes: a success has >= 60 % of its points inside
        states.append(r.success)
    assert states[0], states


@pytest.mark.parametrize("landmarks, confidence", [("nan", 0.9), ("inf", 0.9), ("huge", 0.9), ("identity", "nan")])
@pytest.mark.parametrize("kind", ["mdm", "aan"])
def test_models_emitting_nan_inf_or_huge_values_never_leak(face, model_dir, kind, landmarks, confidence):
    """A model whose outputs are NaN / inf / 1e30 (or NaN confidence) gives failed fits with
    finite landmarks, and the tracker reports no face as found."""
    bgr, gt = face
    lm = _landmarker(model_dir, kind, landmarks, confidence)
    fits = lm.fit_boxes(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), [np.array([200, 100, 400, 300], np.float32)])
    assert not fits[0].valid and fits[0].confidence == 0.0 and np.isfinite(fits[0].landmarks).all()
    tr = Tracker(TrackerConfig(model=kind, detect_every=1), landmarkers={kind: lm}, detector=detect.default_detector())
    for name, (frame, _) in odd_frames(bgr, gt).items():
        r = tr.process(frame)
        check_result(r, frame.shape)
        assert not r.success, name


@pytest.mark.parametrize("confidence", [5.0, -3.0])
def test_out_of_range_confidence_is_clipped(face, model_dir, confidence):
    bgr, gt = face
    lm = _landmarker(model_dir, "mdm", "identity", confidence)
    fit = lm.fit_box(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), np.array([200, 100, 400, 300], np.float32), calibration=TIGHT_BOX)
    assert fit.valid and fit.confidence == (1.0 if confidence > 1 else 0.0)
    tr = Tracker(TrackerConfig(model="mdm", detect_every=1), landmarkers={"mdm": lm}, detector=detect.default_detector())
    r = tr.process(bgr)
    check_result(r, bgr.shape)
    assert r.success == (confidence > 1)


def test_shipped_models_on_odd_frames(face):
    """The trained weights, where shipped: the same contract on every odd frame."""
    try:
        paths = {k: models.resolve_model(k) for k in ("mdm", "aan")}
    except models.ModelNotFoundError as e:
        pytest.skip(f"trained weights not shipped yet: {e}")
    bgr, gt = face
    for model in ("mdm", "aan", "aan+mdm"):
        lms = {k: Landmarker(p) for k, p in paths.items()}
        tr = Tracker(TrackerConfig(model=model, detect_every=1), landmarkers=lms, detector=detect.default_detector())
        for name, (frame, truth) in odd_frames(bgr, gt).items():
            tr.reset()
            for t in range(2):
                r = tr.process(frame, t / 30)
                check_result(r, frame.shape)
                if truth is not None and r.success:
                    assert float(nme(r.faces[0].landmarks, truth)) < 0.2, (model, name)


# --- each layer's finiteness check on its own ----------------------------------------------------
class _RawLandmarker:
    """Bypasses Landmarker's own checks: returns fits with ``fill`` in them marked valid, to
    prove the tracker checks every fit itself."""

    kind = "mdm"

    def __init__(self, fill: float | None, confidence: float = 0.9) -> None:
        self.fill, self.confidence = fill, confidence

    def _fits(self, n: int, like: list[np.ndarray]) -> list[Fit]:
        out = []
        for s in like:
            pts = np.array(s, np.float32)
            if self.fill is not None:
                pts[::3] = self.fill  # a third of the points broken
            out.append(Fit(pts, self.confidence, True))
        return out

    def fit_boxes(self, gray, boxes, timings=None):
        self.box_calls = getattr(self, "box_calls", 0) + 1
        # a plausible face in each box, then broken like the tracking fits: every third point
        return self._fits(len(boxes), [template(200) * (np.asarray(b[2:]) - b[:2]) / 200 + b[:2] for b in boxes])

    def fit_shapes(self, gray, shapes, timings=None, init="shape", starts=None):
        return self._fits(len(shapes), list(shapes))


@pytest.mark.parametrize("fill, confidence", [(np.nan, 0.9), (np.inf, 0.9), (-np.inf, 0.9), (None, np.inf), (None, np.nan)])
def test_tracker_rejects_non_finite_fits_that_claim_to_be_valid(face, model_dir, fill, confidence):
    """A face found by the real (identity) model, then a tracking model returning non-finite
    points (or a non-finite confidence) marked valid: the face is lost, the reported landmarks
    are the last finite ones."""
    bgr, _ = face
    good = _landmarker(model_dir, "mdm")
    bad = _RawLandmarker(fill, confidence)
    tr = Tracker(TrackerConfig(model="aan+mdm", detect_every=100), landmarkers={"aan": good, "mdm": good},
                 detector=detect.default_detector())
    r0 = tr.process(bgr, 0.0)
    assert r0.success
    tr.chain = models.FitChain([bad, bad])  # the models go bad, and the detector finds nothing more
    tr.detector = type("NoFaces", (), {"calibration": None, "parts": 1, "detect": staticmethod(lambda gray: []),
                                       "detect_part": staticmethod(lambda gray, part: [])})()
    r1 = tr.process(bgr, 1 / 30)
    check_result(r1, bgr.shape)
    assert not r1.success and r1.faces[0].state == "lost"
    np.testing.assert_array_equal(r1.faces[0].landmarks, r0.faces[0].landmarks)


@pytest.mark.parametrize("stamps", [
    [0.0, 0.0, 0.0, 0.0],  # repeated
    [1.0, 0.5, 0.2, 0.1],  # going backwards
    [0.0, 1e-300, 2e-300, 3e-300],  # vanishing steps
    [float("nan"), float("inf"), -float("inf"), float("nan")],  # not numbers
    [0.0, 1e300, 2e300, 3e300],  # huge
])
def test_smoothing_with_odd_timestamps_stays_finite(face, model_dir, stamps):
    bgr, gt = face
    lm = _landmarker(model_dir, "mdm")
    tr = Tracker(TrackerConfig(model="mdm", detect_every=1, smooth=True), landmarkers={"mdm": lm},
                 detector=detect.default_detector())
    h, w = bgr.shape[:2]
    for k, ts in enumerate(stamps):
        frame = cv2.warpAffine(bgr, np.float32([[1, 0, 3 * k], [0, 1, -2 * k]]), (w, h), borderMode=cv2.BORDER_REPLICATE)
        r = tr.process(frame, ts)
        check_result(r, frame.shape)
        assert r.success


class _FaceEverywhere:
    """A detector stand-in that reports one face box in the middle of any frame."""

    calibration = None
    parts = 1

    def detect(self, gray):
        h, w = gray.shape
        return [detect.Detection(np.array([w / 4, h / 4, 3 * w / 4, 3 * h / 4], np.float32), 1.0)]

    def detect_part(self, gray, part):
        return self.detect(gray)


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_detection_path_rejects_non_finite_fits_that_claim_to_be_valid(face, fill):
    """New faces: every model of the chain returns non-finite points marked valid at high
    confidence; no face is accepted and nothing non-finite reaches the result."""
    bgr, _ = face
    bad = _RawLandmarker(fill)
    for model, lms in (("mdm", {"mdm": bad}), ("aan+mdm", {"aan": bad, "mdm": bad})):
        tr = Tracker(TrackerConfig(model=model, detect_every=1), landmarkers=lms, detector=_FaceEverywhere())
        for _ in range(3):
            r = tr.process(bgr)
            check_result(r, bgr.shape)
            assert not r.faces
        assert bad.box_calls >= 1  # the broken fits were made and refused, not never asked for


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_writer_never_writes_non_finite_landmarks(tmp_path, fill):
    """A face result that claims success with non-finite landmarks is written as success=0
    with the last finite landmarks of that face."""
    from facetrack.io.output import open_writer
    from facetrack.tracker.tracker import FaceResult

    good = np.full((68, 2), 5.0, np.float32)
    bad = good.copy()
    bad[10] = fill
    box = np.zeros(4, np.float32)
    out = tmp_path / "o.csv"
    with open_writer(out, "csv") as w:
        w.write_frame(1, 0.0, [FaceResult(0, good, 0.9, True, box, "detected")])
        w.write_frame(2, 0.1, [FaceResult(0, bad, 0.9, True, box, "tracking")])
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and "nan" not in lines[2].lower() and "inf" not in lines[2].lower()
    second = lines[2].split(",")
    assert second[4].strip() == "0" and lines[1].split(",")[5:] == second[5:]
