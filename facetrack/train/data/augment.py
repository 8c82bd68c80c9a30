"""Training augmentation: one similarity drives image and landmarks together.

A crop is made exactly as the tracker makes one (:mod:`facetrack.tracker.geometry`): start from
``crop_from_shape(gt, S)`` or, for a share of samples, from a jittered box as a detector would
give (``crop_from_box``), compose a random rotation / scale / shift about the crop centre and
an optional horizontal mirror, and render with ``warp_crop``. Photometric changes follow on
the crop. Negatives (background, strongly misaligned faces) train the confidence head.

All randomness comes from the ``numpy.random.Generator`` passed in; nothing global.
Crops are ``uint8`` ``(S, S)`` grey; landmarks ``(68, 2)`` float32 (x, y) crop px.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetrack.tracker.geometry import (
    FACE_FRACTION,
    apply_affine,
    box_of,
    compose_affine,
    crop_from_box,
    crop_from_shape,
    face_size,
    similarity_matrix,
    template,
    warp_crop,
)
from facetrack.tracker.markup import mirror_landmarks

from facetrack.train.data.datasets import CachedFace


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes (uniform in ``[-x, x]`` unless said).

    Geometry: ``rotation_deg``, ``scale`` (relative), ``shift`` (fraction of the face size),
    ``p_mirror``, ``p_box`` (share of crops made from a jittered box instead of the shape),
    ``box_jitter`` (each box side moves by up to this fraction of the box size).
    Photometric (``p_*`` are probabilities): ``colour`` per-channel gain, ``brightness``
    (fraction of 255), ``contrast`` (relative), ``gamma`` (log-uniform in ``[1/g, g]``),
    ``blur_sigma`` max, ``noise_sigma`` max grey levels, occlusion rectangles up to
    ``occlusion_max`` of the crop side. ``p_negative``: share of negatives in a batch.
    ``p_profile``: share of face crops whose face is first turned further by ``profile_low`` to
    ``profile_high`` degrees of yaw (:mod:`facetrack.train.data.profile`; 0: never, and no random
    number is drawn for it, so runs without it see the batches they saw before it existed).
    """

    rotation_deg: float = 30.0
    scale: float = 0.15
    shift: float = 0.10
    p_mirror: float = 0.5
    p_box: float = 0.5
    box_jitter: float = 0.05
    photometric: bool = True
    colour: float = 0.2
    brightness: float = 0.2
    contrast: float = 0.4
    gamma: float = 1.6
    p_blur: float = 0.3
    blur_sigma: float = 1.5
    p_noise: float = 0.5
    noise_sigma: float = 8.0
    p_occlusion: float = 0.3
    occlusion_max: float = 0.4
    p_negative: float = 0.2
    p_profile: float = 0.0
    profile_low: float = 20.0
    profile_high: float = 55.0


#: Geometry only, no photometric change (tests, validation).
GEOMETRY_ONLY = AugmentConfig(photometric=False, p_negative=0.0)
#: No change at all: the plain crop from the shape, no negatives (overfit checks).
NO_AUGMENT = AugmentConfig(rotation_deg=0.0, scale=0.0, shift=0.0, p_mirror=0.0, p_box=0.0, photometric=False, p_negative=0.0)


@dataclass(frozen=True)
class FaceCrop:
    """One augmented sample.

    ``crop``: ``uint8`` ``(S, S)`` grey. ``landmarks``: ``(68, 2)`` float32 crop px (for a
    negative: where the face's points fall, possibly far outside). ``is_face``: ``False`` for
    negatives. ``matrix``: ``(2, 3)`` cached-image px -> crop px (mirror included).
    """

    crop: np.ndarray
    landmarks: np.ndarray
    is_face: bool
    matrix: np.ndarray


def about_centre(size: int, scale: float, angle_rad: float, tx: float, ty: float) -> np.ndarray:
    """Crop -> crop similarity: rotate and scale about the crop centre, then shift by ``(tx, ty)`` px."""
    c = (size - 1) / 2.0  # pixel-centre convention: the centre of an S-pixel crop
    rot = similarity_matrix(scale, angle_rad, 0.0, 0.0)
    to_c = np.array([[1.0, 0.0, -c], [0.0, 1.0, -c]])
    back = np.array([[1.0, 0.0, c + tx], [0.0, 1.0, c + ty]])
    return compose_affine(back, compose_affine(rot, to_c))


def _mirror_matrix(width: int) -> np.ndarray:
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def base_matrix(shape: np.ndarray, size: int, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Image -> crop transform before the random similarity: from the shape, or (``p_box``)
    from the shape's tight box with each side jittered, as a calibrated detector box would be."""
    if rng.random() < cfg.p_box:
        b = box_of(shape).astype(np.float64)
        w, h = b[2] - b[0], b[3] - b[1]
        j = rng.uniform(-cfg.box_jitter, cfg.box_jitter, 4) * np.array([w, h, w, h])
        return crop_from_box(b + j, size)
    return crop_from_shape(shape, size)


def random_similarity(size: int, rng: np.random.Generator, rotation_deg: float, scale: float, shift: float) -> np.ndarray:
    """A crop -> crop similarity about the centre: rotation, scale ``1 ± scale``, shift in
    fractions of the template face size."""
    face = FACE_FRACTION * size
    ang = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
    s = 1.0 + rng.uniform(-scale, scale)
    t = rng.uniform(-shift, shift, 2) * face
    return about_centre(size, s, ang, float(t[0]), float(t[1]))


def _mirrored(face: CachedFace, rng: np.random.Generator, p: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(image -> frame matrix, landmarks in that frame, box in that frame)``."""
    if rng.random() < p:
        w = face.image.shape[1]
        box = None
        if face.box is not None:
            box = np.array([w - 1 - face.box[2], face.box[1], w - 1 - face.box[0], face.box[3]], np.float32)
        return _mirror_matrix(w), mirror_landmarks(face.landmarks, w), box
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), face.landmarks, face.box


def positive_matrix(face: CachedFace, size: int, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix cached image -> crop, landmarks (68, 2) crop px)`` of a jittered face crop."""
    flip, shape, _ = _mirrored(face, rng, cfg.p_mirror)
    m = compose_affine(random_similarity(size, rng, cfg.rotation_deg, cfg.scale, cfg.shift), base_matrix(shape, size, rng, cfg))
    return compose_affine(m, flip), apply_affine(m, shape)


def negative_matrix(face: CachedFace, size: int, rng: np.random.Generator, cfg: AugmentConfig,
                    background: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A crop that holds no well-framed face: half background regions at least one face size
    away from every face of ``face.others`` and this one, half the face shifted by more than
    half its size or scaled by about 2x (``background``: force the kind; ``None``: draw it).
    Returns ``(matrix, face landmarks in crop px)``."""
    flip, shape, _ = _mirrored(face, rng, cfg.p_mirror)
    side = face_size(shape)
    h, w = face.image.shape[:2]
    if (rng.random() < 0.5) if background is None else background:
        centres = [box_of(shape)]
        centres += [b for b in face.others]
        cs = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in centres], np.float64)
        sides = np.array([np.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 1.0)) for b in centres])
        for _ in range(20):
            s = side * rng.uniform(0.7, 1.4)
            c = rng.uniform([s / 2, s / 2], [max(w - s / 2, s / 2 + 1), max(h - s / 2, s / 2 + 1)])
            if np.all(np.linalg.norm(cs - c, axis=1) >= np.maximum(sides, s) * 1.0):
                m0 = crop_from_box(np.array([c[0] - s / 2, c[1] - s / 2, c[0] + s / 2, c[1] + s / 2]), size)
                m = compose_affine(random_similarity(size, rng, cfg.rotation_deg, 0.0, 0.0), m0)
                return compose_affine(m, flip), apply_affine(m, shape)
    face_crop = FACE_FRACTION * size
    if rng.random() < 0.5:
        ang = rng.uniform(0, 2 * np.pi)
        d = rng.uniform(0.55, 1.0) * face_crop
        sim = about_centre(size, 1.0, 0.0, d * np.cos(ang), d * np.sin(ang))
    else:
        k = 2.0 ** (rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 1.3))
        sim = about_centre(size, k, 0.0, 0.0, 0.0)
    sim = compose_affine(random_similarity(size, rng, cfg.rotation_deg, 0.0, 0.0), sim)
    m = compose_affine(sim, crop_from_shape(shape, size))
    return compose_affine(m, flip), apply_affine(m, shape)


def photometric(crop: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Colour jitter (BGR crops, before the grey conversion), then brightness, contrast,
    gamma, blur, Gaussian noise and occlusion rectangles. ``uint8`` grey ``(S, S)`` out.
    With ``cfg.photometric`` off: the plain grey conversion, no random change at all."""
    f = crop.astype(np.float32)
    if f.ndim == 3:
        if cfg.photometric:  # no colour gain either when photometric changes are off
            f = f * rng.uniform(1 - cfg.colour, 1 + cfg.colour, 3).astype(np.float32)
        f = cv2.cvtColor(np.clip(f, 0, 255), cv2.COLOR_BGR2GRAY)
    if not cfg.photometric:
        return np.clip(f + 0.5, 0, 255).astype(np.uint8)
    mean = float(f.mean())
    f = (f - mean) * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    f = f + rng.uniform(-cfg.brightness, cfg.brightness) * 255.0
    f = np.clip(f, 0, 255)
    g = float(np.exp(rng.uniform(-np.log(cfg.gamma), np.log(cfg.gamma))))
    f = 255.0 * (f / 255.0) ** g
    if rng.random() < cfg.p_blur:
        f = cv2.GaussianBlur(f, (0, 0), float(rng.uniform(0.3, cfg.blur_sigma)))
    if rng.random() < cfg.p_occlusion:
        s = f.shape[0]
        for _ in range(int(rng.integers(1, 3))):
            rw, rh = (rng.uniform(0.1, cfg.occlusion_max, 2) * s).astype(int)
            x0, y0 = int(rng.integers(0, s - rw + 1)), int(rng.integers(0, s - rh + 1))
            f[y0 : y0 + rh, x0 : x0 + rw] = rng.uniform(0, 255)
    if rng.random() < cfg.p_noise:
        f = f + rng.normal(0.0, rng.uniform(0, cfg.noise_sigma), f.shape).astype(np.float32)
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def render(face: CachedFace, matrix: np.ndarray, size: int) -> np.ndarray:
    """The crop ``matrix`` defines from the cached image (grey or BGR), with ``warp_crop``."""
    return warp_crop(face.image, matrix, size)


def augment(face: CachedFace, size: int, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig(),
            negative: bool | None = None, background: bool | None = None) -> FaceCrop:
    """One training sample from a cached face. ``negative``: force (``True``/``False``) or
    draw with probability ``cfg.p_negative`` (``None``); ``background``: for a negative, force
    its kind (see :func:`negative_matrix`)."""
    if negative is None:
        negative = bool(rng.random() < cfg.p_negative)
    if negative:
        m, lm = negative_matrix(face, size, rng, cfg, background)
    else:
        m, lm = positive_matrix(face, size, rng, cfg)
    crop = photometric(render(face, m, size), rng, cfg)
    return FaceCrop(crop, lm.astype(np.float32), not negative, m)


def mdm_init(gt_crop: np.ndarray, size: int, rng: np.random.Generator, p_template: float = 0.5,
             rotation_deg: float = 8.0, scale: float = 0.06, shift: float = 0.06, point_noise: float = 0.01) -> tuple[np.ndarray, bool]:
    """MDM's starting shape for a training crop: the template (box initialisation, first
    frame) with probability ``p_template``, else the ground truth moved by a small random
    similarity about its centre (rotation, scale ``1 ± scale``, shift in face sizes) plus
    Gaussian per-point noise of ``point_noise`` face sizes (tracking from the previous frame).
    Returns ``((68, 2) float32 crop px, used_template)``.
    """
    if rng.random() < p_template:
        return template(size).copy(), True
    gt = np.asarray(gt_crop, np.float64)
    side = face_size(gt)
    c = gt.mean(0)
    ang = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
    s = 1.0 + rng.uniform(-scale, scale)
    t = rng.uniform(-shift, shift, 2) * side
    r = similarity_matrix(s, ang, 0.0, 0.0)[:, :2]
    out = (gt - c) @ r.T + c + t + rng.normal(0.0, point_noise * side, gt.shape)
    return out.astype(np.float32), False
