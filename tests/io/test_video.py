"""Video input (facetrack/io/video.py; issue 34, items 5 and 10): only regular files are opened
(FIFOs, devices, symlink loops are one line, never a hang), frames over the pixel limit are
refused from the header, and FFmpeg's complaints about damaged frames are counted per frame
instead of printed (before: silenced, and the damaged frames were tracked with no word)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facetrack.io.video import DecoderLog, VideoError, VideoFile, check_input

CLIP = "videos_unlabelled/short_hamilton_clip.mp4"


@pytest.fixture()
def damaged(data_dir: Path, tmp_path: Path) -> Path:
    """The Hamilton clip with 3 bytes flipped (at 1/4, 1/2 and 3/4 of the file): it opens and
    gives all 275 frames; FFmpeg reports errors while decoding 2 of them (99 frames come out
    different from the clean clip's, the damage carried to the next key frame)."""
    b = bytearray((data_dir / CLIP).read_bytes())
    for off in (len(b) // 4, len(b) // 2, 3 * len(b) // 4):
        b[off] ^= 0xFF
    p = tmp_path / "flip.mp4"
    p.write_bytes(b)
    return p


def test_only_regular_files_are_opened(tmp_path):
    os.mkfifo(tmp_path / "p.mp4")
    os.symlink("b.mp4", tmp_path / "a.mp4")
    os.symlink("a.mp4", tmp_path / "b.mp4")
    os.symlink("none.mp4", tmp_path / "dangling.mp4")
    (tmp_path / "d").mkdir()
    cases = {tmp_path / "p.mp4": "a FIFO (named pipe), not a file: refused (reading one can wait forever)",
             tmp_path / "a.mp4": "symlink loop (too many levels of symbolic links)",
             tmp_path / "dangling.mp4": "broken symlink (to none.mp4, which does not exist)",
             tmp_path / "missing.mp4": "no such file",
             tmp_path / "d": "is a directory, not a video",
             Path("/dev/null"): "a device, not a file: refused (a camera is --camera DEVICE)"}
    for path, message in cases.items():
        with pytest.raises(VideoError) as e:
            VideoFile(path)
        assert str(e.value) == f"{path}: {message}"
        with pytest.raises(VideoError):
            check_input(path)


def test_a_fifo_input_never_hangs_the_cli(tmp_path):
    """Before: ``facetrack x.jpg`` on a FIFO waited for ever (a video FIFO read 'empty file')."""
    os.mkfifo(tmp_path / "x.jpg")
    r = subprocess.run([sys.executable, "-m", "facetrack.cli.main", str(tmp_path / "x.jpg"), "--out", str(tmp_path / "o.csv"), "-q"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"facetrack: {tmp_path / 'x.jpg'}: a FIFO (named pipe), not a file: refused "
                                             f"(reading one can wait forever)"]
    assert not (tmp_path / "o.csv").exists()


def test_damaged_frames_are_counted_not_printed(damaged, data_dir, capfd):
    with VideoFile(damaged) as v:
        n = sum(1 for _ in v)
        line = v.decode_errors()
    assert n == 275 and v.frames_with_errors == 2
    assert line.startswith(f"{damaged}: 2 of 275 frames decoded with errors (first: frame 66, ")
    out, err = capfd.readouterr()
    assert "h264" not in err and "h264" not in out  # FFmpeg's own lines were caught
    with VideoFile(data_dir / CLIP) as clean:
        assert sum(1 for _ in clean) == 275 and clean.frames_with_errors == 0 and clean.decode_errors() is None


def test_seeking_counts_only_the_frames_read(damaged):
    with VideoFile(damaged) as v:
        v.seek(100)
        assert sum(1 for _ in v) == 175 and v.frames_with_errors == 1  # the second damaged frame only


def test_other_text_on_stderr_passes_through(capfd):
    """Only FFmpeg's lines are kept: anything else written to stderr during a capture call
    (another thread's log line) reaches the real stderr."""
    log = DecoderLog()
    assert log.active

    def speak() -> int:
        os.write(2, b"[h264 @ 0x55d993b87440] error while decoding MB 14 3\nsomeone else's line\n")
        return 7

    assert log.call(speak, frame=4) == 7
    assert log.frames_with_errors == 1 and log.first == (4, "error while decoding MB 14 3")
    assert log.call(speak) == 7 and log.frames_with_errors == 1  # opening or seeking counts no frame
    err = capfd.readouterr().err
    assert err.count("someone else's line") == 2 and "h264" not in err
    log.close()


def test_frames_over_the_pixel_limit_are_refused_from_the_header(data_dir):
    with VideoFile(data_dir / CLIP) as v:
        w, h = v.width, v.height
    with pytest.raises(VideoError, match=rf"{w}x{h} is .* megapixels, over the limit of 0.01 megapixels \(--max-pixels\)"):
        VideoFile(data_dir / CLIP, max_pixels=10_000)
    VideoFile(data_dir / CLIP, max_pixels=None).close()
