"""How a face moved between two frames, measured on the image by sparse optical flow.

The landmark models fit every frame on its own, so each fit carries its own small error; a
filter can average those errors away only if it knows how the face really moved, or it lags
behind the motion. :func:`face_motion` measures that motion apart from the fits: pyramidal
Lucas-Kanade flow of the face's rigid points (brows, nose, eyes: the landmarks least moved by
speech) from the previous frame to this one, checked forward and backward, and a similarity
fitted to the points that agree (RANSAC). :class:`facetrack.tracker.smoothing.PoseShapeFilter`
moves its state by it before it filters the new fit, so its pose filter only smooths what the
flow does not explain.

Flow runs on a copy of the face's region shrunk by an integer factor (the fast area filter of
OpenCV) to about ``TARGET_SIZE`` px of face: a 60-px face has texture enough for a few pixels
of window, and the cost stays the same for a close-up and a small face.
"""
from __future__ import annotations

import cv2
import numpy as np

from facetrack.tracker.geometry import box_of, face_size

#: Face size (geometric-mean side of the landmarks' box, px) the region is shrunk to.
TARGET_SIZE = 64.0
#: Landmarks whose flow is measured: brows, nose and eyes (17-47), which move with the head
#: and little with speech; RANSAC drops those a blink moves.
RIGID = slice(17, 48)
#: Region around the landmarks' box, as a fraction of its sides (the face may have moved out of it).
MARGIN = 0.15
WINDOW = 9  # Lucas-Kanade window, px of the shrunk region
LEVELS = 2  # pyramid levels above the shrunk region: motions up to about 4 * WINDOW px there
#: A point is kept when flowing it back lands within this many px (shrunk region) of where it started.
MAX_BACK_ERROR = 0.3
MIN_POINTS = 8


def face_motion(prev: np.ndarray, cur: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """The similarity ``(2, 3)`` float64 (OpenCV's ``warpAffine`` convention) that takes image px
    of ``prev`` to image px of ``cur`` around a face whose ``landmarks`` (``(68, 2)``, image px)
    were fitted in ``prev``; ``None`` when the flow does not say (too few points that flow
    there and back again and agree on one similarity, a region off the frame, frames of
    different sizes). ``prev``, ``cur``: ``uint8`` grey frames.
    """
    pts = np.asarray(landmarks, np.float64)
    if prev.shape != cur.shape or prev.ndim != 2 or pts.shape != (68, 2) or not np.isfinite(pts).all():
        return None
    h, w = prev.shape
    x0, y0, x1, y1 = box_of(pts)
    mx, my = MARGIN * (x1 - x0), MARGIN * (y1 - y0)
    k = max(1, int(face_size(pts) / TARGET_SIZE))
    X0, Y0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
    # whole multiples of k, so the area filter takes its fast integer path
    X1 = X0 + (int(min(w, x1 + mx)) - X0) // k * k
    Y1 = Y0 + (int(min(h, y1 + my)) - Y0) // k * k
    if (X1 - X0) // k < 16 or (Y1 - Y0) // k < 16:
        return None
    a, b = prev[Y0:Y1, X0:X1], cur[Y0:Y1, X0:X1]
    if k > 1:
        size = ((X1 - X0) // k, (Y1 - Y0) // k)
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    start = ((pts[RIGID] - (X0, Y0)) / k).astype(np.float32).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03)
    fwd, ok_f, _ = cv2.calcOpticalFlowPyrLK(a, b, start, None, winSize=(WINDOW, WINDOW), maxLevel=LEVELS, criteria=criteria)
    back, ok_b, _ = cv2.calcOpticalFlowPyrLK(b, a, fwd, None, winSize=(WINDOW, WINDOW), maxLevel=LEVELS, criteria=criteria)
    good = (ok_f[:, 0] == 1) & (ok_b[:, 0] == 1) & (np.linalg.norm((back - start)[:, 0], axis=1) < MAX_BACK_ERROR)
    if good.sum() < MIN_POINTS:
        return None
    src = start[good, 0].astype(np.float64) * k + (X0, Y0)
    dst = fwd[good, 0].astype(np.float64) * k + (X0, Y0)
    m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=max(1.0, 0.5 * k))
    if m is None or inliers is None or int(inliers.sum()) < MIN_POINTS or not np.isfinite(m).all():
        return None
    return m.astype(np.float64)
