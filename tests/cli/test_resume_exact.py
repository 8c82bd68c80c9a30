"""``--resume`` gives the uninterrupted run's file byte for byte, with the SHIPPED models (issue 34,
item 4): the tracker's state (tracks, smoothing filters, MDM's recurrent state, the chain's
turn, the search schedule) is rebuilt by tracking the frames already in the file again without
writing them, and their rows are checked against the file on the way.

A run stopped at frame ``k`` leaves the first ``k`` frames' lines and a record that is not
complete (``tests/cli/test_interrupt_resume.py`` shows a kill leaves exactly that); the cut
files here are made so at chosen frames (the Hamilton clip: before its first face, inside the
first shot, after the cut at 217, the last frame), and one real SIGKILL per video.
Fails on 5f63d3b: cut at 1, 100 and 219 the resumed Hamilton file differs (lines 3, 102, 221).
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from facetrack.io.output import read_record
from facetrack.tracker import models
from tests.cli.test_interrupt_resume import parse
from tests.test_bad_inputs import facetrack

pytestmark = pytest.mark.skipif(not {"aan", "mdm", "aan-turned", "mdm-rt-turned"} <= set(models.available()),
                                reason="needs the shipped models")

VIDEOS = {"hamilton": "videos_unlabelled/short_hamilton_clip.mp4", "selfie": "videos_unlabelled/sbr_demo_selfie.mp4"}
CUTS = {"hamilton": (1, 100, 219, 274), "selfie": (1, 37, 150)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir: Path) -> dict[str, Path]:
    """The default command's file for each video, run once without interruption."""
    out = {}
    for name, video in VIDEOS.items():
        path = tmp_path_factory.mktemp(name) / f"{name}.csv"
        r = facetrack([str(data_dir / video), "--out", str(path), "-q"], cwd=path.parent)
        assert r.rc == 0, r.err
        out[name] = path
    return out


def _stopped_at(ref: Path, out: Path, k: int) -> None:
    """What a run stopped after frame ``k`` leaves: its first ``k`` frames, an incomplete record."""
    lines = ref.read_bytes().split(b"\n")
    out.write_bytes(b"\n".join(lines[:k + 1]) + b"\n")  # header + one row per frame (one face)
    record = json.loads(ref.with_name(ref.name + ".run.json").read_text())
    record["complete"] = False
    record.pop("file", None)
    out.with_name(out.name + ".run.json").write_text(json.dumps(record))


@pytest.mark.parametrize("name,k", [(n, k) for n, ks in CUTS.items() for k in ks])
def test_resume_gives_the_uninterrupted_file(tmp_path: Path, data_dir: Path, uninterrupted: dict[str, Path],
                                             name: str, k: int) -> None:
    ref = uninterrupted[name]
    if k >= len(parse(ref)):
        pytest.skip(f"{name} has fewer than {k + 1} frames")
    out = tmp_path / "x.csv"
    _stopped_at(ref, out, k)
    r = facetrack([str(data_dir / VIDEOS[name]), "--out", str(out), "--resume"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert f"resuming after frame {k}" in r.err
    assert out.read_bytes() == ref.read_bytes()
    rec = read_record(out)
    assert rec.complete and rec.mismatch(out) is None


@pytest.mark.parametrize("name", list(VIDEOS))
def test_resume_after_sigkill_gives_the_uninterrupted_file(tmp_path: Path, data_dir: Path,
                                                           uninterrupted: dict[str, Path], name: str) -> None:
    from tests.cli.test_interrupt_resume import start_and_stop

    out = tmp_path / "x.csv"
    rc, _ = start_and_stop(data_dir / VIDEOS[name], out, Path("auto"), signal.SIGKILL, after_rows=60)
    assert rc == -signal.SIGKILL
    frames = parse(out)
    assert frames == list(range(1, len(frames) + 1)) and not read_record(out).complete
    r = facetrack([str(data_dir / VIDEOS[name]), "--out", str(out), "--resume", "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert out.read_bytes() == uninterrupted[name].read_bytes()


def test_rows_that_differ_from_an_uninterrupted_run_are_tracked_again(tmp_path: Path, data_dir: Path,
                                                                      uninterrupted: dict[str, Path]) -> None:
    """A file resumed by 5f63d3b (rows after the resume point from a tracker started afresh):
    the next ``--resume`` finds where its rows stop matching and rewrites from there."""
    ref = uninterrupted["hamilton"]
    lines = ref.read_bytes().split(b"\n")
    out = tmp_path / "x.csv"
    _stopped_at(ref, out, 150)
    bad = lines[121].split(b",")
    bad[5] = b"%.3f" % (float(bad[5]) + 1.0)  # frame 121's x_0 one pixel off
    out.write_bytes(b"\n".join(lines[:121] + [b",".join(bad)] + lines[122:151]) + b"\n")
    r = facetrack([str(data_dir / VIDEOS["hamilton"]), "--out", str(out), "--resume"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert "its rows from frame 121 on differed from an uninterrupted run" in r.err
    assert out.read_bytes() == ref.read_bytes()
