"""2-D transforms and the crop convention shared by training and tracking.

Every model sees a square grey crop of ``size`` pixels in which the face sits like the
*template*: the mean shape scaled so that its bounding box's geometric-mean side is
``FACE_FRACTION * size``, centred in the crop. Training crops are made by the same functions
(with jitter), so a tracker crop from the previous landmarks or from a calibrated face box
looks like what the model was trained on.

Transforms are ``(2, 3)`` float64 affine matrices ``A`` mapping a column ``(x, y, 1)`` to
``A @ (x, y, 1)``: OpenCV's ``warpAffine`` convention (source image -> crop).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from facetrack.tracker.markup import OUTER_EYE_CORNERS, mean_shape

#: Geometric-mean side of the template's bounding box over the crop side.
FACE_FRACTION = 0.55


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(..., 2)`` points through a ``(2, 3)`` affine matrix; float32 out."""
    pts = np.asarray(points, dtype=np.float64)
    out = pts @ matrix[:, :2].T + matrix[:, 2]
    return out.astype(np.float32)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine matrix."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer ∘ inner``: first ``inner``, then ``outer``."""
    o = np.vstack([outer, [0.0, 0.0, 1.0]])
    i = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


def similarity_matrix(scale: float, angle_rad: float, tx: float, ty: float) -> np.ndarray:
    """``x' = scale * R(angle) x + t`` as a ``(2, 3)`` matrix (angle counter-clockwise in
    a y-up frame, i.e. clockwise on screen)."""
    c, s = scale * np.cos(angle_rad), scale * np.sin(angle_rad)
    return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float64)


def similarity_scale(matrix: np.ndarray) -> float:
    """Isotropic scale of a similarity (square root of the determinant's magnitude)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def umeyama(src: np.ndarray, dst: np.ndarray, rotation: bool = True) -> np.ndarray:
    """Least-squares similarity mapping ``src`` points onto ``dst`` (Umeyama 1991).

    ``src``, ``dst``: ``(N, 2)``. With ``rotation=False`` only scale and translation are
    fitted (scale from the ratio of RMS spreads about the centroids).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape:
        raise ValueError(f"umeyama needs two (N, 2) point sets of the same N, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("degenerate source points: all points coincide")
    if not rotation:
        scale = np.sqrt((d0**2).sum() / len(dst) / var_s)
        return np.array([[scale, 0, mu_d[0] - scale * mu_s[0]], [0, scale, mu_d[1] - scale * mu_s[1]]])
    # the 2-D least-squares similarity in closed form (Umeyama's SVD solution, without the SVD:
    # a quarter of the cost, and this runs for every tracked face in every frame)
    n2 = (s0**2).sum()
    a = float((s0 * d0).sum() / n2)
    b = float((s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum() / n2)
    sr = np.array([[a, -b], [b, a]])
    t = mu_d - sr @ mu_s
    return np.hstack([sr, t[:, None]])


def box_of(points: np.ndarray) -> np.ndarray:
    """Tight box ``(x0, y0, x1, y1)`` float32 of ``(N, 2)`` points."""
    pts = np.asarray(points)
    return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    """Area of the intersection of two ``(x0, y0, x1, y1)`` boxes."""
    iw = max(0.0, min(float(a[2]), float(b[2])) - max(float(a[0]), float(b[0])))
    ih = max(0.0, min(float(a[3]), float(b[3])) - max(float(a[1]), float(b[1])))
    return iw * ih


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (same frame, any units)."""
    inter = _intersection(a, b)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area of two ``(x0, y0, x1, y1)`` boxes: 1 when one
    holds the other, whatever their sizes (where IoU stays low for a small box inside a large one)."""
    smaller = min(float((a[2] - a[0]) * (a[3] - a[1])), float((b[2] - b[0]) * (b[3] - b[1])))
    return _intersection(a, b) / smaller if smaller > 0 else 0.0


def face_size(points: np.ndarray, at_least: float = 0.0) -> float:
    """Geometric-mean side of the tight box of ``(N, 2)`` points, px: the size the crop
    convention normalises (0 for a degenerate shape), and at least ``at_least`` (1 where a
    caller divides by it: the smoothing's speeds, the checks' scale ratio)."""
    b = box_of(points).astype(np.float64)
    return max(float(at_least), float(np.sqrt(max(float((b[2] - b[0]) * (b[3] - b[1])), 0.0))))


@lru_cache(maxsize=1)
def eye_per_face() -> float:
    """Outer-eye distance over :func:`face_size` of the mean shape (about 0.62)."""
    ms = mean_shape().astype(np.float64)
    a, b = OUTER_EYE_CORNERS
    return float(np.linalg.norm(ms[a] - ms[b]) / face_size(ms))


def eye_scale(points: np.ndarray) -> float:
    """The scale of pose-fair shifts: the outer-eye distance of ``(68, 2)`` points, or the eye
    distance of a frontal face of their size when that is larger. A turned face's eye distance
    shrinks (to about half at 60 degrees of yaw) while its fitting errors do not."""
    p = np.asarray(points, np.float64)
    a, b = OUTER_EYE_CORNERS
    return max(float(np.linalg.norm(p[a] - p[b])), eye_per_face() * face_size(p))


@lru_cache(maxsize=8)
def _template(size: int) -> np.ndarray:
    ms = mean_shape().astype(np.float64)
    lo, hi = ms.min(0), ms.max(0)
    side = np.sqrt((hi - lo).prod())
    t = (ms - (lo + hi) / 2) * (FACE_FRACTION * size / side) + size / 2.0
    t = t.astype(np.float32)
    t.setflags(write=False)
    return t


def template(size: int) -> np.ndarray:
    """The mean shape as it sits in a ``size`` x ``size`` crop, ``(68, 2)`` float32 read-only."""
    return _template(int(size))


def crop_from_shape(shape: np.ndarray, size: int, rotation: bool = True) -> np.ndarray:
    """Image -> crop transform placing ``shape`` (``(68, 2)`` image px) onto the template."""
    return umeyama(shape, template(size), rotation=rotation)


def crop_from_box(box: np.ndarray, size: int) -> np.ndarray:
    """Image -> crop transform placing a *landmark-equivalent* box onto the template's box.

    ``box``: ``(x0, y0, x1, y1)``, meant as an estimate of the tight box of the 68 points
    (see :class:`BoxCalibration` for turning a detector's box into one). Scale from the
    geometric-mean sides, no rotation.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    if not (w > 0 and h > 0):
        raise ValueError(f"empty box {tuple(box)}")
    tb = box_of(template(size)).astype(np.float64)
    t_side = np.sqrt((tb[2] - tb[0]) * (tb[3] - tb[1]))
    scale = t_side / np.sqrt(w * h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    tcx, tcy = (tb[0] + tb[2]) / 2, (tb[1] + tb[3]) / 2
    return np.array([[scale, 0, tcx - scale * cx], [0, scale, tcy - scale * cy]])


@dataclass(frozen=True)
class BoxCalibration:
    """Maps a face box of some source (a detector, the 300-W boxes) to an estimate of the
    tight box of the 68 landmarks: centre shifted by ``(dx, dy)`` box sides, sides scaled
    by ``(sx, sy)``. Fitted on training faces by ``facetrack.train.loops.calibrate``."""

    sx: float = 1.0
    sy: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def __call__(self, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = (float(v) for v in box)
        w, h = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2 + self.dx * w, (y0 + y1) / 2 + self.dy * h
        return np.array([cx - self.sx * w / 2, cy - self.sy * h / 2, cx + self.sx * w / 2, cy + self.sy * h / 2], np.float32)

    def invert(self, box: np.ndarray) -> np.ndarray:
        """The box of this source that maps to the landmark box ``box``: ``invert(self(b)) == b``."""
        x0, y0, x1, y1 = (float(v) for v in box)
        w, h = (x1 - x0) / self.sx, (y1 - y0) / self.sy
        cx, cy = (x0 + x1) / 2 - self.dx * w, (y0 + y1) / 2 - self.dy * h
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)

    @classmethod
    def fit(cls, boxes: np.ndarray, landmark_boxes: np.ndarray) -> "BoxCalibration":
        """Least-squares fit (medians, robust to a few bad boxes) from ``(N, 4)`` pairs."""
        b = np.asarray(boxes, np.float64)
        g = np.asarray(landmark_boxes, np.float64)
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
        dx = ((g[:, 0] + g[:, 2]) - (b[:, 0] + b[:, 2])) / 2 / bw
        dy = ((g[:, 1] + g[:, 3]) - (b[:, 1] + b[:, 3])) / 2 / bh
        return cls(float(np.median(gw / bw)), float(np.median(gh / bh)), float(np.median(dx)), float(np.median(dy)))


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any frame (grey, BGR, BGRA; uint8, uint16, float or other numeric) -> ``uint8`` grey ``(H, W)``.

    ``uint8`` grey is returned as is; ``uint16`` keeps its high byte; floats with a maximum of
    at most 1 are taken as [0, 1], other values as [0, 255] (clipped; NaN and inf read as 0).
    Raises ``ValueError`` for arrays that are not an image (wrong rank, 2 or 5+ channels, empty).
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise ValueError(f"image with {img.shape[2]} channels is not supported")
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"not an image: array of shape {np.asarray(image).shape}")
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        img = img.astype(np.float32)  # cvtColor takes only 8U, 16U and 32F
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    f = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if f.size and f.max() <= 1.0:
        f = f * 255.0
    return np.clip(f, 0, 255).astype(np.uint8)


def warp_crop(gray: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Sample the ``size`` x ``size`` crop ``matrix`` defines from a ``uint8`` grey image.

    Shrinking by more than 2x is done on a copy of only the region needed, first halved
    ``n`` times (each halving a 2x2 mean), so a face in a 4K frame is not aliased and what is
    left for the warp is a shrink of at most 2x. Outside the image reads as 0 (black); at the
    right and bottom image edges up to ``2**n - 1`` source pixels may read as outside.
    Returns ``uint8`` ``(size, size)``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    scale = similarity_scale(m)
    if scale < 0.5:
        k = 1 << int(np.floor(np.log2(1.0 / scale)))  # residual shrink scale * k in (0.5, 1]
        inv = invert_affine(m)
        corners = apply_affine(inv, np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64))
        h, w = gray.shape[:2]
        x0 = int(max(0, np.floor(corners[:, 0].min()) - k))
        y0 = int(max(0, np.floor(corners[:, 1].min()) - k))
        x1 = min(w, int(np.ceil(corners[:, 0].max())) + k)
        y1 = min(h, int(np.ceil(corners[:, 1].max())) + k)
        # whole multiples of k: each halving is then exact, which OpenCV's bilinear resize
        # computes as a 2x2 mean (an area filter) several times faster than INTER_AREA
        x1, y1 = x0 + (x1 - x0) // k * k, y0 + (y1 - y0) // k * k
        if x1 > x0 and y1 > y0:
            small = gray[y0:y1, x0:x1]
            for _ in range(k.bit_length() - 1):
                small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
            f = 1.0 / k
            # crop <- small: undo the shrink and the ROI offset (pixel centres: x_s = (x+0.5)f-0.5)
            to_small = np.array([[f, 0, 0.5 * f - 0.5 - f * x0], [0, f, 0.5 * f - 0.5 - f * y0]])
            m = compose_affine(m, invert_affine(to_small))
            gray = small
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def to_input(crop: np.ndarray) -> np.ndarray:
    """``uint8`` crop ``(S, S)`` -> model input ``(1, 1, S, S)`` float32 in [0, 1]."""
    return (crop.astype(np.float32) * (1.0 / 255.0))[None, None]
