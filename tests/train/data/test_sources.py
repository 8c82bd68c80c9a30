"""Training sources on the command line, group splits, and the lazy data pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facetrack.tracker.geometry import box_iou, box_of
from facetrack.train.data.augment import NO_AUGMENT, AugmentConfig
from facetrack.train.data.datasets import load_pseudo_dlib
from facetrack.train.data.pipeline import StepBatches, TrainingFaces, make_loader, seed_worker
from facetrack.train.data.sources import SourceError, load_sources, parse_sources, same_split, split_record


def test_parse_sources_names_weights_and_folders(data_dir: Path, tmp_path: Path) -> None:
    s = parse_sources(["images68:4", "pseudo_v2", f"300w={data_dir / 'images68' / 'afw'},boxes={tmp_path}:3"], data_dir)
    assert [(x.kind, x.weight) for x in s] == [("images68", 4.0), ("pseudo_v2", 1.0), ("300w", 3.0)]
    assert s[2].path == data_dir / "images68" / "afw" and s[2].boxes == tmp_path
    legacy = parse_sources([str(data_dir)], None)  # the shared data folder: the default mix
    assert [(x.kind, x.weight) for x in legacy] == [("images68", 2.0), ("pseudo_dlib", 1.0)]
    for bad, msg in ((["images68:0"], "weight must be > 0"), (["images68", "images68:3"], "named twice"),
                     (["nonsense"], "not a source"), ([str(tmp_path)], "no images68/ folder"),
                     ([f"300w={tmp_path / 'missing'}"], "not a folder"), (["pseudo_v2"], "needs --data-root")):
        with pytest.raises(SourceError, match=msg):
            parse_sources(bad, data_dir if bad != ["pseudo_v2"] else None)


def test_split_holds_out_whole_groups_and_is_recorded(data_dir: Path) -> None:
    d = load_sources(parse_sources(["images68:4", "pseudo_dlib", "pseudo_v2"], data_dir), seed=0)
    assert len(d.weights) == len(d.train) and set(d.weights) == {4.0, 1.0}
    train_groups = {s.group for s in d.train if s.group}
    val_groups = {s.group for s in d.val if s.group}
    assert val_groups and not train_groups & val_groups  # never frames of one video on both sides
    assert not {str(s.image) for s in d.train if not s.group} & {str(s.image) for s in d.val if not s.group}
    assert not any(s.source == "pseudo_dlib" for s in d.val)
    rec = split_record(d.val)
    assert same_split(rec, split_record(load_sources(parse_sources(["images68", "pseudo_v2"], data_dir), seed=0).val))
    other = split_record(load_sources(parse_sources(["images68", "pseudo_v2"], data_dir), seed=1).val)
    assert not same_split(rec, other) and not same_split(None, rec)


def test_user_300w_folder_trains_and_validates_by_image(data_dir: Path) -> None:
    d = load_sources(parse_sources([f"300w={data_dir / 'images68' / 'afw'}"], None), seed=0)
    assert d.train and d.val and all(s.source == "human" for s in d.train)
    assert not {s.image for s in d.train} & {s.image for s in d.val}


def test_batches_do_not_depend_on_workers_and_split_over_ranks(data_dir: Path) -> None:
    d = load_sources(parse_sources(["pseudo_dlib"], data_dir), seed=0)
    ds = TrainingFaces(d.train[:20], 112, AugmentConfig(), 2.0 * 0.35 * 112)
    sampler = StepBatches(np.ones(20), 4, seed=3, start=5, end=7)
    in_process = [b for b in make_loader(ds, sampler, 0)]
    with_workers = [b for b in make_loader(ds, sampler, 2)]
    assert len(in_process) == 2
    for a, b in zip(in_process, with_workers):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    # a resumed run starts at the same batch; rank r of 2 takes its half of the global batch
    assert StepBatches(np.ones(20), 4, 3, 6, 7).step_batch(6) == sampler.step_batch(6)
    halves = [StepBatches(np.ones(20), 4, 3, 5, 7, rank=r, world=2).step_batch(5) for r in (0, 1)]
    assert halves[0] + halves[1] == sampler.step_batch(5)
    # different steps draw different faces and seeds; weights steer the draw
    assert sampler.step_batch(5) != sampler.step_batch(6)
    w = np.zeros(20)
    w[7] = 1.0
    assert {i for i, _ in StepBatches(w, 8, 0, 0, 1).step_batch(0)} == {7}


def test_worker_seeds_differ_by_worker_and_epoch() -> None:
    draws = []
    for epoch, worker in ((0, 0), (0, 1), (1, 0)):
        seed_worker(0, epoch, worker)
        draws.append((float(np.random.random()), float(torch.rand(1))))
    assert len(set(draws)) == 3


def test_samples_are_decoded_lazily_and_match_their_landmarks(data_dir: Path) -> None:
    d = load_sources(parse_sources(["images68"], data_dir), seed=0)
    ds = TrainingFaces(d.train[:3], 112, NO_AUGMENT, 2.0 * 0.35 * 112, p_template=1.0)
    assert not hasattr(ds, "cache") and not hasattr(ds, "faces")  # nothing decoded up front
    image, gt, init, is_face, tmpl = ds[(0, 123)]
    assert image.shape == (1, 112, 112) and image.dtype == np.float32 and is_face and tmpl
    assert np.all((gt > 0) & (gt < 112)) and image.std() > 0.05
    again = ds[(0, 123)]
    assert np.array_equal(again[0], image) and np.array_equal(again[1], gt)


def test_background_negatives_avoid_unlabelled_faces(data_dir: Path) -> None:
    # one labelled face of the 3x3 grid picture: the detector finds the others, and a
    # negative's "others" holds them (they are not this face)
    grid = [s for s in load_pseudo_dlib(data_dir) if "grid" in s.image.name][:1]
    ds = TrainingFaces(grid, 112, AugmentConfig(), 2.0 * 0.35 * 112)
    plain = ds.face(0)
    assert len(plain.others) == 0
    face = ds.face(0, with_detections=True)
    assert len(face.others) >= 3
    own = box_of(face.landmarks)
    assert all(box_iou(b, own) < 0.3 for b in face.others)
    ds_off = TrainingFaces(grid, 112, AugmentConfig(), 2.0 * 0.35 * 112, detect_faces=False)
    assert len(ds_off.face(0, with_detections=True).others) == 0


def test_background_negatives_use_the_cnn_detector_where_opencv_has_no_cascades(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenCV 5 (the lent GPU machines' image) has no Haar cascades: the negatives' detector
    # falls back to the project's CNN detector, which still finds other faces of the grid
    from facetrack.tracker import detect
    from facetrack.train.data.pipeline import negatives_detector

    def no_cascades() -> None:
        raise RuntimeError("OpenCV 5.0.0 has no Haar cascades (facetrack needs opencv-python 4.x)")

    monkeypatch.setattr(detect, "default_detector", no_cascades)
    assert negatives_detector().name == "cnn"
    grid = [s for s in load_pseudo_dlib(data_dir) if "grid" in s.image.name][:1]
    face = TrainingFaces(grid, 112, AugmentConfig(), 2.0 * 0.35 * 112).face(0, with_detections=True)
    assert len(face.others) >= 2  # Haar finds 3 or more here; the CNN detector's recall is lower
    assert all(box_iou(b, box_of(face.landmarks)) < 0.3 for b in face.others)


def test_reduced_decoding_keeps_the_landmarks_on_their_content(data_dir: Path) -> None:
    import cv2

    from facetrack.train.data.datasets import build_cache, load_images68
    from facetrack.train.data.pipeline import read_reduced

    face_px = 60.0
    big = [s for s in load_images68(data_dir, "train") if read_reduced(s, face_px)[1] >= 2][:3]
    assert big, "no training face large enough for a reduced decode"
    ds = TrainingFaces(big, 112, NO_AUGMENT, face_px)
    full = build_cache(big, face_px)  # full-resolution decode, then INTER_AREA
    for i, f in enumerate(full):
        lazy = ds.face(i)
        assert np.abs(lazy.landmarks - f.landmarks).max() < 1.5  # same face size and place
        g1 = lazy.image if lazy.image.ndim == 2 else cv2.cvtColor(lazy.image, cv2.COLOR_BGR2GRAY)
        g2 = f.image if f.image.ndim == 2 else cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY)
        h, w = min(g1.shape[0], g2.shape[0]), min(g1.shape[1], g2.shape[1])
        assert np.abs(g1[:h, :w].astype(float) - g2[:h, :w].astype(float)).mean() < 12
