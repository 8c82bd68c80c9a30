"""Training sequences: the motion is smooth and seeded, crops are the moved frames' crops, the
ground truth moves with the image, video tracks are in frame order with the rigid part taken out."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.tracker.geometry import apply_affine, crop_from_shape, face_size, umeyama, warp_crop
from facetrack.tracker.markup import OUTER_EYE_CORNERS
from facetrack.train.data.datasets import FaceSample, build_cache, load_images68
from facetrack.train.data.sequences import MotionConfig, PhotoConfig, Sequence, SequenceSource, smooth_motion, still_sequence, video_sequence, video_tracks


@pytest.fixture(scope="module")
def faces(data_dir: Path):
    return build_cache(load_images68(data_dir, "train")[:3], 123.2)


def _params(m: np.ndarray) -> np.ndarray:
    """(scale, angle deg, tx, ty) of a similarity."""
    s = float(np.sqrt(np.linalg.det(m[:, :2])))
    return np.array([s, np.degrees(np.arctan2(m[1, 0], m[0, 0])), m[0, 2], m[1, 2]])


def test_smooth_motion_is_seeded_similar_and_smooth() -> None:
    c, size = np.array([100.0, 80.0]), 50.0
    a = smooth_motion(60, np.random.default_rng(3), c, size)
    b = smooth_motion(60, np.random.default_rng(3), c, size)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    np.testing.assert_allclose(a[0], np.eye(2, 3), atol=1e-12)
    for m in a:  # a similarity: equal singular values, no reflection
        sv = np.linalg.svd(m[:, :2], compute_uv=False)
        assert sv[0] == pytest.approx(sv[1]) and np.linalg.det(m[:, :2]) > 0
    # the face centre moves by at most a few % of the face size per frame, and it does move
    centres = np.stack([m[:, :2] @ c + m[:, 2] for m in a])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1) / size
    assert steps.max() < 0.1 and steps.mean() > 0.002
    # no motion at all when every range is 0
    still = smooth_motion(5, np.random.default_rng(0), c, size, MotionConfig(shift=0.0, rotation_deg=0.0, scale=0.0))
    np.testing.assert_allclose(np.stack(still), np.stack([np.eye(2, 3)] * 5), atol=1e-12)


def test_still_sequence_crop_is_the_crop_of_the_moved_frame(faces) -> None:
    f = faces[0]
    seq = still_sequence(f, 8, np.random.default_rng(1), photo=PhotoConfig(gain=0.0, offset=0.0, noise=0.0), p_mirror=0.0)
    gray = cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY) if f.image.ndim == 3 else f.image
    for t in (0, 7):
        h, w = gray.shape
        frame = cv2.warpAffine(gray, seq.matrices[t], (2 * w, 2 * h), flags=cv2.INTER_LINEAR)  # the virtual frame
        gt = seq.landmarks(t)
        np.testing.assert_allclose(gt, apply_affine(seq.matrices[t], f.landmarks), atol=1e-4)
        m = crop_from_shape(gt, 112)
        direct = seq.crop(t, m, 112).astype(np.float64)
        via_frame = warp_crop(frame, m, 112).astype(np.float64)
        inner = (slice(20, 92), slice(20, 92))  # away from the frame's own border
        assert np.abs(direct[inner] - via_frame[inner]).mean() < 3.0


def test_mirrored_sequence_keeps_the_markup(faces) -> None:
    rng = np.random.default_rng(0)
    seq = still_sequence(faces[1], 3, rng, p_mirror=1.0)
    assert seq.mirror
    gt = seq.landmarks(0)
    # point 36 is the outer corner of the eye on the image's left, as in every 300-W shape
    assert gt[OUTER_EYE_CORNERS[0], 0] < gt[OUTER_EYE_CORNERS[1], 0]
    assert face_size(gt) == pytest.approx(face_size(faces[1].landmarks), rel=0.2)


def test_photometric_drift_changes_brightness_smoothly(faces) -> None:
    seq = still_sequence(faces[0], 10, np.random.default_rng(5), MotionConfig(shift=0.0, rotation_deg=0.0, scale=0.0),
                         PhotoConfig(gain=0.3, offset=0.1, noise=0.0), p_mirror=0.0)
    m = crop_from_shape(seq.landmarks(0), 64)
    means = np.array([seq.crop(t, m, 64).mean() for t in range(10)])
    steps = np.diff(means)
    assert np.all(steps >= -1e-6) or np.all(steps <= 1e-6)  # linear drift: one direction
    assert abs(means[-1] - means[0]) > 1.0


def _sample(name: str, group: str, lm: np.ndarray) -> FaceSample:
    return FaceSample(Path(f"/x/{name}.jpg"), lm.astype(np.float32), None, "pseudo_v2", "train", "pseudo_v2", group=group)


def test_video_tracks_order_by_frame_and_leave_out_photos() -> None:
    lm = np.zeros((68, 2), np.float32)
    samples = [_sample("a9", "g", lm), _sample("a2", "g", lm), _sample("p", "g", lm), _sample("a5", "g", lm), _sample("b1", "h", lm)]
    sources = {"/x/a9.jpg": "r@c:v.mp4 frame 9", "/x/a2.jpg": "r@c:v.mp4 frame 2", "/x/p.jpg": "r@c:photo.jpg",
               "/x/a5.jpg": "r@c:v.mp4 frame 5", "/x/b1.jpg": "r@c:w.mp4 frame 1"}
    assert video_tracks(samples, sources) == [[1, 3, 0]]  # b1 alone is too short
    assert video_tracks(samples, sources, min_frames=1) == [[1, 3, 0], [4]]


def test_video_sequence_takes_out_the_rigid_motion(faces) -> None:
    # three "frames" of one face, each rotated and shifted in its own image: aligned on the first
    f = faces[0]
    moved = []
    for k in range(3):
        m = cv2.getRotationMatrix2D((40.0, 40.0), 10.0 * k, 1.0 + 0.1 * k)
        moved.append(type(f)(cv2.warpAffine(f.image, m, f.image.shape[1::-1]), apply_affine(m, f.landmarks), None, f.others, f.sample))
    seq = video_sequence(moved, np.random.default_rng(0), MotionConfig(shift=0.0, rotation_deg=0.0, scale=0.0), p_mirror=0.0)
    for t in range(3):
        np.testing.assert_allclose(seq.landmarks(t), seq.landmarks(0), atol=0.05)
        np.testing.assert_allclose(umeyama(seq.landmarks(t), seq.landmarks(0)), np.eye(2, 3), atol=1e-3)


def test_sequence_source_draws_both_kinds(faces) -> None:
    src = SequenceSource(faces, faces, [[0, 1, 2]], p_video=0.5)
    kinds = {isinstance(s, Sequence) and len({id(x) for x in s.faces}) > 1 for s in (src.draw(4, np.random.default_rng(i)) for i in range(12))}
    assert kinds == {True, False}
    s = src.draw(6, np.random.default_rng(0))
    assert len(s) == 6 and len(s.matrices) == 6
