"""Head pose (facetrack.tracker.pose): known poses recovered from projections of the 3-D face,
OpenFace's conventions (Euler order, signs, camera defaults), failed solves, and real faces."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from facetrack.io.landmarks import read_pts
from facetrack.tracker.markup import MIRROR_PERMUTATION, mirror_landmarks, pupils
from facetrack.tracker.pose import (POSE_NAMES, RIGID_NAMES, Camera, HeadPose, PoseSolver, default_face_model, euler_to_matrix,
                                    head_axes, matrix_to_euler, project)

SIZE = (640, 480)


def _pose(pitch: float, yaw: float, roll: float, t=(0.0, 0.0, 600.0)) -> HeadPose:
    return HeadPose(np.asarray(t, np.float64), np.radians([pitch, yaw, roll]), np.zeros(6), True)


def _landmarks(pose: HeadPose, camera: Camera = Camera(), size=SIZE) -> np.ndarray:
    return project(default_face_model().points, pose, camera, size).astype(np.float32)


@pytest.mark.parametrize("pitch,yaw,roll,t", [
    (0, 0, 0, (0, 0, 600)), (10, -25, 5, (40, -30, 500)), (-20, 45, -15, (-120, 60, 900)),
    (15, 60, 10, (80, 40, 700)), (-5, -60, 25, (0, 100, 1200)), (25, 10, -30, (-60, -50, 450)),
])
def test_a_projection_of_the_face_at_a_known_pose_gives_that_pose_back(pitch, yaw, roll, t):
    truth = _pose(pitch, yaw, roll, t)
    got = PoseSolver().solve(_landmarks(truth), SIZE)
    assert got.success
    np.testing.assert_allclose(np.degrees(got.rotation), [pitch, yaw, roll], atol=0.05)
    np.testing.assert_allclose(got.translation, t, atol=0.5)
    assert got.reprojection < 1e-3


def test_the_camera_given_is_the_camera_used():
    cam = Camera(fx=900.0, fy=880.0, cx=300.0, cy=250.0)
    truth = _pose(5, 30, -10, (20, 10, 800))
    pts = _landmarks(truth, cam)
    got = PoseSolver(camera=cam).solve(pts, SIZE)
    np.testing.assert_allclose(got.translation, truth.translation, atol=0.5)
    np.testing.assert_allclose(got.rotation, truth.rotation, atol=1e-3)
    default = PoseSolver().solve(pts, SIZE)  # OpenFace's focal length (500 px here): the face is nearer
    assert default.success and default.translation[2] < 0.7 * truth.translation[2]


def test_openface_camera_defaults():
    assert Camera().resolve(640, 480) == (500.0, 500.0, 320.0, 240.0)
    fx, fy, cx, cy = Camera().resolve(1280, 720)
    assert fx == fy == pytest.approx((1000.0 + 750.0) / 2) and (cx, cy) == (640.0, 360.0)
    assert Camera(fx=700.0).resolve(640, 480) == (700.0, 700.0, 320.0, 240.0)
    assert Camera(cx=10.0, cy=20.0).resolve(640, 480)[2:] == (10.0, 20.0)


def test_euler_angles_are_openfaces_xyz_order():
    rng = np.random.default_rng(0)
    for _ in range(50):
        e = rng.uniform([-1.5, -1.4, -3.0], [1.5, 1.4, 3.0])
        r = euler_to_matrix(e)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        np.testing.assert_allclose(matrix_to_euler(r), e, atol=1e-9)
    a, b, c = 0.3, -0.4, 0.5
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    np.testing.assert_allclose(euler_to_matrix([a, b, c]), rx @ ry @ rz, atol=1e-12)


def test_signs_of_the_angles():
    """Positive yaw: the nose toward the image's left; positive pitch: the face turns down;
    positive roll: clockwise in the image."""
    front = _landmarks(_pose(0, 0, 0))
    yawed = _landmarks(_pose(0, 20, 0))
    assert yawed[30, 0] < front[30, 0] - 10  # nose tip (30) to the left
    pitched = _landmarks(_pose(20, 0, 0))
    assert pitched[30, 1] > front[30, 1] + 10 and pitched[8, 1] < front[8, 1]  # nose down, chin up toward it
    rolled = _landmarks(_pose(0, 0, 20))
    assert rolled[27, 0] > front[27, 0] + 5 and rolled[45, 1] > front[45, 1] + 5  # top right, right eye down
    s = PoseSolver()
    assert s.solve(yawed, SIZE).yaw == pytest.approx(20, abs=0.05)
    assert s.solve(pitched, SIZE).pitch == pytest.approx(20, abs=0.05)
    assert s.solve(rolled, SIZE).roll == pytest.approx(20, abs=0.05)


def test_rigid_parameters_are_the_scaled_orthographic_fit():
    truth = _pose(10, -20, 5, (50, -40, 20000))  # far away: perspective is nearly orthographic
    pts = _landmarks(truth)
    got = PoseSolver().solve(pts, SIZE)
    scale, rx, ry, rz, tx, ty = got.rigid
    assert scale == pytest.approx(500.0 / 20000.0, rel=0.01)  # px per mm = focal / depth
    np.testing.assert_allclose([rx, ry, rz], truth.rotation, atol=0.01)
    assert (tx, ty) == pytest.approx((320.0 + 500.0 * 50 / 20000, 240.0 - 500.0 * 40 / 20000), abs=0.05)
    assert got.values == tuple(np.concatenate([got.translation, got.rotation, got.rigid]))
    assert list(got.as_dict()) == list(POSE_NAMES + RIGID_NAMES)


@pytest.mark.parametrize("bad", [
    np.full((68, 2), np.nan), np.full((68, 2), 100.0), np.zeros((67, 2)),
    np.where(np.arange(136).reshape(68, 2) == 5, np.inf, 100.0),
    np.random.default_rng(3).uniform(0, 480, (68, 2)),  # points of no face
    np.stack([np.linspace(0, 300, 68), np.linspace(0, 200, 68)], 1),  # a line
])
def test_a_failed_solve_gives_zeros_and_success_0(bad):
    got = PoseSolver().solve(bad, SIZE)
    assert got.success is False
    assert got.values == (0.0,) * 12 and got.reprojection == 0.0


def test_face_model_file(data_dir):
    m = default_face_model()
    p = m.points
    assert p.shape == (68, 3) and np.allclose(p.mean(0), 0, atol=1e-3)
    e = pupils(p)
    assert np.linalg.norm(e[1] - e[0]) == pytest.approx(m.record["eye_distance_mm"], abs=0.01) == pytest.approx(63.0)
    assert p[30, 2] < p[36, 2] - 20 and p[30, 2] < p[45, 2] - 20  # nose tip nearer the camera than the eyes
    assert p[36, 0] < 0 < p[45, 0] and p[8, 1] > p[27, 1]  # x to the image's right, y down
    mirrored = p[MIRROR_PERMUTATION] * [-1, 1, 1]
    np.testing.assert_allclose(mirrored, p, atol=1e-3)
    assert m.record["test_images_used"] is False


def test_real_faces_solve_and_mirror_images_mirror_the_pose(data_dir):
    """Ground-truth landmarks of real faces: every one solves, with a small reprojection error,
    and the mirror image of a face has the same pitch and the opposite yaw and roll."""
    files = sorted((data_dir / "pseudo_v2" / "images").glob("*.pts"))[::40] + sorted((data_dir / "images68").glob("*/*.pts"))
    s = PoseSolver()
    yaws = []
    for f in files:
        lm = read_pts(f)
        image = next(f.with_suffix(e) for e in (".jpg", ".png", ".ppm") if f.with_suffix(e).exists())
        h, w = cv2.imread(str(image)).shape[:2]
        size = (w, h)
        a = s.solve(lm, size)
        assert a.success, f
        assert a.reprojection < 0.15
        b = s.solve(mirror_landmarks(lm, float(size[0] - 1)), size)
        assert b.success
        assert b.yaw == pytest.approx(-a.yaw, abs=1.0) and b.roll == pytest.approx(-a.roll, abs=1.0), f
        assert b.pitch == pytest.approx(a.pitch, abs=1.0), f
        yaws.append(abs(a.yaw))
    assert len(files) > 100 and max(yaws) > 25  # some turned faces among them


def test_head_axes_point_along_the_face():
    pose = _pose(0, 0, 0)
    o, x, y, z = head_axes(pose, Camera(), SIZE, 50.0)
    assert o == pytest.approx((320.0, 240.0))
    assert x[0] > o[0] and y[1] > o[1] and z == pytest.approx(o)  # z toward the camera: seen end-on
    o, x, y, z = head_axes(_pose(0, 30, 0), Camera(), SIZE, 50.0)
    assert z[0] < o[0]  # turned to the image's left: the nose axis points left


def _frames(path, n):
    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out


def test_the_tracker_reports_the_pose_of_its_smoothed_landmarks(data_dir):
    """On the real selfie video: every reported face carries the solve of its own (smoothed)
    landmarks with the configured camera, and turning the pose off changes no landmark."""
    from facetrack.tracker.presets import preset
    from facetrack.tracker.tracker import Tracker

    frames = _frames(data_dir / "videos_unlabelled" / "sbr_demo_selfie.mp4", 12)
    h, w = frames[0].shape[:2]
    cam = Camera(fx=800.0)
    p = preset("video")
    runs = {}
    for on in (True, False):
        with Tracker(p.tracker_config(pose=on, camera=cam if on else None, default_fps=30.0)) as tr:
            runs[on] = [tr.process(f, i / 30.0) for i, f in enumerate(frames)]
    solver = PoseSolver(camera=cam)
    posed = 0
    for a, b in zip(runs[True], runs[False]):
        assert [f.face_id for f in a.faces] == [f.face_id for f in b.faces]
        for fa, fb in zip(a.faces, b.faces):
            np.testing.assert_array_equal(fa.landmarks, fb.landmarks)
            assert fb.pose is None
            if fa.success:
                want = solver.solve(fa.landmarks, (w, h))
                assert fa.pose.success and fa.pose.values == want.values
                posed += 1
            else:
                assert fa.pose.values == (0.0,) * 12 and not fa.pose.success
    assert posed >= 10
