"""The compact copy of the training sources that travels to a lent GPU machine: same split,
same landmarks, no test faces, smaller teacher pictures close to the stored ones."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetrack.train.data.compact_data import compact_copy, main
from facetrack.train.data.sources import load_sources, parse_sources


def test_copy_keeps_the_split_and_labels_and_leaves_the_test_faces(data_dir: Path, tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "data"
    size = compact_copy(data_dir, out, quality=75)
    items = ["images68:4", "pseudo_dlib:1", "pseudo_v2:1"]
    orig, copy = load_sources(parse_sources(items, data_dir)), load_sources(parse_sources(items, out))
    assert copy.split_record() == orig.split_record()
    assert len(copy.train) == len(orig.train) and copy.weights == orig.weights
    for a, b in zip(orig.train + orig.val, copy.train + copy.val):
        assert b.image.relative_to(out) == a.image.relative_to(data_dir)
        assert np.array_equal(a.landmarks, b.landmarks) and (a.box is None) == (b.box is None)
        assert a.box is None or np.array_equal(a.box, b.box)
    assert not (out / "images68" / "helen_test").exists() and not (out / "images68" / "ibug").exists()
    teacher = sorted((data_dir / "pseudo_v2" / "images").glob("*.jpg"))[::300]
    for p in teacher:
        q = out / p.relative_to(data_dir)
        assert q.stat().st_size < p.stat().st_size
        a, b = cv2.imread(str(p)).astype(float), cv2.imread(str(q)).astype(float)
        assert a.shape == b.shape and 10 * np.log10(255**2 / ((a - b) ** 2).mean()) > 35
    stored = sum(f.stat().st_size for n in ("pseudo_dlib", "pseudo_v2") for f in (data_dir / n).rglob("*") if f.is_file())
    assert size < 0.75 * (stored + 7.5e6)


def test_bad_inputs_get_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "not the shared data folder" in capsys.readouterr().err
    (tmp_path / "images68").mkdir()
    assert main([str(tmp_path), str(tmp_path / "out"), "--quality", "0"]) == 2
    assert "--quality 0" in capsys.readouterr().err
