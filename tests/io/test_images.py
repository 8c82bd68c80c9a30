"""Still images as input (facetrack/io/images.py; issue 34, items 5 and 10): every file of a
folder that cannot be used is one warning line and the rest are read; FIFOs, devices and
symlink loops are refused without being opened; the pixel limit is read from the header."""
from __future__ import annotations

import logging
import re
import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.io.images import ImageFiles, image_size, images_in, load_image
from facetrack.io.video import VideoError


@pytest.fixture()
def photo(data_dir: Path) -> Path:
    return sorted((data_dir / "images68" / "afw").glob("*.jpg"))[0]


def _huge_png(path: Path, side: int = 30000) -> Path:
    """A black ``side`` x ``side`` grey PNG (874 KB at 30000: 900 Mpx, 5.4 GB once decoded as BGR)."""
    co = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    data = b"".join(co.compress(row) for _ in range(side)) + co.flush()

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_a_folder_reads_every_good_image_and_warns_once_for_each_bad_one(tmp_path, photo, caplog):
    """Before: the 0-byte image raised cv2.error out of read() (a traceback; the images after it
    never read), the FIFO and the symlink loop were left out without a word."""
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(photo, d / "a.jpg")
    (d / "b.jpg").write_bytes(b"")
    (d / "c.jpg").write_text("not an image\n")
    os.mkfifo(d / "d.jpg")
    os.symlink("e2.jpg", d / "e1.jpg")
    os.symlink("e1.jpg", d / "e2.jpg")
    os.symlink("gone.jpg", d / "f.jpg")
    _huge_png(d / "g.png", 12000)
    shutil.copy(photo, d / "z.jpg")
    (d / "sub.jpg").mkdir()  # a folder named like an image: not read (subfolders never are)
    with caplog.at_level(logging.WARNING):
        src = ImageFiles(d)
        got = [(i, src.current.name) for i, _, _ in src]
    assert got == [(0, "a.jpg"), (8, "z.jpg")]
    reasons = {p.name: why for p, why in src.failures}
    assert reasons == {
        "b.jpg": f"{d / 'b.jpg'}: empty file",
        "c.jpg": f"{d / 'c.jpg'}: not an image OpenCV can decode",
        "d.jpg": f"{d / 'd.jpg'}: a FIFO (named pipe), not a file: refused (reading one can wait forever)",
        "e1.jpg": f"{d / 'e1.jpg'}: symlink loop (too many levels of symbolic links)",
        "e2.jpg": f"{d / 'e2.jpg'}: symlink loop (too many levels of symbolic links)",
        "f.jpg": f"{d / 'f.jpg'}: broken symlink (to gone.jpg, which does not exist)",
        "g.png": f"{d / 'g.png'}: 12000x12000 is 144 megapixels, over the limit of 100 megapixels (--max-pixels)",
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{why}; skipped" for why in reasons.values()]
    assert src.skipped == [d / n for n in reasons]


def test_a_single_bad_image_is_refused_when_opened(tmp_path, photo):
    """Before, a FIFO named x.jpg hung for ever and a 0-byte image raised cv2.error."""
    os.mkfifo(tmp_path / "x.jpg")
    (tmp_path / "e.jpg").write_bytes(b"")
    (tmp_path / "t.jpg").write_text("text")
    os.symlink("l2.jpg", tmp_path / "l1.jpg")
    os.symlink("l1.jpg", tmp_path / "l2.jpg")
    cases = {"x.jpg": "a FIFO (named pipe), not a file", "e.jpg": "empty file", "t.jpg": "not an image OpenCV can decode",
             "l1.jpg": "symlink loop", "missing.jpg": "no such file or folder"}
    for name, message in cases.items():
        with pytest.raises(VideoError, match=re.escape(message)) as e:
            ImageFiles(tmp_path / name)
        assert str(e.value).startswith(f"{tmp_path / name}: ") and "\n" not in str(e.value)
    with pytest.raises(VideoError, match="a device, not a file"):
        ImageFiles("/dev/null")
    one = ImageFiles(photo)
    (i, _, frame), = list(one)
    assert i == 0 and frame.shape == cv2.imread(str(photo)).shape and one.failures == []


def test_the_pixel_limit_is_read_from_the_header_before_decoding(tmp_path, monkeypatch):
    """The 874 KB 30000 x 30000 PNG took 5.4 GB and 70 s; now it is refused from its header:
    the decoder is never called."""
    big = _huge_png(tmp_path / "big.png")
    assert big.stat().st_size < 1_000_000
    calls = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: calls.append(a))
    with pytest.raises(VideoError, match=r"big.png: 30000x30000 is 900 megapixels, over the limit of 100 megapixels"):
        load_image(big)
    with pytest.raises(VideoError, match="over the limit of 0.5 megapixels"):
        load_image(big, max_pixels=500_000)
    assert calls == []


def test_the_limit_applies_after_decoding_where_the_header_is_not_read(tmp_path):
    """A format image_size does not parse (PPM) is checked once decoded."""
    img = np.zeros((300, 400, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "x.ppm"), img)
    os.rename(tmp_path / "x.ppm", tmp_path / "x.png")  # OpenCV decodes by content
    assert image_size(tmp_path / "x.png") is None
    assert load_image(tmp_path / "x.png").shape == (300, 400, 3)
    with pytest.raises(VideoError, match="400x300 is 0.12 megapixels, over the limit of 0.1 megapixels"):
        load_image(tmp_path / "x.png", max_pixels=100_000)
    assert load_image(tmp_path / "x.png", max_pixels=None).shape == (300, 400, 3)


@pytest.mark.parametrize("ext, params", [("png", []), ("jpg", []), ("jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), ("bmp", []),
                                         ("tif", []), ("webp", []), ("webp", [cv2.IMWRITE_WEBP_QUALITY, 101])])
def test_image_size_reads_the_header_of_each_format(tmp_path, ext, params):
    img = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    path = tmp_path / f"x.{ext}"
    assert cv2.imwrite(str(path), img, params)
    assert image_size(path) == (53, 37)


def test_images_in_lists_special_files_so_that_they_are_reported(tmp_path):
    os.mkfifo(tmp_path / "p.jpg")
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "d.jpg").mkdir()
    (tmp_path / "n.txt").write_text("")
    assert [p.name for p in images_in(tmp_path)] == ["a.png", "p.jpg"]
