"""Pure drawing for the app: take a BGR ``uint8`` image and return a new one.

Built on :mod:`facetrack.tracker.draw` (shared with the CLI's overlay video); nothing here knows Qt, so
the same functions draw the live view, the recorded overlay video and the 300VW review player.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from facetrack.gui.frames import DrawOptions, FaceView, TrackedFrame
from facetrack.tracker import draw
from facetrack.tracker.draw import GREEN, RED, WHITE, YELLOW, draw_landmarks, draw_text

#: tracker state -> what the window calls it
STATE_LABELS = {"tracking": "tracking", "detected": "re-detecting", "lost": "lost"}
#: tracker state -> BGR colour of its landmarks and box
STATE_COLORS = {"tracking": GREEN, "detected": YELLOW, "lost": RED}
GT_COLOR = GREEN
PRED_COLOR = (255, 120, 40)  # blue-ish in BGR, distinct from the ground truth's green


def state_label(state: str) -> str:
    """Human name of a tracker state (``"detected"`` is shown as ``"re-detecting"``)."""
    return STATE_LABELS.get(state, state)


#: BGR colours of the head's x (the face's left-right: red), y (down: cyan, not the landmarks'
#: green) and z (out of the face: blue) axes
AXIS_COLORS = ((60, 60, 230), (230, 230, 40), (255, 120, 40))


def pose_label(pose: object) -> str:
    """``"yaw 12 pitch -5 roll 2"`` (degrees; signs of :mod:`facetrack.tracker.pose`), ``""``
    without a solved pose."""
    if pose is None or not getattr(pose, "success", False):
        return ""
    return f"yaw {round(pose.yaw)} pitch {round(pose.pitch)} roll {round(pose.roll)}"  # ints: no "-0"


def draw_head_axes(image: np.ndarray, pose: object, length_mm: float = 70.0) -> np.ndarray:
    """The head's three axes from ``pose`` (a solved :class:`facetrack.tracker.pose.HeadPose`)
    through OpenFace's default camera for the image's size (the one the app's tracker assumes),
    the out-of-face axis along the nose. Returns a copy; nothing drawn without a solved pose."""
    out = np.array(image, copy=True)
    if pose is None or not getattr(pose, "success", False):
        return out
    from facetrack.tracker.pose import Camera, head_axes

    h, w = out.shape[:2]
    p = head_axes(pose, Camera(), (w, h), length_mm)
    if not (np.isfinite(p).all() and (np.abs(p) < 1e5).all()):
        return out
    size = float(np.hypot(*(p[1] - p[0])))
    thick = max(2, int(round(size / 40)))
    o = tuple(int(round(v)) for v in p[0])
    for end, color in zip(p[1:], AXIS_COLORS):
        cv2.line(out, o, tuple(int(round(v)) for v in end), color, thick, cv2.LINE_AA)
    return out


def draw_face(image: np.ndarray, face: FaceView, options: DrawOptions) -> np.ndarray:
    """One face: landmarks ``(68, 2)`` image px, contour lines, the head's axes, box with
    confidence, state and yaw/pitch/roll."""
    pose = getattr(face, "pose", None) if face.success else None
    label = f"#{face.face_id} {state_label(face.state)} {face.confidence:.2f}"
    if pose_label(pose):
        label += f" {pose_label(pose)}"
    out = draw.draw_face(image, face, STATE_COLORS.get(face.state, GREEN), points=options.points, lines=options.lines,
                         box=options.box, label=label)
    return draw_head_axes(out, pose) if options.axes and pose is not None else out


def info_lines(frame: TrackedFrame, backend: str = "") -> list[str]:
    """The status text drawn in the corner: frame, fps, latency, drops, backend, state."""
    # the tracker's "total" already holds its stages (detect, crop, infer, post)
    total = frame.timings.get("total", sum(frame.timings.values())) if frame.timings else 0.0
    lines = [f"frame {frame.index + 1}  {frame.fps:4.1f} fps",  # short lines: narrow portrait videos
             f"latency {frame.latency_ms:.1f} ms  tracker {total:.1f} ms" + (f"  dropped {frame.dropped}" if frame.dropped else "")]
    if backend:
        lines.append(backend)
    if not frame.model_loaded:
        lines.append("no model loaded")
    elif not frame.faces:
        lines.append("no face")
    for f in frame.faces:
        angles = pose_label(getattr(f, "pose", None)) if f.success else ""
        lines.append(f"face {f.face_id}: {state_label(f.state)}  conf {f.confidence:.2f}" + (f"  {angles}" if angles else ""))
    return lines


def render_tracked(frame: TrackedFrame, options: DrawOptions = DrawOptions(), backend: str = "") -> np.ndarray:
    """The live view of a :class:`TrackedFrame`: every face and (optionally) the info text."""
    out = np.array(frame.image, copy=True)
    for face in frame.faces:
        out = draw_face(out, face, options)
    if options.info:
        out = draw_text(out, info_lines(frame, backend))
    return out


def render_comparison(image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None,
                      caption: Sequence[str] = ()) -> np.ndarray:
    """Ground truth (green) and prediction (blue) ``(68, 2)`` image px on one frame, with a legend.

    Either may be ``None`` (frame not annotated / not predicted) or contain NaN (skipped).
    """
    out = np.array(image, copy=True)
    if gt is not None:
        out = draw_landmarks(out, gt, GT_COLOR, points=True, lines=True)
    if pred is not None:
        out = draw_landmarks(out, pred, PRED_COLOR, points=True, lines=True)
    lines = [(t, WHITE) for t in caption] + [("ground truth", GT_COLOR), ("prediction", PRED_COLOR)]
    return draw_caption(out, lines)


def draw_caption(image: np.ndarray, lines: Sequence[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """Outlined text lines ``(text, BGR colour)`` at the top left, sized to the image width so
    they stay readable when a large frame is shown scaled down. Returns a copy."""
    out = np.array(image, copy=True)
    scale = max(0.5, out.shape[1] / 700.0)
    step = int(round(26 * scale))
    y = step
    for text, color in lines:
        for c, thick in (((0, 0, 0), max(3, int(round(3 * scale)))), (color, max(1, int(round(scale))))):
            cv2.putText(out, text, (int(8 * scale), y), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, c, thick, cv2.LINE_AA)
        y += step
    return out
