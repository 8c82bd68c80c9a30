"""Augmentation: image and landmarks move together, mirroring swaps roles, seeds reproduce."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.tracker.geometry import template
from facetrack.tracker.markup import mean_shape
from facetrack.eval.metrics import nme
from facetrack.train.data.augment import GEOMETRY_ONLY, AugmentConfig, augment, face_size, mdm_init, photometric
from facetrack.train.data.datasets import CachedFace, FaceSample, build_cache, load_images68

S = 112


def _dot_face(radius: int = 3, only: int | None = None, size: int = 420, side: float = 120.0) -> CachedFace:
    """A black picture with white dots at a face's 68 landmarks (or only at point ``only``)."""
    ms = mean_shape().astype(np.float64)
    lo, hi = ms.min(0), ms.max(0)
    lm = ((ms - (lo + hi) / 2) * side / np.sqrt((hi - lo).prod()) + size / 2).astype(np.float32)
    img = np.zeros((size, size), np.uint8)
    for i, p in enumerate(lm):
        if only is None or i == only:
            cv2.circle(img, (int(round(p[0])), int(round(p[1]))), radius, 255, -1)
    sample = FaceSample(Path("synthetic.png"), lm)
    return CachedFace(img, lm, None, np.zeros((0, 4), np.float32), sample)


@pytest.mark.parametrize("seed", range(12))
def test_dots_land_on_the_transformed_landmarks(seed: int) -> None:
    face = _dot_face()
    fc = augment(face, S, np.random.default_rng(seed), GEOMETRY_ONLY)
    assert fc.is_face and fc.crop.shape == (S, S) and fc.crop.dtype == np.uint8
    inside = [(p) for p in fc.landmarks if 3 <= p[0] <= S - 4 and 3 <= p[1] <= S - 4]
    assert len(inside) > 50
    for p in inside:  # a bright pixel at (or right next to) every landmark
        x, y = int(round(p[0])), int(round(p[1]))
        assert fc.crop[y - 1 : y + 2, x - 1 : x + 2].max() > 120, (seed, p)
    # and nothing bright far from every landmark
    yy, xx = np.mgrid[0:S, 0:S]
    d = np.min(np.hypot(xx[..., None] - fc.landmarks[:, 0], yy[..., None] - fc.landmarks[:, 1]), axis=-1)
    assert fc.crop[d > 4].max() < 40


def test_matrix_maps_landmarks() -> None:
    face = _dot_face()
    fc = augment(face, S, np.random.default_rng(5), replace(GEOMETRY_ONLY, p_mirror=0.0))
    pts = face.landmarks.astype(np.float64) @ fc.matrix[:, :2].T + fc.matrix[:, 2]
    assert np.allclose(pts, fc.landmarks, atol=1e-3)


@pytest.mark.parametrize("seed", range(6))
def test_mirror_swaps_point_roles(seed: int) -> None:
    face = _dot_face(radius=4, only=36)  # one blob: the image-left outer eye corner
    for p_mirror, where in ((0.0, 36), (1.0, 45)):
        fc = augment(face, S, np.random.default_rng(seed), replace(GEOMETRY_ONLY, p_mirror=p_mirror))
        blob = np.unravel_index(np.argmax(cv2.GaussianBlur(fc.crop, (0, 0), 1.5)), fc.crop.shape)
        assert np.hypot(blob[1] - fc.landmarks[where, 0], blob[0] - fc.landmarks[where, 1]) < 2.0
        assert fc.landmarks[36, 0] < fc.landmarks[45, 0]  # point 36 stays on the image left


def test_same_seed_same_output_and_seeds_differ(data_dir: Path) -> None:
    faces = build_cache(load_images68(data_dir, "train")[:3], face_px=123)
    cfg = AugmentConfig(p_negative=0.3)
    a = [augment(faces[i % 3], S, np.random.default_rng(7)) for i in range(3)]
    b = [augment(faces[i % 3], S, np.random.default_rng(7)) for i in range(3)]
    for x, y in zip(a, b):
        assert np.array_equal(x.crop, y.crop) and np.array_equal(x.landmarks, y.landmarks) and x.is_face == y.is_face
    rng1, rng2 = np.random.default_rng(1), np.random.default_rng(1)
    s1 = [augment(faces[0], S, rng1, cfg) for _ in range(5)]
    s2 = [augment(faces[0], S, rng2, cfg) for _ in range(5)]
    assert all(np.array_equal(x.crop, y.crop) for x, y in zip(s1, s2))
    c = augment(faces[0], S, np.random.default_rng(2))
    assert not np.array_equal(c.crop, a[0].crop)


def test_plain_crop_matches_the_template_and_negatives_do_not(data_dir: Path) -> None:
    faces = build_cache(load_images68(data_dir, "train")[:8], face_px=123)
    plain = AugmentConfig(rotation_deg=0, scale=0, shift=0, p_mirror=0, p_box=0, photometric=False, p_negative=0)
    rng = np.random.default_rng(0)
    t = template(S)
    for f in faces:
        assert nme(augment(f, S, rng, plain).landmarks, t) < 0.15
    negs = [augment(f, S, rng, AugmentConfig(), negative=True) for f in faces for _ in range(6)]
    assert not any(n.is_face for n in negs)
    errs = np.array([nme(n.landmarks, t) for n in negs])
    assert errs.min() > 0.2, errs.round(2)


def test_photometric_is_grey_uint8_and_changes_the_crop() -> None:
    rng = np.random.default_rng(0)
    colour = np.random.default_rng(1).integers(0, 255, (S, S, 3), dtype=np.uint8)
    out = photometric(colour, rng, AugmentConfig())
    assert out.shape == (S, S) and out.dtype == np.uint8
    # photometric=False with the default colour range: exactly the grey conversion, and no
    # random draw at all (the colour gain used to be applied even then)
    state = rng.bit_generator.state
    plain = photometric(colour, rng, replace(AugmentConfig(), photometric=False))
    assert np.abs(plain.astype(int) - cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)).max() <= 1
    assert rng.bit_generator.state == state
    # ... and with only the colour gain switched on, colour crops do change
    only_colour = replace(AugmentConfig(), contrast=0.0, brightness=0.0, gamma=1.0, p_blur=0.0, p_noise=0.0, p_occlusion=0.0)
    gained = [photometric(colour, rng, only_colour) for _ in range(5)]
    assert max(np.abs(g.astype(int) - plain.astype(int)).max() for g in gained) >= 5
    grey = np.full((S, S), 128, np.uint8)
    outs = [photometric(grey, rng, AugmentConfig()) for _ in range(10)]
    assert len({int(o.mean()) for o in outs}) > 3


def test_mdm_init_template_or_perturbed_truth(data_dir: Path) -> None:
    rng = np.random.default_rng(0)
    gt = template(S) + np.random.default_rng(3).normal(0, 2, (68, 2)).astype(np.float32)
    init, used = mdm_init(gt, S, rng, p_template=1.0)
    assert used and np.array_equal(init, template(S))
    errs = []
    for _ in range(50):
        init, used = mdm_init(gt, S, rng, p_template=0.0)
        assert not used and init.shape == (68, 2) and init.dtype == np.float32
        errs.append(nme(init, gt))
    errs = np.array(errs)
    assert 0.005 < errs.min() and errs.max() < 0.2 and 0.02 < errs.mean() < 0.12
    assert face_size(gt) == pytest.approx(face_size(template(S)), rel=0.05)
    picks = [mdm_init(gt, S, rng, p_template=0.5)[1] for _ in range(200)]
    assert 70 < sum(picks) < 130
