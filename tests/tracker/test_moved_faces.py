"""The moved-face benchmark's parts: the clip holds the moved face where its moved ground truth
says, the nearest face is the one scored, drift and flicker are computed as documented."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.bench.moved_faces import make_clip, make_clips, nearest, read_cli_csv, score, summarise
from facetrack.eval.metrics import nme
from facetrack.train.data.datasets import load_images68, read_image


def test_clip_frames_hold_the_moved_face(data_dir: Path, tmp_path: Path) -> None:
    s = load_images68(data_dir, "common")[0]
    img = read_image(s.image)
    gts = make_clip(img, s.landmarks.astype(np.float64), 12, 0, tmp_path / "c.mp4")
    cap = cv2.VideoCapture(str(tmp_path / "c.mp4"))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float64))
    assert len(frames) == 12 and gts.shape == (12, 68, 2)
    assert np.linalg.norm(gts[-1] - gts[0], axis=1).mean() > 1.0  # the face moved
    # the patch around the moved nose tip in the last frame is the patch around the nose in the first
    def patch(f, p, r=6):
        x, y = int(round(p[0])), int(round(p[1]))
        return f[y - r : y + r + 1, x - r : x + r + 1]
    a, b = patch(frames[0], gts[0][30]), patch(frames[-1], gts[-1][30])
    other = patch(frames[-1], gts[0][30] + 25)
    assert np.abs(a - b).mean() < np.abs(a - other).mean()


def test_both_benches_get_the_same_clips(data_dir: Path, tmp_path: Path) -> None:
    """``make_clips`` (moved_faces and smoothing): face ``i`` named ``face{i}_{stem}.mp4`` and moved
    with seed ``seed * 1000 + i``; skipped faces keep the others' names and seeds."""
    samples = load_images68(data_dir, "common")[:3]
    clips = make_clips(samples, tmp_path, 12, 2, skip=[1])
    assert [v.name for v, _ in clips] == [f"face{i}_{Path(samples[i].image).stem}.mp4" for i in (0, 2)]
    for (video, gts), i in zip(clips, (0, 2)):
        assert video.is_file()
        again = make_clip(read_image(samples[i].image), samples[i].landmarks.astype(np.float64), 12, 2000 + i, tmp_path / "x.mp4")
        np.testing.assert_array_equal(gts, again)


def test_still_clips_do_not_move(data_dir: Path, tmp_path: Path) -> None:
    """``--still``: the same picture in every frame, its truth unmoved, under its own name."""
    import cv2

    s = load_images68(data_dir, "common")[0]
    [(video, gts)] = make_clips([s], tmp_path, 12, 0, still=True)
    assert video.name == f"face0_{Path(s.image).stem}.still.mp4"
    np.testing.assert_array_equal(gts, np.repeat(gts[:1], 12, 0))  # (scaled with a large picture, as the moved clips)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f.astype(np.float64))
    assert len(frames) == 12
    assert max(np.abs(f - frames[1]).mean() for f in frames[1:]) < 1.0  # only the codec's key frame differs
    moved = make_clips([s], tmp_path, 12, 0)[0][1]
    assert np.abs(moved[-1] - moved[0]).max() > 1.0


def test_nearest_face_and_missing_frames() -> None:
    g = np.zeros((3, 68, 2))
    g[:, :, 0] = np.arange(68)
    g[:, 45, 0] = 40.0  # outer eyes 36 (x=36) and 45 (x=40): distance 4
    near, far = g[0] + 0.4, g[0] + 30.0
    pred = nearest([[far, near], [], [near]], g)
    np.testing.assert_allclose(pred[0], near)
    assert np.isnan(pred[1]).all()
    s = score(pred, g)
    assert s["found"] == 2 and s["nme"][1] is None
    assert s["mean"] == pytest.approx(float(nme(near, g[0])))


def test_gross_and_confident_failures_per_frame() -> None:
    """A frame whose nearest reported face is over 20 % is a confident failure; one at 10 % only a
    failure; a frame without a face a failure at both thresholds but no confident one."""
    g = np.zeros((4, 68, 2))
    g[:, :, 0] = np.arange(68)
    g[:, 45, 0] = 76.0  # outer-eye distance 40 px
    pred = g.copy()
    pred[1, :, 1] += 4.0  # NME 0.10
    pred[2, :, 1] += 12.0  # NME 0.30
    pred[3] = np.nan  # no face
    s = score(pred, g)
    assert s["confident_failures"] == 1
    summ = summarise([{**s, "video": "a"}, {**s, "video": "b"}])
    assert summ["failure_pct"] == pytest.approx(75.0) and summ["failure_gross_pct"] == pytest.approx(50.0)
    assert summ["confident_failures"] == 2 and summ["median_nme_pct"] == pytest.approx(10.0)


def test_drift_is_last_ten_minus_first_ten_in_points() -> None:
    g = np.zeros((30, 68, 2))
    g[:, :, 0] = np.arange(68)
    g[:, 45, 0] = 40.0 + 36.0  # outer-eye distance 40 px
    err = np.linspace(0.0, 2.0, 30)  # every point off by err px in y: NME = err / 40
    pred = g.copy()
    pred[:, :, 1] += err[:, None]
    s = score(pred, g)
    assert s["drift_pts"] == pytest.approx((err[-10:].mean() - err[:10].mean()) / 40 * 100)
    assert s["flicker"] == pytest.approx((2.0 / 29) / 40)
    summ = summarise([s, s])
    assert summ["median_drift_pts"] == pytest.approx(s["drift_pts"]) and summ["frames"] == 60


def test_read_cli_csv_keeps_successful_rows(tmp_path: Path) -> None:
    head = "frame,face_id,timestamp,confidence,success," + ",".join(f"x_{i}" for i in range(68)) + "," + ",".join(f"y_{i}" for i in range(68))
    row = lambda fr, ok, v: f"{fr},0,0.0,0.9,{ok}," + ",".join([str(v)] * 136)  # noqa: E731
    (tmp_path / "a.csv").write_text("\n".join([head, row(1, 1, 5.0), row(2, 0, 5.0), row(3, 1, 7.0)]) + "\n")
    faces = read_cli_csv(tmp_path / "a.csv", 3)
    assert [len(f) for f in faces] == [1, 0, 1] and faces[2][0][0, 0] == 7.0


def test_val_of_a_missing_or_foreign_checkpoint_is_one_line(data_dir: Path, tmp_path: Path, capsys) -> None:
    from facetrack.bench.moved_faces import main

    assert main(["--data", str(data_dir), "--out", str(tmp_path / "o"), "--val-of", str(tmp_path / "none.pt"), "--methods", "default"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.pt" in err[0], err
    assert main(["--data", str(data_dir), "--out", str(tmp_path / "o"), "--val-of", str(tmp_path / "none.pt"), "--every", "0"]) == 2
    assert "--every must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing made before the faces are known
