"""Interrupting ``facetrack VIDEO --out x.csv`` (Ctrl-C / SIGINT, and SIGKILL) and continuing with
``--resume``, on the real clip, through the real command line in a subprocess.

After an interruption the CSV parses with the csv module, every line is complete, and it holds
every completed frame: the same bytes an uninterrupted run writes for those frames. A rerun with
``--resume`` continues after the last frame written; the final file has each frame exactly once
and a single header.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facetrack.io.output import POSE_CSV_COLUMNS as COLUMNS  # the CLI's default layout

REPO = Path(__file__).resolve().parents[2]
from tests.test_bad_inputs import CLIP, CLIP_FRAMES, facetrack, identity_mdm_onnx  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    pytest.importorskip("onnx", reason="onnx (the [train] extra) builds the stand-in model")
    return identity_mdm_onnx(tmp_path_factory.mktemp("model") / "identity_mdm.onnx")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_dir: Path, model: Path) -> Path:
    """An uninterrupted run over the whole clip: its CSV (the record beside it)."""
    out = tmp_path_factory.mktemp("ref") / "ref.csv"
    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "-q"], cwd=out.parent)
    assert r.rc == 0, r.err
    return out


@pytest.fixture(scope="module")
def reference(reference_run: Path) -> bytes:
    """The CSV of an uninterrupted run over the whole clip."""
    return reference_run.read_bytes()


def parse(path: Path) -> list[int]:
    """Frame numbers of a landmark CSV read with the csv module; asserts every line is complete
    (ends with a newline, has every column, all values finite) and one header."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "the last line is incomplete"
    header = (",".join(COLUMNS) + "\n").encode()
    assert raw.count(header) == 1 and raw.startswith(header)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    for r in rows[1:]:
        assert len(r) == len(COLUMNS), r[:5]
        assert np.isfinite([float(v) for v in r]).all()
    return [int(r[0]) for r in rows[1:]]


def start_and_stop(video: Path, out: Path, model: Path, sig: int, after_rows: int = 25) -> tuple[int, str]:
    """Start a run, wait until ``after_rows`` rows are on disk, send ``sig``; (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "facetrack.cli.main", str(video), "--out", str(out), "--model", str(model)],
                            cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # a loaded machine starts slowly; the rows, not the clock, decide
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") > after_rows:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    assert out.exists() and out.read_bytes().count(b"\n") > after_rows, f"{after_rows} rows not written within 300 s"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_sigint_leaves_every_completed_frame_and_resume_finishes(tmp_path: Path, data_dir: Path, model: Path,
                                                                 reference: bytes) -> None:
    out = tmp_path / "x.csv"
    rc, err = start_and_stop(data_dir / CLIP, out, model, signal.SIGINT)
    assert rc == 130, err[-2000:]
    assert "Traceback" not in err
    frames = parse(out)
    n = len(frames)
    assert 25 <= n < CLIP_FRAMES and frames == list(range(1, n + 1))
    assert f"interrupted; {out} holds frames up to {n} (continue with --resume)" in err
    before = out.read_bytes()
    assert reference.startswith(before)  # exactly the rows an uninterrupted run writes

    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "--resume", "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert parse(out) == list(range(1, CLIP_FRAMES + 1))  # each frame exactly once
    assert out.read_bytes().startswith(before)  # the interrupted run's rows were kept, not rewritten

    again = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "--resume"], cwd=tmp_path)
    assert again.rc == 0 and "already complete" in again.err
    assert parse(out) == list(range(1, CLIP_FRAMES + 1))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_kill_leaves_whole_lines_and_resume_finishes(tmp_path: Path, data_dir: Path, model: Path, reference: bytes,
                                                     sig: int) -> None:
    """SIGKILL, and SIGTERM (``kill``, ``docker stop``: the run stops after its frame, says so in
    one line and exits 143)."""
    out = tmp_path / "x.csv"
    rc, err = start_and_stop(data_dir / CLIP, out, model, sig, after_rows=40)
    if sig == signal.SIGTERM:
        assert rc == 143 and "Traceback" not in err
        assert f"terminated (SIGTERM); {out} holds frames up to" in err.strip().splitlines()[-1]
    else:
        assert rc == -sig
    frames = parse(out)  # one write per frame: a kill cannot leave half a line
    n = len(frames)
    assert 40 <= n < CLIP_FRAMES and frames == list(range(1, n + 1))
    assert reference.startswith(out.read_bytes())

    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "--resume", "--end", "200f", "-q"],
                  cwd=tmp_path)
    assert r.rc == 0, r.err
    assert parse(out) == list(range(1, 201))
    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "--resume", "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert parse(out) == list(range(1, CLIP_FRAMES + 1))


def test_resume_after_a_torn_last_line(tmp_path: Path, data_dir: Path, model: Path, reference: bytes,
                                      reference_run: Path) -> None:
    """A file whose last line was cut mid-write (a crash of the machine, not of the process):
    the torn line is dropped and its frame tracked again, once."""
    import json

    out = tmp_path / "x.csv"
    lines = reference.split(b"\n")
    torn = b"\n".join(lines[:31]) + b"\n" + lines[31][:57]  # header + frames 1-30, then half of frame 31
    out.write_bytes(torn)
    record = json.loads(reference_run.with_name("ref.csv.run.json").read_text())
    record["complete"] = False  # the record of the run that crashed: same input, model, options
    (tmp_path / "x.csv.run.json").write_text(json.dumps(record))
    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "--resume", "--end", "60f", "-q"],
                  cwd=tmp_path)
    assert r.rc == 0, r.err
    assert parse(out) == list(range(1, 61))
    assert out.read_bytes().startswith(b"\n".join(lines[:31]) + b"\n")


def test_resume_refuses_a_file_that_is_not_a_landmark_csv(tmp_path: Path, data_dir: Path, model: Path) -> None:
    out = tmp_path / "x.csv"
    out.write_text("a,b,c\n1,2,3\n")
    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "--resume", "-q"], cwd=tmp_path)
    assert r.rc == 1 and "Traceback" not in r.err
    lines = [ln for ln in r.err.splitlines() if str(out) in ln]
    assert len(lines) == 1 and "not a facetrack/OpenFace landmark CSV" in lines[0] and "cannot --resume" in lines[0]
    assert out.read_text() == "a,b,c\n1,2,3\n"  # left as it was
