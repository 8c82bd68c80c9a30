"""Drawing helpers shared by the CLI's overlay video and the GUI: pure functions that take a
BGR ``uint8`` image and return a new one (the input is never changed)."""
from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from facetrack.tracker.markup import DRAW_EDGES

GREEN = (80, 220, 80)
RED = (60, 60, 230)
YELLOW = (40, 210, 240)
WHITE = (255, 255, 255)


#: Points farther than this from the origin (px) are not drawn: OpenCV's fixed-point
#: coordinates would overflow, and such points are garbage anyway.
_FAR = 1e6


def draw_landmarks(image: np.ndarray, landmarks: np.ndarray, color: tuple[int, int, int] = GREEN,
                   points: bool = True, lines: bool = True, radius: int | None = None) -> np.ndarray:
    """Draw landmarks ``(N, 2)`` (x, y) image px; for 68 points also the standard contour lines.

    ``image``: BGR (or grey) ``uint8`` ``(H, W[, 3])``. Non-finite (or absurdly far) points are
    skipped with the lines that touch them; the rest is drawn. Returns a copy; the input is
    never changed. Point radius and line width follow the face's size unless ``radius`` is given.
    """
    out = np.array(image, copy=True)
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        return out
    ok = np.isfinite(pts).all(1) & (np.abs(np.nan_to_num(pts, nan=0.0)) < _FAR).all(1)
    if not ok.any():
        return out
    good = pts[ok]
    size = float(np.linalg.norm(good.max(0) - good.min(0)))
    r = radius if radius is not None else max(1, int(round(size / 150)))
    thick = max(1, int(round(size / 300)))
    shift = 4  # sub-pixel drawing
    ip = np.round(np.where(ok[:, None], pts, 0.0) * (1 << shift)).astype(np.int32)
    if lines and len(pts) == 68:
        for a, b in DRAW_EDGES:
            if ok[a] and ok[b]:
                cv2.line(out, tuple(int(v) for v in ip[a]), tuple(int(v) for v in ip[b]), color, thick, cv2.LINE_AA, shift)
    if points:
        for p, keep in zip(ip, ok):
            if keep:
                cv2.circle(out, tuple(int(v) for v in p), r << shift, color, -1, cv2.LINE_AA, shift)
    return out


def draw_box(image: np.ndarray, box: Sequence[float], color: tuple[int, int, int] = YELLOW,
             label: str | None = None) -> np.ndarray:
    """Draw an ``(x0, y0, x1, y1)`` box with an optional label above it. Returns a copy."""
    out = np.array(image, copy=True)
    b = np.asarray(box, np.float64)
    if b.shape != (4,) or not np.isfinite(b).all():
        return out
    x0, y0, x1, y1 = (int(round(v)) for v in b)
    cv2.rectangle(out, (x0, y0), (x1, y1), color, 1, cv2.LINE_AA)
    if label:
        cv2.putText(out, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return out


def draw_text(image: np.ndarray, lines: Iterable[str], origin: tuple[int, int] = (8, 18),
              color: tuple[int, int, int] = WHITE) -> np.ndarray:
    """Draw lines of text with a dark outline (readable on any background). Returns a copy."""
    out = np.array(image, copy=True)
    x, y = origin
    for line in lines:
        cv2.putText(out, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
        y += 18
    return out


def draw_face(image: np.ndarray, face: object, color: tuple[int, int, int] | None = None, points: bool = True,
              lines: bool = True, box: bool = True, label: str | None = None) -> np.ndarray:
    """One reported face (``.face_id``, ``.landmarks`` (68, 2) image px, ``.confidence``,
    ``.success``, ``.box``): its landmarks and contour lines when it was fitted, its box with
    ``label`` (default ``"face ID CONF"``, ``" lost"`` when lost). ``color``: default green, red
    when lost. Returns a new image."""
    ok = bool(getattr(face, "success"))
    color = color or (GREEN if ok else RED)
    out = image
    if ok and (points or lines):
        out = draw_landmarks(out, getattr(face, "landmarks"), color, points=points, lines=lines)
    face_box = getattr(face, "box", None)
    if box and face_box is not None:
        if label is None:
            label = f"face {getattr(face, 'face_id')} {float(getattr(face, 'confidence')):.2f}{'' if ok else ' lost'}"
        out = draw_box(out, face_box, color, label)
    return out if out is not image else np.array(image, copy=True)


def annotate(frame: np.ndarray, result: object, text: Sequence[str] = ()) -> np.ndarray:
    """``frame`` (grey, BGR or BGRA, any dtype) as a BGR ``uint8`` image with every face of
    ``result`` (a frame result with ``.faces``, or a sequence of faces) drawn by
    :func:`draw_face`, and ``text`` lines at the top left. The drawer of the CLI's overlay video
    and of :func:`facetrack.annotate`."""
    from facetrack.tracker.geometry import to_gray

    img = frame
    if img.ndim == 2 or img.shape[2] != 3 or img.dtype != np.uint8:
        img = cv2.cvtColor(to_gray(img), cv2.COLOR_GRAY2BGR)
    faces = getattr(result, "faces", result)
    for f in faces:
        img = draw_face(img, f)
    if img is frame:
        img = np.array(frame, copy=True)
    return draw_text(img, text) if text else img
