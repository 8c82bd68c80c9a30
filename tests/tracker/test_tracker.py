"""Landmarker feeds, shipped-model resolution, the tracker's state machine (with small fakes),
cut detection on a real video, robustness to odd frames, and tracking a real face."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.engines import names
from facetrack.tracker import models
from facetrack.tracker.geometry import BoxCalibration, apply_affine, box_of, similarity_matrix, template
from facetrack.io.landmarks import read_pts
from facetrack.tracker.landmarker import TIGHT_BOX, Fit, Landmarker
from facetrack.tracker.markup import mean_shape
from facetrack.eval.metrics import nme
from facetrack.tracker.tracker import CutDetector, Tracker, TrackerConfig

VIDEO = "videos_unlabelled/short_hamilton_clip.mp4"


# --- fakes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Det:
    box: np.ndarray
    score: float


def shape_in_box(box) -> np.ndarray:
    """The mean shape stretched so that its tight box is ``box``."""
    ms = np.asarray(mean_shape(), np.float64)
    lo, hi = ms.min(0), ms.max(0)
    x0, y0, x1, y1 = (float(v) for v in box)
    return ((ms - lo) / (hi - lo) * [x1 - x0, y1 - y0] + [x0, y0]).astype(np.float32)


class BlobLandmarker:
    """Finds a bright square (the "face") near the given box/shape; confidence = how much of
    the found box is bright (0 when there is none) times ``gain``."""

    def __init__(self, kind: str = "mdm", gain: float = 1.0) -> None:
        self.kind, self.gain, self.calls, self.inits, self.starts = kind, gain, [], [], []

    def _fit(self, gray, box) -> Fit:
        x0, y0, x1, y1 = (float(v) for v in box)
        w, h = x1 - x0, y1 - y0
        H, W = gray.shape
        a, b = int(max(0, x0 - w / 2)), int(max(0, y0 - h / 2))
        c, d = int(min(W, x1 + w / 2)), int(min(H, y1 + h / 2))
        roi = gray[b:d, a:c] > 180
        if roi.sum() < 16:
            return Fit(shape_in_box(box), 0.0)
        ys, xs = np.nonzero(roi)
        bb = (xs.min() + a, ys.min() + b, xs.max() + a + 1, ys.max() + b + 1)
        fill = roi[ys.min():ys.max() + 1, xs.min():xs.max() + 1].mean()
        return Fit(shape_in_box(bb), float(fill) * self.gain)

    def fit_boxes(self, gray, boxes, timings=None):
        self.calls.append(("boxes", len(boxes)))
        return [self._fit(gray, b) for b in boxes]

    def fit_shapes(self, gray, shapes, timings=None, init="shape", starts=None):
        self.calls.append(("shapes", len(shapes)))
        self.inits.append(init)
        self.starts.append((np.array(shapes), None if starts is None else np.array(starts)))
        return [self._fit(gray, box_of(s)) for s in shapes]


class DriftLandmarker(BlobLandmarker):
    """Tracks (``init="shape"``) by moving the shape by ``shift`` px and scaling it by ``scale``
    about its centre; from the template (a new face's shape check, re-acquisition) it finds
    the blob like :class:`BlobLandmarker`. Use it with ``track_init="shape"``."""

    def __init__(self, shift=(0.0, 0.0), scale=1.0) -> None:
        super().__init__()
        self.shift, self.scale = np.asarray(shift, np.float32), scale

    def fit_shapes(self, gray, shapes, timings=None, init="shape", starts=None):
        if init == "template":
            return super().fit_shapes(gray, shapes, timings, init)
        self.calls.append(("shapes", len(shapes)))
        out = []
        for s in shapes:
            c = s.mean(0)
            out.append(Fit(((s - c) * self.scale + c + self.shift).astype(np.float32), 1.0))
        return out


class BlobDetector:
    calibration = BoxCalibration()
    parts = 1

    def __init__(self) -> None:
        self.runs = 0

    def detect_part(self, gray, part):
        assert part == 0
        return self.detect(gray)

    def detect(self, gray):
        self.runs += 1
        n, _, stats, _ = cv2.connectedComponentsWithStats((gray > 180).astype(np.uint8))
        return [Det(np.array([x, y, x + w, y + h], np.float32), float(area))
                for x, y, w, h, area in stats[1:] if area > 50]


def scene(blobs=((100, 80),), side=60, hw=(240, 320)) -> np.ndarray:
    """A textured background with bright squares whose top-left corners are ``blobs``."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]]
    img = (40 + 0.2 * xx + 0.1 * yy + rng.normal(0, 5, hw)).clip(0, 150).astype(np.uint8)
    for x, y in blobs:
        img[y:y + side, x:x + side] = 230
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def make_tracker(lm=None, det=None, **cfg) -> tuple[Tracker, BlobLandmarker, BlobDetector]:
    lm = lm or BlobLandmarker()
    det = det or BlobDetector()
    return Tracker(TrackerConfig(model="mdm", **cfg), landmarkers={"mdm": lm}, detector=det), lm, det


# --- Landmarker --------------------------------------------------------------------------------
class FakeBackend:
    """Records feeds; MDM kind returns the init shape (an identity refiner), AAN the template."""

    def __init__(self, kind="mdm", size=64, hidden=5, out=None) -> None:
        self.kind, self.size = kind, size
        self.metadata = {names.KIND: kind, names.INPUT_SIZE: str(size), names.HIDDEN_SIZE: str(hidden if kind == "mdm" else 0),
                         names.ARCH: "mdm-rt" if kind == "mdm" else "aan"}
        self.feeds, self.out = [], out

    def infer(self, feed):
        self.feeds.append({k: v.copy() for k, v in feed.items()})
        n = feed[names.IMAGE].shape[0]
        lm = feed[names.INIT_SHAPE] if self.kind == "mdm" else np.broadcast_to(template(self.size), (n, 68, 2))
        if self.out is not None:
            lm = np.full((n, 68, 2), self.out, np.float32)
        return {names.LANDMARKS: np.array(lm), names.CONFIDENCE: np.full(n, 0.75, np.float32)}


@pytest.fixture(scope="module")
def face(data_dir):
    """A real annotated face: (grey image, (68, 2) landmarks)."""
    pts = sorted((data_dir / "images68" / "helen_test").glob("*.pts"))[0]
    img = cv2.imread(str(next(pts.parent.glob(pts.stem + ".*g"))), cv2.IMREAD_GRAYSCALE)
    return img, read_pts(pts)


def test_mdm_feed_and_round_trip(face):
    gray, shape = face
    be = FakeBackend("mdm")
    lm = Landmarker(be)
    fits = lm.fit_shapes(gray, [shape, shape + 3.0, shape * 1.1])
    assert len(be.feeds) == 1  # one model call for three faces
    feed = be.feeds[0]
    assert feed[names.IMAGE].shape == (3, 1, 64, 64) and feed[names.IMAGE].dtype == np.float32
    assert 0.0 <= feed[names.IMAGE].min() and feed[names.IMAGE].max() <= 1.0 and feed[names.IMAGE].std() > 0.05
    assert feed[names.INIT_SHAPE].shape == (3, 68, 2) and feed[names.HIDDEN].shape == (3, 5) and not feed[names.HIDDEN].any()
    # the starting shape sits on the template in the crop
    assert np.abs(feed[names.INIT_SHAPE][0] - template(64)).mean() < 2.0
    for f, s in zip(fits, [shape, shape + 3.0, shape * 1.1]):
        assert f.valid and f.confidence == pytest.approx(0.75)
        np.testing.assert_allclose(f.landmarks, s, atol=1e-2)  # crop -> image round trip


def test_fit_shape_template_init(face):
    gray, shape = face
    be = FakeBackend("mdm")
    f = Landmarker(be).fit_shape(gray, shape * 1.02, init="template")
    np.testing.assert_allclose(be.feeds[0][names.INIT_SHAPE][0], template(64), atol=1e-5)  # not the shape
    assert not np.allclose(f.landmarks, shape * 1.02, atol=1.0)  # the identity fake returns its start
    with pytest.raises(ValueError, match="init must be"):
        Landmarker(be).fit_shape(gray, shape, init="box")


def test_tracker_passes_track_init():
    for init in ("template", "shape"):
        tr, lm, _ = make_tracker(track_init=init)
        for _ in range(3):
            tr.process(scene())
        # the first frame detects (its shape check refits from the template), then two tracking calls
        assert lm.inits == ["template", init, init]
    with pytest.raises(ValueError, match="track_init"):
        TrackerConfig(track_init="box")


def test_shape_start_is_the_previous_fit_projected_on_the_shape_model():
    """With ``track_init="shape"`` the crop stays on the previous fit and MDM starts from its
    projection on the shape model's first K modes (the shipped choice by default); K = 0 is the
    raw 300VW protocol (no separate start); the template start never gets one."""
    from facetrack.tracker.shape_model import default_shape_model

    model = default_shape_model()
    k = model.record["tracking_modes"]
    for modes, init, expect in ((None, "shape", k), (3, "shape", 3), (0, "shape", 0), (None, "template", 0)):
        tr, lm, _ = make_tracker(track_init=init, shape_modes=modes)
        prev = None
        for _ in range(3):
            r = tr.process(scene())
            if r.faces and r.faces[0].success:
                prev = r.faces[0].landmarks
        shapes, starts = lm.starts[-1]
        if not expect:
            assert starts is None
            continue
        np.testing.assert_allclose(shapes[0], prev, atol=1e-4)  # the crop: the previous fit itself
        np.testing.assert_allclose(starts[0], model.project(shapes[0], expect), atol=1e-4)
        assert np.abs(starts[0] - shapes[0]).max() > 0.1  # the blob's box shape is no face: the projection moves it


def test_fit_box_starts_from_template_and_maps_back(face):
    gray, shape = face
    for kind in ("mdm", "aan"):
        be = FakeBackend(kind)
        f = Landmarker(be).fit_box(gray, box_of(shape), calibration=TIGHT_BOX)
        if kind == "mdm":
            np.testing.assert_allclose(be.feeds[0][names.INIT_SHAPE][0], template(64), atol=1e-5)
        b, t = box_of(f.landmarks), box_of(shape)
        np.testing.assert_allclose((b[:2] + b[2:]) / 2, (t[:2] + t[2:]) / 2, atol=0.5)  # same centre
        assert np.sqrt(np.prod(b[2:] - b[:2])) == pytest.approx(np.sqrt(np.prod(t[2:] - t[:2])), rel=1e-3)


def test_non_finite_output_gives_invalid_fit_never_nan(face):
    gray, shape = face
    for bad in (np.nan, np.inf):
        f = Landmarker(FakeBackend("aan", out=bad)).fit_shape(gray, shape)
        assert not f.valid and f.confidence == 0.0 and np.isfinite(f.landmarks).all()
    f = Landmarker(FakeBackend("mdm")).fit_shape(gray, np.full((68, 2), np.nan, np.float32))
    assert not f.valid and np.isfinite(f.landmarks).all()


def test_landmarker_rejects_unknown_kind():
    be = FakeBackend("mdm")
    be.metadata[names.KIND] = "xyz"
    be.kind = "xyz"
    with pytest.raises(ValueError, match="unknown model kind"):
        Landmarker(be)


def test_resolve_model(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "weights_dir", lambda: tmp_path)
    with pytest.raises(models.ModelNotFoundError, match="shipped model 'mdm' is missing") as e:
        models.resolve_model("mdm")
    assert str(tmp_path / "mdm-rt.onnx") in str(e.value)
    (tmp_path / "aan.onnx").write_bytes(b"x")
    assert models.resolve_model("aan") == tmp_path / "aan.onnx"
    with pytest.raises(models.ModelNotFoundError, match="is a directory"):
        models.resolve_model(tmp_path)
    with pytest.raises(models.ModelNotFoundError, match="no such model file"):
        models.resolve_model(tmp_path / "nope.onnx")


# --- state machine ----------------------------------------------------------------------------
def test_follows_a_moving_face_and_detects_once():
    tr, lm, det = make_tracker(detect_every=1)
    for k in range(12):
        x, y = 60 + 4 * k, 50 + 2 * k
        r = tr.process(scene([(x, y)]), k / 30)
        assert len(r.faces) == 1
        f = r.faces[0]
        assert f.success and f.face_id == 0 and f.state == ("detected" if k == 0 else "tracking")
        np.testing.assert_allclose(f.box, [x, y, x + 60, y + 60], atol=1.0)
        assert r.detector_ran == (k == 0) and not r.cut
        assert set(r.timings) >= {"detect", "crop", "infer", "post", "total"}
    # the first frame: the box fit, then its shape check (a refit); then one tracking call a frame
    assert det.runs == 1 and lm.calls[0] == ("boxes", 1) and lm.calls[1:] == [("shapes", 1)] * 12


def test_black_frames_are_a_cut_and_the_face_is_redetected():
    tr, lm, det = make_tracker(detect_every=100)  # only the cut can trigger the search
    black = np.zeros((240, 320, 3), np.uint8)
    frames = [scene([(100, 80)])] * 3 + [black] * 3 + [scene([(150, 100)])] * 2
    rs = [tr.process(f) for f in frames]
    assert [r.cut for r in rs] == [False, False, False, True, False, False, True, False]
    assert rs[3].faces[0].state == "lost" and not rs[3].faces[0].success
    assert rs[3].detector_ran and all(not r.faces for r in rs[4:6])
    # the cut's search looks at a half-size copy; finding nothing, the full frame follows at once
    assert rs[4].detector_ran and not rs[5].detector_ran
    assert rs[6].detector_ran and rs[6].faces[0].state == "detected" and rs[6].faces[0].face_id == 0
    np.testing.assert_allclose(rs[6].faces[0].box, [150, 100, 210, 160], atol=1.0)
    assert rs[7].faces[0].state == "tracking" and det.runs == 4


def test_confidence_drop_loses_the_face_and_search_resumes():
    tr, lm, det = make_tracker(detect_every=3, cut_threshold=-2.0)  # no cuts: the confidence must do it
    empty = scene([])
    frames = [scene([(100, 80)])] * 2 + [empty] * 4 + [scene([(100, 80)])] * 4
    rs = [tr.process(f) for f in frames]
    assert not any(r.cut for r in rs)
    assert rs[2].faces[0].state == "lost" and rs[2].faces[0].confidence == 0.0 and rs[2].detector_ran
    # the search at the loss finds nothing; the next comes detect_every frames later (a face was just
    # lost), and finds nothing either; the landmark model, looking around the last position every
    # other frame, finds the face at 6
    assert [r.detector_ran for r in rs] == [True, False, True, False, False, True] + [False] * 4
    first_back = next(i for i, r in enumerate(rs) if i > 2 and r.success)
    assert first_back == 6 and rs[6].faces[0].state == "detected"
    np.testing.assert_allclose(rs[6].faces[0].box, [100, 80, 160, 140], atol=1.0)
    # without re-acquisition the detector finds it at the search after (frame 8); searches backing
    # off at once would have waited 2 x detect_every after the one at the loss, to frame 8 as well
    for after_loss, searches in ((12, [0, 2, 5, 8]), (0, [0, 2, 8])):
        tr, lm, det = make_tracker(detect_every=3, cut_threshold=-2.0, reacquire_frames=0, search_after_loss=after_loss)
        rs = [tr.process(f) for f in frames]
        assert [r.index for r in rs if r.detector_ran] == searches
        assert next(i for i, r in enumerate(rs) if i > 2 and r.success) == 8


def test_face_leaving_the_frame_is_lost_and_searched_for():
    tr, lm, det = make_tracker(DriftLandmarker(shift=(25.0, 0.0)), detect_every=50, track_init="shape")
    still = scene([(180, 80)])
    rs = [tr.process(still) for _ in range(6)]
    k = next(i for i, r in enumerate(rs) if i > 0 and r.detector_ran)  # the first search after frame 0
    assert [r.faces[0].state for r in rs[:k]] == ["detected"] + ["tracking"] * (k - 1)
    inside = lambda pts: (pts[:, 0] <= 319).mean()  # noqa: E731
    assert inside(rs[k - 1].faces[0].landmarks) >= 0.6 > inside(rs[k - 1].faces[0].landmarks + [25.0, 0.0])
    assert rs[k].faces[0].state == "detected"  # lost, searched at once, found again where it really is
    np.testing.assert_allclose(rs[k].faces[0].box, [180, 80, 240, 140], atol=1.0)


def test_implausible_scale_change_loses_the_face():
    tr, _, _ = make_tracker(DriftLandmarker(scale=1.6), detect_every=50, track_init="shape")
    rs = [tr.process(scene([(100, 80)])) for _ in range(2)]
    assert rs[1].faces[0].state == "detected"  # lost, and found again at once around its last position
    np.testing.assert_allclose(rs[1].faces[0].box, [100, 80, 160, 140], atol=1.0)  # not the 1.6x fit


def test_low_confidence_detection_is_rejected_and_searches_back_off():
    tr, _, _ = make_tracker(BlobLandmarker(gain=0.3), detect_every=1, search_backoff=4)
    rs = [tr.process(scene([(100, 80)])) for _ in range(12)]
    assert all(not r.faces for r in rs)
    # searches that find nothing come at doubling intervals: 1, 2, 4, then at most search_backoff
    assert [r.index for r in rs if r.detector_ran] == [0, 2, 6, 10]


def test_several_faces_keep_ids_and_are_not_duplicated():
    tr, lm, det = make_tracker(max_faces=3, detect_every=1)
    ids_at = {}
    ran = []
    for k in range(8):
        r = tr.process(scene([(20 + 3 * k, 40), (200 - 3 * k, 120)]))
        assert len(r.faces) == 2
        ran.append(r.detector_ran)
        for f in r.faces:
            ids_at.setdefault(f.face_id, []).append(f.box[0])
    assert set(ids_at) == {0, 1}
    # fewer than 3 tracked: searches go on, at doubling intervals while they find nothing new
    assert ran == [True, True, False, True, False, False, False, True]
    left = 0 if ids_at[0][0] < ids_at[1][0] else 1
    np.testing.assert_allclose(ids_at[left], [20 + 3 * k for k in range(8)], atol=1.0)  # id stays with its face
    np.testing.assert_allclose(ids_at[1 - left], [200 - 3 * k for k in range(8)], atol=1.0)


def test_max_faces_limits_and_aan_mdm_chain():
    aan, mdm = BlobLandmarker("aan"), BlobLandmarker("mdm")
    tr = Tracker(TrackerConfig(model="aan+mdm", max_faces=1), landmarkers={"aan": aan, "mdm": mdm}, detector=BlobDetector())
    for _ in range(3):
        r = tr.process(scene([(20, 40), (200, 120)]))
        assert len(r.faces) == 1
    assert aan.calls == [("boxes", 2), ("shapes", 1)]  # both detections (max_faces + 2 spares), then its tracking turn
    assert mdm.calls == [("shapes", 2), ("shapes", 2), ("shapes", 1)]  # refine, shape check, then its turn


class AsideLandmarker(BlobLandmarker):
    """Fits every box 200 px to the right of where it is: a first model that misplaces a face."""

    def _fit(self, gray, box) -> Fit:
        return Fit(shape_in_box(np.asarray(box, np.float32) + [200, 0, 200, 0]), 0.9)


class BoxLandmarker(BlobLandmarker):
    """Fits a face exactly in the box it is given, with confidence 1."""

    def _fit(self, gray, box) -> Fit:
        return Fit(shape_in_box(box), 1.0)


class ListDetector(BlobDetector):
    def __init__(self, boxes) -> None:
        super().__init__()
        self.boxes = boxes

    def detect(self, gray):
        return [Det(np.asarray(b, np.float32), 1.0 - 0.1 * k) for k, b in enumerate(self.boxes)]


def test_a_box_on_a_tracked_face_s_upper_half_is_not_a_second_face():
    """IoU 0.27 (under iou_threshold) but 56 % of the smaller box inside the face: one face, as on
    the Hamilton clip, where a fit on a singer's forehead and eyes became a second track."""
    face, upper = (100, 80, 160, 140), (110, 60, 160, 105)
    counts = {}
    for overlap in (0.35, 1.0):
        tr, _, _ = make_tracker(BoxLandmarker(), ListDetector([face, upper]), max_faces=2, overlap_threshold=overlap)
        counts[overlap] = [len([f for f in tr.process(scene([])).faces if f.success]) for _ in range(3)]
    assert counts == {0.35: [1, 1, 1], 1.0: [2, 2, 2]}, counts


def test_a_new_face_the_chain_misplaces_gets_a_second_chance_from_the_tracking_model():
    aan, mdm = AsideLandmarker("aan"), BlobLandmarker("mdm")
    tr = Tracker(TrackerConfig(model="aan+mdm"), landmarkers={"aan": aan, "mdm": mdm}, detector=BlobDetector())
    r = tr.process(scene([(20, 40)]))
    # MDM from aan's misplaced shape finds nothing there (confidence 0): the chain's fit fails the
    # check; MDM from the detector's box, then its refit, find the face
    assert r.faces[0].state == "detected"
    np.testing.assert_allclose(r.faces[0].box, [20, 40, 80, 100], atol=1.0)
    assert mdm.calls == [("shapes", 1), ("shapes", 1), ("boxes", 1), ("shapes", 1)]  # chain, its refit, then MDM alone and its refit


def test_a_chain_takes_turns_and_averages_with_the_other_fit_carried_by_the_flow(face):
    """aan+mdm on a real face sliding 5 px a frame, each model with its own bias (aan +4 px,
    MDM -2 px): the models take turns, one call per frame, and each fit is averaged with the
    other's fit of the frame before moved by the face's motion, so the face sits at the mean
    bias (+1 px) and not half a frame's motion behind. MDM's confidence decides: on aan's turn
    the face keeps the lower of aan's and MDM's last."""
    gray, shape = face
    step = 5
    aan = TruthLandmarker(kind="aan", shift=(4.0, 0.0), confidence=0.9)
    mdm = TruthLandmarker(kind="mdm", shift=(-2.0, 0.0), confidence=0.7, source=aan)
    tr = Tracker(TrackerConfig(model="aan+mdm"), landmarkers={"aan": aan, "mdm": mdm}, detector=TruthDetector(aan))
    off, conf = [], []
    for k in range(8):
        aan.truth = shape + [step * k, 0.0]
        frame = cv2.warpAffine(gray, np.float32([[1, 0, step * k], [0, 1, 0]]), gray.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
        r = tr.process(frame, k / 30)
        assert r.faces[0].success
        off.append((r.faces[0].landmarks - aan.truth).mean(0))
        conf.append(r.faces[0].confidence)
    assert aan.calls == [("boxes", 1), ("shapes", 1), ("shapes", 1), ("shapes", 1), ("shapes", 1)]  # new face, then frames 1, 3, 5, 7
    assert mdm.calls == [("shapes", 1)] * 5  # refine and shape check, then frames 2, 4, 6
    np.testing.assert_allclose(off[0], [0.0, 0.0], atol=1e-3)  # the new face: the mean of aan, MDM and the refit
    np.testing.assert_allclose(off[1], [4.0, 0.0], atol=1e-3)  # aan's first turn has no MDM fit to pair with
    np.testing.assert_allclose(np.array(off[2:]), np.tile([1.0, 0.0], (6, 1)), atol=0.3)  # unmoved, it would be 2.5 px behind
    assert conf[1:] == pytest.approx([0.7] * 7)  # min(aan's 0.9, MDM's 0.7) on aan's turns, MDM's own on its turns


def test_smoothing_changes_output_not_tracking():
    """A filter that is never reset lags behind a fast move the flow does not measure; the
    default reset (``smooth_reset``) sees the fit leave the filter and follows it."""
    raw, _, _ = make_tracker()
    smo, _, _ = make_tracker(smooth=True, smooth_beta=0.0, smooth_flow=False, smooth_reset=0.0)
    reset, _, _ = make_tracker(smooth=True, smooth_beta=0.0, smooth_flow=False)
    for k in range(6):
        f = scene([(60 + 8 * k, 50)])
        a, b, c = raw.process(f, k / 30).faces[0], smo.process(f, k / 30).faces[0], reset.process(f, k / 30).faces[0]
        assert a.success and b.success and c.success and np.isfinite(b.landmarks).all()
    assert b.box[0] < a.box[0] - 5  # the smoothed face lags behind a fast move
    assert abs(c.box[0] - a.box[0]) < 1.0


class TruthLandmarker(BlobLandmarker):
    """Fits every face where ``truth`` says it is, moved by ``shift`` px (a model's bias), plus
    ``noise`` px of jitter shared by the whole face (as a fit's jitter is mostly the whole face);
    confidence ``confidence``. ``source``: another TruthLandmarker whose ``truth`` it reads."""

    def __init__(self, noise: float = 0.0, kind: str = "mdm", shift=(0.0, 0.0), confidence: float = 1.0, source=None) -> None:
        super().__init__(kind)
        self.truth, self.noise, self.rng = None, noise, np.random.default_rng(0)
        self.shift, self.confidence, self.source = np.asarray(shift, np.float32), confidence, source

    def _fit(self, gray, box) -> Fit:
        truth = self.truth if self.source is None else self.source.truth
        return Fit((truth + self.shift + self.rng.normal(0, self.noise, 2)).astype(np.float32), self.confidence)


class TruthDetector(BlobDetector):
    def __init__(self, lm: TruthLandmarker) -> None:
        super().__init__()
        self.lm = lm

    def detect(self, gray):
        return [Det(box_of(self.lm.truth), 1.0)]


def test_smoothing_moves_with_the_face_the_flow_sees(face):
    """A real face sliding 5 px a frame with 2 px of fit jitter: smoothing moved by the flow
    follows it and steadies it; the same filter unmoved lags behind; smoothing off keeps the jitter."""
    gray, shape = face
    step = 5
    frames = [cv2.warpAffine(gray, np.float32([[1, 0, step * k], [0, 1, 0]]), gray.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
              for k in range(30)]
    out = {}
    # the filters alone (no reset): what the flow does for them
    for name, cfg in {"flow": dict(smooth=True, smooth_reset=0.0), "unmoved": dict(smooth=True, smooth_flow=False, smooth_reset=0.0),
                      "off": {}}.items():
        lm = TruthLandmarker(noise=2.0)
        tr, _, _ = make_tracker(lm, TruthDetector(lm), **cfg)
        errs = []
        for k, f in enumerate(frames):
            lm.truth = shape + [step * k, 0]
            r = tr.process(f, k / 30)
            assert r.faces[0].success
            errs.append(r.faces[0].landmarks - lm.truth)
        out[name] = np.array(errs[5:])
    lag = {k: float(v[..., 0].mean()) for k, v in out.items()}  # signed: behind the motion is negative
    err = {k: float(np.linalg.norm(v, axis=-1).mean()) for k, v in out.items()}
    # measured: mean error 1.2 px with the flow, 2.4 px off, 4.2 px unmoved, which lags 3.9 px (the jitter's own
    # mean over these frames, -0.3 px, is in every lag)
    assert abs(lag["flow"] - lag["off"]) < 0.5 and lag["unmoved"] - lag["off"] < -2.0, lag
    assert err["flow"] < 0.6 * min(err["unmoved"], err["off"]), err


def test_searches_after_a_failed_one_look_at_a_smaller_copy():
    class Shapes(BlobDetector):
        def __init__(self):
            super().__init__()
            self.shapes = []

        def detect(self, gray):
            self.shapes.append(gray.shape)
            return super().detect(gray)

    det = Shapes()
    tr, _, _ = make_tracker(det=det, detect_every=1, search_backoff=2, backoff_scale=0.5)
    rs = [tr.process(scene([])) for _ in range(5)] + [tr.process(scene([(100, 80)])) for _ in range(2)]
    # frames 0 (full size), 2 and 4 (after failures: half size), 5 (the face's arrival is a cut:
    # half size, where it is found, so no full-size search follows)
    assert det.shapes == [(240, 320), (120, 160), (120, 160), (120, 160)]
    assert [r.index for r in rs if r.detector_ran] == [0, 2, 4, 5]
    np.testing.assert_allclose(rs[5].faces[0].box, [100, 80, 160, 140], atol=1.0)
    tr, _, _ = make_tracker(det=Shapes(), detect_every=1, search_backoff=2, backoff_scale=0.5, cut_threshold=-2.0)
    rs = [tr.process(scene([])) for _ in range(5)] + [tr.process(scene([(100, 80)])) for _ in range(2)]
    assert [r.index for r in rs if r.detector_ran] == [0, 2, 4, 6] and rs[6].faces[0].state == "detected"
    np.testing.assert_allclose(rs[6].faces[0].box, [100, 80, 160, 140], atol=2.0)  # found in the half-size copy
    with pytest.raises(ValueError, match="backoff_scale"):
        TrackerConfig(backoff_scale=0.0)


class PartsDetector(BlobDetector):
    """A search in three parts; only part 2 (or a whole search) finds the blobs. Records calls."""

    parts = 3

    def __init__(self) -> None:
        super().__init__()
        self.log = []

    def detect_part(self, gray, part):
        self.log.append(part)
        return super().detect(gray) if part == 2 else []

    def detect(self, gray):
        self.log.append("whole")
        return super().detect(gray)


def test_search_is_spread_over_frames_while_a_face_is_tracked():
    det = PartsDetector()
    tr, lm, _ = make_tracker(det=det, max_faces=2, detect_every=1)
    r0 = tr.process(scene([(20, 40)]))  # nothing tracked yet: the whole search in one frame
    assert det.log == ["whole"] and len(r0.faces) == 1
    rs = [tr.process(scene([(20, 40), (200, 120)])) for _ in range(3)]  # a second face appears
    assert det.log == ["whole", 0, 1, 2]  # one part per frame; the part that finds it is the third
    assert [len(r.faces) for r in rs] == [1, 1, 2] and rs[2].faces[1].state == "detected"


class Wanderer(BlobLandmarker):
    """Fits any box with confidence 0.9; refitting from a shape moves it by ``move`` outer-eye
    distances (what a landmark model does on a collar or a hand: it does not stay put)."""

    def __init__(self, move: float) -> None:
        super().__init__()
        self.move = move

    def fit_boxes(self, gray, boxes, timings=None):
        self.calls.append(("boxes", len(boxes)))
        return [Fit(shape_in_box(b), 0.9) for b in boxes]

    def fit_shapes(self, gray, shapes, timings=None, init="shape", starts=None):
        self.calls.append(("shapes", len(shapes)))
        out = []
        for sh in shapes:
            eyes = float(np.linalg.norm(sh[36] - sh[45]))
            out.append(Fit((sh + [self.move * eyes, 0.0]).astype(np.float32), 0.9))
        return out


@pytest.mark.parametrize("move, accepted", [(0.1, True), (0.3, True), (0.5, False), (1.0, False)])
def test_new_face_needs_a_refit_that_stays_put(move, accepted):
    tr, _, _ = make_tracker(Wanderer(move), detect_every=1)
    r = tr.process(scene([(100, 80)]))
    assert bool(r.faces) == accepted


def test_new_face_reports_the_mean_of_its_fit_and_its_refit():
    # two fits of one face from two crops (the detector's box, then the crop aligned on the
    # first fit): the tracker reports their mean, which costs nothing and is the more accurate
    tr, _, det = make_tracker(Wanderer(0.2), detect_every=1)
    frame = scene([(100, 80)])
    box = det.calibration(BlobDetector().detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))[0].box)
    first = shape_in_box(box)
    eyes = float(np.linalg.norm(first[36] - first[45]))
    r = tr.process(frame)
    assert len(r.faces) == 1
    np.testing.assert_allclose(r.faces[0].landmarks, first + [0.5 * 0.2 * eyes, 0.0], atol=1e-3)


def test_new_face_of_a_chain_reports_the_mean_of_every_stage_fit_and_the_refit():
    # aan+mdm: aan's fit from the box, MDM's from aan's, MDM's refit from its own; each MDM call
    # moves the shape by 0.2 eye distances, so the three are first, first + m and first + 2 m
    aan, mdm = Wanderer(0.2), Wanderer(0.2)
    det = BlobDetector()
    tr = Tracker(TrackerConfig(model="aan+mdm", detect_every=1), landmarkers={"aan": aan, "mdm": mdm}, detector=det)
    frame = scene([(100, 80)])
    first = shape_in_box(det.calibration(BlobDetector().detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))[0].box))
    eyes = float(np.linalg.norm(first[36] - first[45]))
    r = tr.process(frame)
    assert len(r.faces) == 1 and aan.calls == [("boxes", 1)] and mdm.calls == [("shapes", 1), ("shapes", 1)]
    np.testing.assert_allclose(r.faces[0].landmarks, first + [0.2 * eyes, 0.0], atol=1e-3)


class Magnet(BlobLandmarker):
    """Tracking snaps every shape onto the first blob of the frame, surer the less it moved."""

    def fit_shapes(self, gray, shapes, timings=None, init="shape", starts=None):
        if init == "template":  # a new face's shape check: stays put
            return super().fit_shapes(gray, shapes, timings, init)
        self.calls.append(("shapes", len(shapes)))
        det = BlobDetector().detect(gray)[0].box
        out = []
        for sh in shapes:
            moved = float(np.abs(box_of(sh) - det).max())
            out.append(Fit(shape_in_box(det), 1.0 / (1.0 + moved)))
        return out


def test_two_tracks_on_one_face_become_one():
    tr, lm, _ = make_tracker(Magnet(), max_faces=2, detect_every=100, cut_threshold=-2.0, confidence_threshold=0.001,
                            track_init="shape")
    r0 = tr.process(scene([(20, 40), (200, 120)]))
    assert len(r0.faces) == 2
    r = tr.process(scene([(20, 40)]))  # both tracks' fits land on the one face left
    assert [f.state for f in r.faces] == ["tracking", "lost"]
    np.testing.assert_allclose(r.faces[0].box, [20, 40, 80, 100], atol=1.0)  # the surer one stays
    assert len([f for f in r.faces if f.success]) == 1


def test_reset_forgets_faces():
    tr, _, det = make_tracker(detect_every=100)
    tr.process(scene())
    tr.reset()
    r = tr.process(scene())
    assert r.detector_ran and r.faces[0].state == "detected" and r.index == 0


# --- cuts on a real video ------------------------------------------------------------------
def test_cut_detection_on_real_video(data_dir):
    cap = cv2.VideoCapture(str(data_dir / VIDEO))
    cuts, scores, det = [], [], CutDetector(TrackerConfig().cut_threshold)
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frame = img
        if det(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)):
            cuts.append(i)
        scores.append(det.last_score)
        i += 1
    assert i == 275
    # the clip's shots: a far face | audience | frontal face | audience (checked by eye)
    assert cuts == [20, 82, 211]
    assert min(s for k, s in enumerate(scores) if k not in cuts) > 0.6  # camera motion stays well above
    assert det(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) is False  # a still is no cut


def test_tracker_redetects_at_each_cut_of_the_real_clip(data_dir, tmp_path):
    """The clip's first 90 frames (cuts at 20 and 82) with the real detector and runtime
    (stand-in model): at a cut nothing is carried over; every face there is a new detection."""
    pytest.importorskip("onnxruntime")
    detect = pytest.importorskip("facetrack.tracker.detect")
    lm = Landmarker(_fake_onnx(tmp_path / "m.onnx", "mdm"))
    tr = Tracker(TrackerConfig(model="mdm", confidence_threshold=0.1), landmarkers={"mdm": lm}, detector=detect.default_detector())
    cap = cv2.VideoCapture(str(data_dir / VIDEO))
    rs = []
    for i in range(90):
        ok, frame = cap.read()
        assert ok
        rs.append(tr.process(frame, i / 29.97))
    assert [r.index for r in rs if r.cut] == [20, 82]
    assert rs[0].success and rs[19].success  # the far face of the first shot was found and followed
    for k in (20, 82):
        assert rs[k].detector_ran
        assert all(f.state in ("lost", "detected") for f in rs[k].faces)
        before = [g.landmarks for g in rs[k - 1].faces]
        for f in rs[k].faces:
            if f.state == "detected":  # a face found after the cut is not the old one moved
                assert all(float(np.abs(f.landmarks - b).mean()) > 20 for b in before)
    assert rs[83].success or rs[84].success  # the frontal face after the second cut


# --- odd frames never raise or give NaN -------------------------------------------------------
def _fake_onnx(path: Path, kind: str, size: int = 32, hidden: int = 8) -> Path:
    """A tiny real ONNX model with facetrack metadata (the tests' one stand-in,
    tests/onnx_standin.py): MDM kind returns ``init_shape`` (an identity refiner), AAN kind the
    template; confidence = the crop's mean brightness."""
    pytest.importorskip("onnx", reason="onnx (the [train] extra) builds the test model")
    from tests.onnx_standin import build_onnx_standin

    return build_onnx_standin(path, kind, size=size, hidden=hidden, landmarks="identity", confidence="mean")


def _odd_frames(face_bgr: np.ndarray) -> dict[str, np.ndarray]:
    g = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY)
    f = face_bgr.astype(np.float32) / 255
    f[:5] = np.nan
    return {"grey": g, "bgr": face_bgr, "bgra": cv2.cvtColor(face_bgr, cv2.COLOR_BGR2BGRA),
            "uint16": face_bgr.astype(np.uint16) * 257, "float_nan": f, "16x16": cv2.resize(face_bgr, (16, 16)),
            "1x1": face_bgr[:1, :1], "black": np.zeros_like(face_bgr), "white": np.full_like(face_bgr, 255),
            "huge": cv2.resize(face_bgr, (3000, 2000)), "tall": np.ascontiguousarray(face_bgr[:, :3]),
            "not_an_image": np.zeros(7, np.uint8)}


def _check_finite(r) -> None:
    assert np.isfinite(r.timestamp)
    for f in r.faces:
        assert np.isfinite(f.landmarks).all() and f.landmarks.shape == (68, 2) and f.landmarks.dtype == np.float32
        assert np.isfinite(f.box).all() and 0.0 <= f.confidence <= 1.0 and np.isfinite(f.confidence)


def test_odd_frames_with_fakes_never_raise(face):
    gray, shape = face
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    tr, _, _ = make_tracker(detect_every=1)
    for name, frame in _odd_frames(bgr).items():
        for _ in range(2):  # a first frame, then one tracked from it
            _check_finite(tr.process(frame))


def test_odd_frames_with_real_runtime_and_detector(face, tmp_path):
    pytest.importorskip("onnxruntime")
    detect = pytest.importorskip("facetrack.tracker.detect")
    gray, shape = face
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    lms = {"mdm": Landmarker(_fake_onnx(tmp_path / "m.onnx", "mdm")), "aan": Landmarker(_fake_onnx(tmp_path / "a.onnx", "aan"))}
    for model in ("mdm", "aan", "aan+mdm"):
        tr = Tracker(TrackerConfig(model=model, confidence_threshold=0.05, detect_every=1), landmarkers=lms,
                     detector=detect.default_detector())
        n_ok = 0
        for name, frame in _odd_frames(bgr).items():
            for _ in range(2):
                r = tr.process(frame)
                _check_finite(r)
                n_ok += r.success
        assert n_ok > 0  # the real face was found in some of them


def test_real_face_removed_and_back_is_redetected(face, tmp_path):
    """Real detector, real runtime (stand-in model), a real face: black frames in between."""
    pytest.importorskip("onnxruntime")
    detect = pytest.importorskip("facetrack.tracker.detect")
    gray, shape = face
    lm = Landmarker(_fake_onnx(tmp_path / "m.onnx", "mdm"))
    tr = Tracker(TrackerConfig(model="mdm", max_faces=2, confidence_threshold=0.05, detect_every=100), landmarkers={"mdm": lm},
                 detector=detect.default_detector())
    black = np.zeros_like(gray)
    rs = [tr.process(f) for f in [gray, gray, black, black, gray, gray]]
    # this photo holds two people (the annotated one and a neighbour): both are found, twice
    assert [sorted(f.state for f in r.faces) for r in rs] == [
        ["detected"] * 2, ["tracking"] * 2, ["lost"] * 2, [], ["detected"] * 2, ["tracking"] * 2]
    assert [r.cut for r in rs] == [False, False, True, False, True, False]
    assert [sorted(f.face_id for f in r.faces) for r in rs] == [[0, 1]] * 3 + [[]] + [[0, 1]] * 2
    for r in (rs[0], rs[4]):  # one of them is the annotated face
        assert min(float(nme(f.landmarks, shape)) for f in r.faces) < 0.5


# --- a real face followed under known motion (needs the trained weights) -------------------------
def _weights_or_skip(name: str) -> Path:
    try:
        return models.resolve_model(name)
    except models.ModelNotFoundError as e:
        pytest.skip(f"trained weights not shipped yet: {e}")


def _moving_sequence(gray: np.ndarray, shape: np.ndarray, n: int = 20):
    """Frames of a real face moved by small known similarity transforms (a slow drift,
    rotation and zoom about the face centre), with the moved ground truth."""
    c = shape.mean(0)
    for k in range(n):
        ang, s = np.deg2rad(0.6 * k), 1.0 + 0.006 * k
        tx, ty = 1.5 * k, -1.0 * k
        m = similarity_matrix(s, ang, 0, 0)
        m[:, 2] = c - m[:, :2] @ c + [tx, ty]
        frame = cv2.warpAffine(gray, m, (gray.shape[1], gray.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        yield frame, apply_affine(m, shape)


@pytest.mark.parametrize("model", ["mdm", "aan", "aan+mdm"])
def test_tracks_real_face_under_known_motion(face, model):
    for key in {"mdm": ["mdm"], "aan": ["aan"], "aan+mdm": ["aan", "mdm"]}[model]:
        _weights_or_skip(key)
    gray, shape = face

    class GtBox:  # the detector stand-in: the ground truth's tight box (a landmark-equivalent box)
        calibration = BoxCalibration()
        parts = 1

        def __init__(self):
            self.gt = shape

        def detect(self, g):
            return [Det(box_of(self.gt), 1.0)]

        def detect_part(self, g, part):
            return self.detect(g)

    det = GtBox()
    # 0.3, not the default 0.5: this test is about following the face; the confidence heads of
    # the first trained models are not calibrated (an AAN fit at NME 0.069 scored 0.45)
    tr = Tracker(TrackerConfig(model=model, detect_every=100, confidence_threshold=0.3), detector=det)
    errs, frozen = [], []
    for frame, gt in _moving_sequence(gray, shape):
        det.gt = gt
        r = tr.process(frame)
        assert r.success and r.faces[0].state == ("detected" if r.index == 0 else "tracking"), f"lost the face at frame {r.index}"
        errs.append(float(nme(r.faces[0].landmarks, gt)))
        if r.index == 0:
            first = r.faces[0].landmarks
        frozen.append(float(nme(first, gt)))  # the error of not tracking at all
    tr.close()
    # Measured with the shipped weights on this face: mdm 0.065 mean (first 0.059, last 0.066),
    # aan+mdm 0.065, aan 0.071 (frame to frame it swings between 0.052 and 0.087, no trend);
    # frozen 0.10-0.12. The bound: under 0.1 on average, no drift (the last 5 frames' mean within
    # 0.02 of the first 5 tracked frames' mean: single frames would measure AAN's swing, not a
    # drift), and better than leaving the first fit where it was.
    drift = np.mean(errs[-5:]) - np.mean(errs[1:6])
    assert np.mean(errs) < 0.10 and drift < 0.02 and np.mean(errs) < np.mean(frozen), (errs, frozen)


# --- the turned view ---------------------------------------------------------------------------
def turned_tracker(front_gain: float, **cfg) -> tuple[Tracker, BlobLandmarker, BlobLandmarker]:
    """A tracker whose first model scores every fit ``front_gain`` of its blob fill and whose
    turned model (``turned_model="mdm-turned"``) scores it in full."""
    front, turned = BlobLandmarker("mdm", gain=front_gain), BlobLandmarker("mdm")
    tr = Tracker(TrackerConfig(model="mdm", turned_model="mdm-turned", **cfg),
                 landmarkers={"mdm": front, "mdm-turned": turned}, detector=BlobDetector())
    return tr, front, turned


def test_a_face_the_first_model_rejects_is_taken_and_tracked_by_the_turned_model():
    tr, front, turned = turned_tracker(0.3)
    states = [[f.state for f in tr.process(scene([(100 + 2 * i, 80)])).faces] for i in range(4)]
    assert states == [["detected"], ["tracking"], ["tracking"], ["tracking"]], states
    # the first model fits the box and refits it (0.3 < 0.5: rejected); the turned model then fits
    # the box, refits its fit, and alone tracks the face
    assert front.calls == [("boxes", 1), ("shapes", 1)], front.calls
    assert turned.calls == [("boxes", 1), ("shapes", 1), ("shapes", 1), ("shapes", 1), ("shapes", 1)], turned.calls
    # without the turned view the same face is never accepted
    plain, _, _ = make_tracker(BlobLandmarker("mdm", gain=0.3))
    assert not any(plain.process(scene([(100, 80)])).success for _ in range(3))


def test_a_face_the_first_model_accepts_never_reaches_the_turned_model():
    tr, front, turned = turned_tracker(1.0)
    for i in range(3):
        assert tr.process(scene([(100 + 2 * i, 80)])).success
    assert turned.calls == []
    assert front.calls == [("boxes", 1), ("shapes", 1), ("shapes", 1), ("shapes", 1)]


def test_a_lost_turned_face_is_looked_for_by_the_turned_model():
    tr, front, turned = turned_tracker(0.3, cut_threshold=-2.0)  # no cuts: the confidence loses it
    empty, there = scene([]), scene([(100, 80)])
    rs = [tr.process(f) for f in [there, empty, empty, there]]
    assert [[f.state for f in r.faces] for r in rs] == [["detected"], ["lost"], [], ["detected"]]
    assert not rs[3].detector_ran  # found again around its last landmarks, before any search
    # after the first frame the first model tried the face once (the hand-over, as it was lost);
    # the turned model tracked it, then looked for it every other frame with all hypotheses in one call
    assert front.calls == [("boxes", 1), ("shapes", 1), ("shapes", 1)], front.calls
    hyp = len(Tracker.REACQUIRE)
    assert turned.calls[2:] == [("shapes", 1), ("shapes", hyp), ("shapes", hyp)], turned.calls


class FadingLandmarker(BlobLandmarker):
    """A blob finder whose confidence falls to ``after`` from its ``start``-th tracking call on:
    the first view's model on a face that turns away."""

    def __init__(self, start: int, after: float = 0.1) -> None:
        super().__init__("mdm")
        self.start, self.after, self.tracked = start, after, 0

    def fit_shapes(self, gray, shapes, timings=None, init="shape", starts=None):
        fits = super().fit_shapes(gray, shapes, timings, init, starts)
        self.tracked += 1
        return [Fit(f.landmarks, self.after) for f in fits] if self.tracked > self.start else fits


def test_a_tracked_face_that_turns_away_passes_to_the_turned_view_without_a_search():
    front, turned = FadingLandmarker(start=3), BlobLandmarker("mdm")
    tr = Tracker(TrackerConfig(model="mdm", turned_model="mdm-turned", detect_every=1), landmarkers={"mdm": front, "mdm-turned": turned},
                 detector=BlobDetector())
    rs = [tr.process(scene([(100 + 2 * i, 80)])) for i in range(6)]
    assert [r.faces[0].state for r in rs] == ["detected"] + ["tracking"] * 5
    assert [r.detector_ran for r in rs] == [True] + [False] * 5
    assert tr._tracks[0].view is tr.views[1] and tr.views[1].name == "turned"
    # the turned model's first call is the hand-over (the frame the first model's fit failed),
    # then it tracks the face alone
    assert turned.calls == [("shapes", 1)] * 3, turned.calls
    # without the turned view the same face is lost there
    alone = Tracker(TrackerConfig(model="mdm", detect_every=1), landmarkers={"mdm": FadingLandmarker(start=3)}, detector=BlobDetector())
    assert [r.faces[0].state for r in (alone.process(scene([(100 + 2 * i, 80)])) for i in range(4))] == \
        ["detected", "tracking", "tracking", "lost"]


class BoxEchoLandmarker(BlobLandmarker):
    """Fits whatever box it is given as a face, confidently: a model that cannot find a face
    again from another box (what the scale check refuses)."""

    def _fit(self, gray, box) -> Fit:
        return Fit(shape_in_box(box), 1.0)


def test_the_scale_check_refuses_a_face_not_found_again_from_other_boxes() -> None:
    img = scene()
    on, lm, _ = make_tracker(scale_check=True)
    r = on.process(img)
    assert r.success and ("boxes", 2) in lm.calls  # the blob is found again from the 0.7x and 1.5x boxes
    echo, _, _ = make_tracker(BoxEchoLandmarker(), scale_check=True)
    assert not echo.process(img).success  # the echo's fit grows and shrinks with the box: refused
    off, _, _ = make_tracker(BoxEchoLandmarker())
    assert off.process(img).success  # without the check it is taken
