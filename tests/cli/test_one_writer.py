"""One writer per output, and nothing replaced that facetrack did not make (issue 34, items 1-3).

Through the real command line: a second run on a locked ``--out`` is refused in one line and
changes nothing; a batch parent stopped by SIGTERM stops its workers and waits for them, and one
killed by SIGKILL takes them with it (so no orphan writes the file a rerun resumes); a file
marked complete whose rows do not match its record is rebuilt, not skipped; an existing file
without a run record, or a finished run made with other options, is kept unless ``--force``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facetrack.io.output import OutputLock, read_landmarks_csv, read_record
from tests.cli.test_interrupt_resume import parse
from tests.test_bad_inputs import CLIP, CLIP_FRAMES, facetrack, identity_mdm_onnx


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    pytest.importorskip("onnx", reason="onnx (the [train] extra) builds the stand-in model")
    return identity_mdm_onnx(tmp_path_factory.mktemp("model") / "identity_mdm.onnx")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir: Path, model: Path) -> Path:
    """An uninterrupted run over the whole clip with the stand-in model."""
    out = tmp_path_factory.mktemp("ref") / "ref.csv"
    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "-q"], cwd=out.parent)
    assert r.rc == 0, r.err
    return out


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def test_a_locked_output_is_refused_in_one_line_and_left_alone(tmp_path: Path, data_dir: Path, model: Path,
                                                               reference: Path) -> None:
    """Fails on 5f63d3b (no lock: the second run rewrites the file and exits 0)."""
    out = tmp_path / "x.csv"
    out.write_bytes(reference.read_bytes())
    (tmp_path / "x.csv.run.json").write_bytes(reference.with_name("ref.csv.run.json").read_bytes())
    before = out.read_bytes()
    with OutputLock(out):  # another run writing it (a lock of another open file: as another process's)
        r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model)], cwd=tmp_path)
    assert r.rc == 1 and "Traceback" not in r.err
    assert _error_lines(r.err) == [f"facetrack: {out}: being written by another facetrack run (pid {os.getpid()}); "
                                   f"not writing it twice: wait for it, or choose another --out"]
    assert out.read_bytes() == before
    # released: the next run takes it, and leaves no lock file behind
    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert out.read_bytes() == before and not (tmp_path / "x.csv.lock").exists()


def test_a_stale_lock_file_of_a_killed_run_is_taken_over(tmp_path: Path, data_dir: Path, model: Path) -> None:
    out = tmp_path / "x.csv"
    (tmp_path / "x.csv.lock").write_text("999999\n")  # what a SIGKILL leaves: the file, no lock
    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "--end", "5f", "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert parse(out) == [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, data_dir: Path) -> Path:
    """An uninterrupted run with the shipped default models (slow enough to be stopped mid-clip)."""
    from facetrack.tracker import models

    if not {"aan", "mdm"} <= set(models.available()):
        pytest.skip("needs the shipped models")
    out = tmp_path_factory.mktemp("ref") / "shipped.csv"
    r = facetrack([str(data_dir / CLIP), "--out", str(out), "-q"], cwd=out.parent)
    assert r.rc == 0, r.err
    return out


def _batch(tmp_path: Path, data_dir: Path, model: Path | None = None) -> subprocess.Popen:
    videos = []
    for name in ("a", "b"):
        v = tmp_path / f"{name}.mp4"
        if not v.exists():
            v.symlink_to(data_dir / CLIP)
        videos.append(str(v))
    from tests import test_bad_inputs

    env = {**os.environ, "PYTHONPATH": str(test_bad_inputs.REPO)}  # the tree under test, as facetrack() runs it
    return subprocess.Popen([sys.executable, "-m", "facetrack.cli.main", *videos, "--out-dir", str(tmp_path / "out"),
                             "--jobs", "2", *(["--model", str(model)] if model else [])], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_rows(paths: list[Path], rows: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if all(p.exists() and p.read_bytes().count(b"\n") > rows for p in paths):
            return
        time.sleep(0.02)
    pytest.fail(f"{rows} rows not written in each of {paths} (the batch ended: {proc.poll()})")


def _unlocked_soon(paths: list[Path], seconds: float = 60) -> bool:
    """Whether every output's lock can be taken within ``seconds`` (no worker holds it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            for p in paths:
                OutputLock(p).acquire().release()
            return True
        except Exception:
            time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_batch_stops_its_workers_and_a_rerun_gives_the_uninterrupted_files(
        tmp_path: Path, data_dir: Path, shipped: Path, sig: int) -> None:
    """``kill -TERM`` (or ``-INT``) to the batch parent alone. Fails on 5f63d3b: the parent died
    at once (SIGTERM: no handler) or waited for workers that never got the signal, which went on
    writing while the rerun wrote the same files."""
    outs = [tmp_path / "out" / "a.csv", tmp_path / "out" / "b.csv"]
    proc = _batch(tmp_path, data_dir)
    _wait_rows(outs, 30, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + sig), err
    assert "Traceback" not in err and "rerun the same command to continue" in err.strip().splitlines()[-1]
    sizes = [p.stat().st_size for p in outs]
    time.sleep(1.0)
    assert [p.stat().st_size for p in outs] == sizes  # nobody writes them any more
    for p in outs:
        frames = parse(p)
        assert frames == list(range(1, len(frames) + 1)) and len(frames) < CLIP_FRAMES
        assert not read_record(p).complete
        assert shipped.read_bytes().startswith(p.read_bytes())
    again = _batch(tmp_path, data_dir)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    for p in outs:
        assert p.read_bytes() == shipped.read_bytes()
        assert read_record(p).complete and read_record(p).mismatch(p) is None


def test_a_batch_parent_killed_by_sigkill_takes_its_workers_with_it(tmp_path: Path, data_dir: Path,
                                                                    shipped: Path) -> None:
    """Fails on 5f63d3b: the orphaned workers wrote on (the issue's NUL bytes and duplicated
    frames came from them and the rerun writing one file)."""
    outs = [tmp_path / "out" / "a.csv", tmp_path / "out" / "b.csv"]
    proc = _batch(tmp_path, data_dir)
    _wait_rows(outs, 30, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert _unlocked_soon(outs), "a worker still holds its output after its parent was killed"
    sizes = [p.stat().st_size for p in outs]
    time.sleep(1.0)
    assert [p.stat().st_size for p in outs] == sizes
    again = _batch(tmp_path, data_dir)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    for p in outs:
        assert p.read_bytes() == shipped.read_bytes()


@pytest.mark.parametrize("recorded", ["with_file_hash", "old_record"])
def test_a_file_marked_complete_whose_rows_do_not_match_is_rebuilt_not_skipped(
        tmp_path: Path, data_dir: Path, model: Path, reference: Path, recorded: str) -> None:
    """What two writers left (duplicated frames, NUL bytes) under a record saying complete.
    Fails on 5f63d3b: ``already complete``, exit 0, the damaged file kept."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    video = tmp_path / "a.mp4"
    video.symlink_to(data_dir / CLIP)
    out = out_dir / "a.csv"
    lines = reference.read_bytes().split(b"\n")
    out.write_bytes(b"\n".join(lines[:220]) + b"\n" + b"\0" * 300 + b"\n".join(lines[150:]))
    record = json.loads(reference.with_name("ref.csv.run.json").read_text())
    if recorded == "old_record":
        record.pop("file", None)  # as 5f63d3b wrote it: no size or hash of the file
    (out_dir / "a.csv.run.json").write_text(json.dumps(record))
    assert read_record(out).complete and read_record(out).mismatch(out) is not None
    r = facetrack([str(video), "--out-dir", str(out_dir), "--model", str(model)], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert "1 tracked, 0 already complete" in r.err
    assert out.read_bytes() == reference.read_bytes()
    frames = read_landmarks_csv(out).frame
    assert len(frames) == CLIP_FRAMES and len(set(frames.tolist())) == CLIP_FRAMES
    again = facetrack([str(video), "--out-dir", str(out_dir), "--model", str(model)], cwd=tmp_path)
    assert again.rc == 0 and "already complete" in again.err


# --- never replace a file facetrack did not make ----------------------------------------------

@pytest.mark.parametrize("content", [b"my notes, do not lose\n", b"\xff\xd8\xff\xe0 a jpeg", b'{"a": 1}\n'],
                         ids=["notes", "jpg", "json"])
def test_an_existing_file_without_a_record_is_kept_unless_force(tmp_path: Path, data_dir: Path, model: Path,
                                                                content: bytes) -> None:
    """Fails on 5f63d3b (replaced without a word, exit 0)."""
    out = tmp_path / "x.csv"
    out.write_bytes(content)
    argv = [str(data_dir / CLIP), "--out", str(out), "--model", str(model), "--end", "5f"]
    r = facetrack(argv, cwd=tmp_path)
    assert r.rc == 1 and "Traceback" not in r.err
    assert _error_lines(r.err) == [f"facetrack: {out}: exists and was not made by facetrack (no x.csv.run.json beside it); "
                                   f"not replacing it: give --force to replace it, or choose another --out"]
    assert out.read_bytes() == content and not (tmp_path / "x.csv.run.json").exists()
    r = facetrack([*argv, "--force", "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert parse(out) == [1, 2, 3, 4, 5]


def test_an_empty_file_is_no_work_to_lose(tmp_path: Path, data_dir: Path, model: Path) -> None:
    """``mktemp`` then ``--out``: an empty file is written over without --force."""
    out = tmp_path / "x.csv"
    out.write_bytes(b"")
    r = facetrack([str(data_dir / CLIP), "--out", str(out), "--model", str(model), "--end", "3f", "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert parse(out) == [1, 2, 3]


def test_a_finished_run_is_not_replaced_by_one_with_other_options(tmp_path: Path, data_dir: Path, model: Path,
                                                                  reference: Path) -> None:
    """``--end 30f`` over a finished 275-frame CSV (issue 29); the same command again may replace
    it (it writes the same rows). Fails on 5f63d3b (30 rows, exit 0)."""
    out = tmp_path / "done.csv"
    out.write_bytes(reference.read_bytes())
    rec = tmp_path / "done.csv.run.json"
    rec.write_bytes(reference.with_name("ref.csv.run.json").read_bytes())
    before, before_rec = out.read_bytes(), rec.read_bytes()
    base = [str(data_dir / CLIP), "--out", str(out), "--model", str(model)]
    r = facetrack([*base, "--end", "30f"], cwd=tmp_path)
    assert r.rc == 1 and "Traceback" not in r.err
    assert _error_lines(r.err) == [f"facetrack: {out}: holds a finished run made with other options (end frame (None vs 30)); "
                                   f"not replacing it: give --force to replace it, or choose another --out"]
    assert out.read_bytes() == before and rec.read_bytes() == before_rec
    r = facetrack([*base, "--max-faces", "2"], cwd=tmp_path)
    assert r.rc == 1 and "max_faces (1 vs 2)" in r.err and out.read_bytes() == before
    r = facetrack([*base, "-q"], cwd=tmp_path)  # the same options: the same rows again
    assert r.rc == 0, r.err
    assert out.read_bytes() == before
    r = facetrack([*base, "--end", "30f", "--force", "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert parse(out) == list(range(1, 31))


def test_an_undecodable_image_does_not_replace_an_existing_output(tmp_path: Path, data_dir: Path, model: Path) -> None:
    """Fails on 5f63d3b (a header-only CSV replaced the earlier result)."""
    img = next((data_dir / "images68" / "afw").glob("*.jpg"))
    out = tmp_path / "x.csv"
    r = facetrack([str(img), "--out", str(out), "--model", str(model), "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    before = out.read_bytes()
    assert before.count(b"\n") >= 2
    bad = tmp_path / img.name
    bad.write_bytes(b"not a jpeg at all")
    # --force: even a run allowed to replace the file leaves it when the input gives no image
    r = facetrack([str(bad), "--out", str(out), "--model", str(model), "-q", "--force"], cwd=tmp_path)
    assert r.rc == 1 and "Traceback" not in r.err
    lines = [ln for ln in _error_lines(r.err) if "skipped" not in ln]
    assert len(lines) == 1 and lines[0].startswith(f"facetrack: {bad}: "), lines
    assert out.read_bytes() == before


# --- what a run prints (issue 29's new-user list) ---------------------------------------------

def test_out_dash_writes_the_csv_to_standard_output(tmp_path: Path, data_dir: Path, model: Path,
                                                    reference: Path) -> None:
    """``--out -``: the rows on stdout, the summary on stderr, no file named ``-`` and no record.
    Fails on 5f63d3b (a file named ``-``)."""
    r = facetrack([str(data_dir / CLIP), "--out", "-", "--model", str(model), "--end", "20f", "-q"], cwd=tmp_path)
    assert r.rc == 0, r.err
    assert not (tmp_path / "-").exists() and not (tmp_path / "-.run.json").exists()
    expected = b"\n".join(reference.read_bytes().split(b"\n")[:21]) + b"\n"
    assert r.out.encode() == expected
    assert _error_lines(r.err) == [ln for ln in _error_lines(r.err) if ln.startswith("facetrack: 20 frames")]
    r = facetrack([str(data_dir / CLIP), "--out", "-", "--resume", "--model", str(model)], cwd=tmp_path)
    assert r.rc == 2 and _error_lines(r.err) == ["facetrack: usage: --resume continues a file, not --out - (standard output)"]


def test_quiet_levels_and_verbose(tmp_path: Path, data_dir: Path, model: Path) -> None:
    """Default: the progress and the one summary line, no set-up lines; -v adds them; -q keeps
    only the summary; -qq prints nothing. Fails on 5f63d3b (five set-up lines by default, -q
    removed the summary, no -v)."""
    base = [str(data_dir / CLIP), "--model", str(model), "--end", "10f"]

    def run(*extra: str, name: str) -> tuple[list[str], list[str]]:
        r = facetrack([*base, "--out", str(tmp_path / f"{name}.csv"), *extra], cwd=tmp_path)
        assert r.rc == 0, r.err
        return _error_lines(r.err), _error_lines(r.out)

    err, out = run(name="default")
    assert len(out) == 1 and out[0].startswith("facetrack: 10 frames, ") and out[0].endswith(f" fps -> {tmp_path / 'default.csv'}")
    assert not any("runtime" in ln or "thread(s)" in ln for ln in err)
    err, _ = run("-v", name="verbose")
    assert any(ln.startswith("facetrack: runtime:") for ln in err) and any("thread(s)" in ln for ln in err)
    err, out = run("-q", name="q")
    assert err == [] and len(out) == 1 and out[0].startswith("facetrack: 10 frames") and " fps -> " in out[0]
    err, out = run("-qq", name="qq")
    assert err == [] and out == []
