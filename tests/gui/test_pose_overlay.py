"""The head-pose overlay: the head's axes drawn where the pose puts them, yaw/pitch/roll in the
face's label, nothing for a failed pose, and the live tab's toggle."""
from __future__ import annotations

import numpy as np
import pytest

from facetrack.gui.frames import DrawOptions, FaceView, TrackedFrame
from facetrack.gui.overlay import AXIS_COLORS, info_lines, pose_label, render_tracked
from facetrack.tracker.pose import Camera, HeadPose, PoseSolver, default_face_model, head_axes, project

SIZE = (640, 480)


def _posed_face(yaw: float) -> FaceView:
    truth = HeadPose(np.array([0.0, 0.0, 700.0]), np.radians([0.0, yaw, 0.0]), np.zeros(6), True)
    lm = project(default_face_model().points, truth, Camera(), SIZE).astype(np.float32)
    pose = PoseSolver().solve(lm, SIZE)
    return FaceView(0, lm, 0.9, True, tuple(float(v) for v in (*lm.min(0), *lm.max(0))), "tracking", pose)


def _along(p0, p1, t=0.6):
    return np.round(p0 + t * (p1 - p0)).astype(int)


def test_the_axes_are_drawn_along_the_poses_projected_axes():
    face = _posed_face(30.0)
    img = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    out = render_tracked(TrackedFrame(0, 0.0, img, (face,)), DrawOptions(points=False, lines=False, box=False, info=False))
    p = head_axes(face.pose, Camera(), SIZE, 70.0)
    for end, color in zip(p[1:], AXIS_COLORS):
        x, y = _along(p[0], end)
        assert tuple(int(v) for v in out[y, x]) == color
    assert p[3][0] < p[0][0] - 20  # yaw +30: the nose's axis points to the image's left
    off = render_tracked(TrackedFrame(0, 0.0, img, (face,)), DrawOptions(points=False, lines=False, box=False, info=False,
                                                                          axes=False))
    assert not off.any()


def test_the_label_and_the_info_lines_give_yaw_pitch_roll():
    face = _posed_face(-25.0)
    assert pose_label(face.pose) == "yaw -25 pitch 0 roll 0"
    frame = TrackedFrame(0, 0.0, np.zeros((SIZE[1], SIZE[0], 3), np.uint8), (face,))
    assert info_lines(frame)[-1].endswith("yaw -25 pitch 0 roll 0")


def test_a_failed_or_missing_pose_draws_no_axes_and_no_angles():
    face = _posed_face(10.0)
    img = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    for pose in (HeadPose.failed(), None):
        f = FaceView(0, face.landmarks, 0.9, True, face.box, "tracking", pose)
        out = render_tracked(TrackedFrame(0, 0.0, img, (f,)), DrawOptions(points=False, lines=False, box=False, info=False))
        assert not out.any()
        assert pose_label(pose) == ""


@pytest.mark.gui
def test_the_live_tab_has_a_head_axes_toggle(qtbot, make_window):
    win = make_window()
    assert win.live.axes.isChecked() and win.live.options().axes
    win.live.axes.setChecked(False)
    assert win.live.options().axes is False


def test_the_inference_worker_passes_each_faces_pose_to_the_window():
    """The window draws from FaceView copies: the pose must survive the copy (it was once left
    out, and the toggle then drew nothing)."""
    from facetrack.gui.workers import to_face_view
    from facetrack.tracker.results import FaceResult, FaceState

    face = _posed_face(20.0)
    result = FaceResult(0, face.landmarks, 0.9, True, face.box, FaceState.TRACKING, face.pose)
    view = to_face_view(result)
    assert view.pose is face.pose and pose_label(view.pose).startswith("yaw")
