"""Image names in the CSV (issue 34, item 9): written by the csv module, a name a spreadsheet
would run as a formula escaped as OWASP advises (leading ``'``, quoted), a line break in a name
never splitting a row. Fails on 5f63d3b: ``a\\nb.jpg`` gave a row over two lines (quoted, but
``wc -l`` and the row counter saw two) and ``=cmd|calc.jpg`` was written as a formula."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from facetrack.io.output import IMAGE_COLUMNS, ImageCsvWriter, image_cell

NAMES = ["plain.jpg", "a\nb.jpg", "c\r\nd.jpg", "=cmd|calc.jpg", "+1.jpg", "-b.jpg", "@sum.jpg", "\tt.jpg", "\rr.jpg",
         "a,b.jpg", 'q"u.jpg', "caf\u00e9.jpg"]


def _expected(name: str) -> str:
    """What a csv reader gets back for ``name``."""
    text = ("'" + name if name[:1] in ("=", "+", "-", "@", "\t", "\r") else name)
    return text.replace("\r", "\\r").replace("\n", "\\n")


def test_each_image_is_one_line_and_no_cell_starts_a_formula(tmp_path: Path) -> None:
    class Face:
        face_id, confidence, success, box, state = 0, 0.9, True, None, "tracking"
        landmarks = np.full((68, 2), 5.0, np.float32)

    path = tmp_path / "i.csv"
    with ImageCsvWriter(path) as w:
        for k, name in enumerate(NAMES, 1):
            w.write_frame(k, 0.0, [Face()], image=name)
    raw = path.read_bytes()
    assert raw.count(b"\n") == len(NAMES) + 1 and b"\r" not in raw  # one line per image, and the header
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == IMAGE_COLUMNS
    assert [r[0] for r in rows[1:]] == [_expected(n) for n in NAMES]
    assert all(not r[0].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows[1:])
    assert all(len(r) == len(IMAGE_COLUMNS) for r in rows[1:])
    assert image_cell("plain.jpg") == "plain.jpg" and image_cell("a,b.jpg") == '"a,b.jpg"'  # ordinary names as before
    assert image_cell("=1+1") == "\"'=1+1\""


def test_the_cli_keeps_one_row_per_image_for_hostile_names(tmp_path: Path, data_dir: Path) -> None:
    from tests.test_bad_inputs import facetrack, identity_mdm_onnx

    pytest.importorskip("onnx", reason="onnx (the [train] extra) builds the stand-in model")
    model = identity_mdm_onnx(tmp_path / "m.onnx")
    src = sorted((data_dir / "images68" / "afw").glob("*.jpg"))[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["=cmd|calc.jpg", "a\nb.jpg", "-x.jpg", "ok.jpg"]
    for n in names:
        shutil.copy(src, photos / n)
    out = tmp_path / "o.csv"
    r = facetrack([str(photos), "--out", str(out), "--model", str(model), "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    lines = out.read_bytes().split(b"\n")[1:-1]
    with open(out, newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == len(lines)  # no row is split over two lines
    assert sorted({r[0] for r in rows}) == sorted(_expected(n) for n in names)
    assert not any(r[0].startswith(("=", "+", "-", "@")) for r in rows)
