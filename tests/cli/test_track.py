"""``facetrack VIDEO --out ...`` end to end on the real clip: rows per frame, formats,
start/end, overlay, resume, one-line errors, a video damaged mid-stream, Ctrl-C."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.engines import names
from facetrack.tracker import models
from facetrack.cli.main import main
from facetrack.tracker.geometry import template
from facetrack.io.output import POSE_CSV_COLUMNS as COLUMNS, read_landmarks_csv  # the CLI's default layout

REPO = Path(__file__).resolve().parents[2]
CLIP = "videos_unlabelled/short_hamilton_clip.mp4"

import facetrack.tracker.detect  # noqa: E402,F401  - the CLI's face detector: its absence is a failure, not a skip


def _fake_onnx(path: Path, size: int = 32, hidden: int = 8) -> Path:
    """A tiny real MDM-kind ONNX model with facetrack metadata that returns its ``init_shape``
    (an identity refiner; confidence = the crop's mean brightness). Same as in test_tracker."""
    onnx = pytest.importorskip("onnx", reason="onnx (the [train] extra) builds the stand-in model")
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    b = names.BATCH_AXIS
    ins = [helper.make_tensor_value_info(names.IMAGE, f32, [b, 1, size, size]),
           helper.make_tensor_value_info(names.INIT_SHAPE, f32, [b, 68, 2]), helper.make_tensor_value_info(names.HIDDEN, f32, [b, hidden])]
    outs = [helper.make_tensor_value_info(names.LANDMARKS, f32, [b, 68, 2]), helper.make_tensor_value_info(names.CONFIDENCE, f32, [b]),
            helper.make_tensor_value_info(names.HIDDEN_OUT, f32, [b, hidden])]
    nodes = [helper.make_node("ReduceMean", [names.IMAGE], [names.CONFIDENCE], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Identity", [names.INIT_SHAPE], [names.LANDMARKS]), helper.make_node("Identity", [names.HIDDEN], [names.HIDDEN_OUT])]
    model = helper.make_model(helper.make_graph(nodes, "fake", ins, outs), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {
        names.FORMAT: names.FORMAT_VERSION, names.KIND: "mdm", names.ARCH: "mdm-rt", names.INPUT_SIZE: str(size),
        names.N_POINTS: "68", names.HIDDEN_SIZE: str(hidden), names.STEPS: "1", names.MEAN_SHAPE: json.dumps(np.asarray(template(size)).tolist())})
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model_args(tmp_path_factory) -> list[str]:
    """The shipped MDM when it exists, else a stand-in ONNX model (the plumbing is the same)."""
    if "mdm" in models.available():
        return ["--model", "mdm"]
    return ["--model", str(_fake_onnx(tmp_path_factory.mktemp("m") / "fake_mdm.onnx")), "--confidence", "0.1"]


@pytest.fixture(scope="module")
def clip(data_dir) -> Path:
    return data_dir / CLIP


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_end_to_end_first_30_frames(clip, tmp_path, model_args, capsys):
    out, ov = tmp_path / "l.csv", tmp_path / "o.mp4"
    assert main([str(clip), "--out", str(out), "--end", "30f", "--overlay", str(ov), *model_args]) == 0
    rows = _rows(out)
    assert rows[0] == list(COLUMNS) and len(rows) == 31  # max-faces 1: one row per frame
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 31)) and {r[1] for r in rows[1:]} == {"0"}
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], np.arange(30) / 29.97, atol=1e-3)
    vals = np.array([[float(v) for v in r] for r in rows[1:]])
    assert np.isfinite(vals).all() and vals[:, 4].sum() > 0  # a face was found
    ok = vals[vals[:, 4] == 1]
    x0 = rows[0].index("x_0")
    assert ((ok[:, x0:x0 + 68] >= -50) & (ok[:, x0:x0 + 68] < 690)).all()  # landmarks near the 640x360 frame
    cap = cv2.VideoCapture(str(ov))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    err = capsys.readouterr()
    assert "30 frames" in err.out and "fps" in err.out and "Traceback" not in err.err


def test_start_end_json_and_several_faces(clip, tmp_path, model_args):
    out = tmp_path / "l.jsonl"
    assert main([str(clip), "--out", str(out), "--format", "json", "--start", "10f", "--end", "0.7",
                 "--max-faces", "3", "--quiet", *model_args]) == 0
    objs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [o["frame"] for o in objs] == list(range(11, 22))  # 0.7 s * 29.97 = frame 21, exclusive
    for o in objs:
        ids = [f["face_id"] for f in o["faces"]]
        assert len(ids) == len(set(ids)) and all(0 <= i < 3 for i in ids)
        assert all(len(f["landmarks"]) == 68 for f in o["faces"])


def test_resume_after_a_killed_run(clip, tmp_path, model_args):
    out = tmp_path / "l.csv"
    assert main([str(clip), "--out", str(out), "--end", "10f", "-q", *model_args]) == 0
    with open(out, "ab") as f:
        f.write(b"11,0,0.334,0.5")  # a run killed in the middle of frame 11's line
    assert main([str(clip), "--out", str(out), "--end", "20f", "--resume", "-q", *model_args]) == 0
    t = read_landmarks_csv(out)
    assert list(t.frame) == list(range(1, 21))
    assert out.read_text().count("frame,face_id") == 1


def test_damaged_video_keeps_rows_and_says_where(clip, tmp_path, model_args, capsys):
    src = cv2.VideoCapture(str(clip))
    avi = tmp_path / "damaged.avi"
    w = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for _ in range(40):
        w.write(src.read()[1])
    w.release()
    data = avi.read_bytes()
    avi.write_bytes(data[: len(data) // 2])  # the header still announces 40 frames
    out = tmp_path / "l.csv"
    rc = main([str(avi), "--out", str(out), "-q", *model_args])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{avi}: read failed at frame" in err and "of 40" in err and "Traceback" not in err
    n = len(read_landmarks_csv(out).frame)
    assert 5 < n < 40 and f"up to {n}" in err
    # frame n, the last one decoded, is cut short: FFmpeg's errors on it are counted and said
    assert main([str(avi), "--out", str(out), "-q", "--end", f"{n}f", *model_args]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"facetrack: {avi}: 1 of 40 frames decoded with errors (first: frame {n}, overread 8); the file is damaged " \
                          f"and the rows of those frames (and of frames after them until the next key frame) may be wrong"
    assert len(read_landmarks_csv(out).frame) == n
    # stopping before the damage is a normal run
    out.unlink()
    assert main([str(avi), "--out", str(out), "-q", "--end", f"{n - 1}f", *model_args]) == 0
    assert len(read_landmarks_csv(out).frame) == n - 1 and capsys.readouterr().err == ""


@pytest.mark.parametrize("case, problem", [
    ("missing", "no such file"),
    ("directory", "no images"),  # a folder is read as images
    ("text", "not a video"),
    ("no_frames", "no frames could be decoded"),
    ("same", "would overwrite the input"),
    ("out_dir", "is a directory"),
    ("no_folder", "does not exist"),
    ("bad_model", "no such model file"),
])
def test_errors_are_one_line(clip, tmp_path, case, problem, capsys):
    video, out, extra = str(clip), str(tmp_path / "l.csv"), []
    if case == "missing":
        video = str(tmp_path / "nope.mp4")
    elif case == "directory":
        video = str(tmp_path)
    elif case == "text":
        video = str(tmp_path / "fake.mp4")
        Path(video).write_text("not a video\n" * 50)
    elif case == "no_frames":
        video = str(tmp_path / "empty.avi")
        cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64)).release()
    elif case == "same":
        out = video = str(tmp_path / "copy.mp4")
        Path(video).write_bytes(clip.read_bytes())
    elif case == "out_dir":
        out = str(tmp_path)
    elif case == "no_folder":
        out = str(tmp_path / "missing" / "l.csv")
    elif case == "bad_model":
        extra = ["--model", str(tmp_path / "nope.onnx")]
    rc = main([video, "--out", out, "-q", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    msgs = [e for e in err if e.startswith("facetrack: ") and problem in e]
    assert len(msgs) == 1, err
    assert not any("Traceback" in e for e in err)
    if case == "same":
        assert Path(video).read_bytes() == clip.read_bytes()  # the input was not touched


def test_ctrl_c_leaves_a_valid_csv_and_exits_130(clip, tmp_path, model_args):
    out = tmp_path / "l.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "facetrack.cli.main", str(clip), "--out", str(out), *model_args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300  # a loaded machine starts slowly; the rows, not the clock, decide
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 6):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-500:]
    assert b"interrupted" in err and b"Traceback" not in err
    t = read_landmarks_csv(out)
    assert 5 <= len(t.frame) < 275 and list(t.frame) == list(range(1, len(t.frame) + 1))
    assert out.read_bytes().endswith(b"\n")


def test_video_source_seek_is_exact_and_camera_error(clip):
    from facetrack.io.video import Camera, VideoError, VideoFile

    with VideoFile(clip) as v:
        assert v.frame_count == 275 and v.fps == pytest.approx(29.97, abs=0.01) and (v.width, v.height) == (640, 360)
        frames = {i: f for i, _, f in v if i in (0, 99, 100, 274)}
    assert set(frames) == {0, 99, 100, 274}
    with VideoFile(clip) as v:
        v.seek(100)
        i, ts, f = v.read()
        assert i == 100 and ts == pytest.approx(100 / 29.97)
        np.testing.assert_array_equal(f, frames[100])  # the frame a sequential decode gives
        with pytest.raises(VideoError, match="past the end"):
            v.seek(275)
    with pytest.raises(VideoError, match="camera 99: cannot be opened"):
        Camera(99)
    with pytest.raises(VideoError, match="/dev/video97: no such camera device"):
        Camera("/dev/video97")


def test_video_file_decodes_on_one_thread_by_default_and_gives_the_same_frames(clip):
    from facetrack.io.video import VideoFile

    with VideoFile(clip) as one, VideoFile(clip, threads=None) as default, VideoFile(clip, threads=2) as two:
        assert one._cap.get(cv2.CAP_PROP_N_THREADS) == 1  # FFmpeg's own default is one thread per core
        assert two._cap.get(cv2.CAP_PROP_N_THREADS) == 2
        assert one._open().get(cv2.CAP_PROP_N_THREADS) == 1  # the capture an inexact seek reopens
        for _ in range(40):
            (i, ts, a), (j, _, b), (k, _, c) = one.read(), default.read(), two.read()
            assert i == j == k
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)


@pytest.fixture
def opencv_threads():
    """Restores OpenCV's thread count, which the track job sets for the whole process."""
    before = cv2.getNumThreads()
    yield
    cv2.setNumThreads(before)


@pytest.mark.parametrize("option, threads", [([], 1), (["--threads", "2"], 2)])
def test_threads_option_sets_opencv_and_decoder_threads(clip, tmp_path, model_args, monkeypatch, opencv_threads, option, threads):
    from facetrack.io import video

    opened = []
    real = video.open_source
    monkeypatch.setattr(video, "open_source", lambda *a, **kw: opened.append(kw.get("threads")) or real(*a, **kw))
    cv2.setNumThreads(3)
    assert main([str(clip), "--out", str(tmp_path / "t.csv"), "--end", "3f", "-q", *model_args, *option]) == 0
    assert cv2.getNumThreads() == threads and opened == [threads]


def test_killed_run_leaves_whole_lines(clip, tmp_path, model_args):
    """SIGKILL (no chance to clean up): the file still holds whole frames only."""
    out = tmp_path / "l.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "facetrack.cli.main", str(clip), "--out", str(out), "-q", *model_args],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # a loaded machine starts slowly; the rows, not the clock, decide
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 10):
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    data = out.read_bytes()
    assert data.endswith(b"\n")  # every frame is one write of whole lines
    t = read_landmarks_csv(out)
    assert len(t.frame) >= 9 and list(t.frame) == list(range(1, len(t.frame) + 1))


# --- issue 14: names, images, records, progress, overlays, many videos -----------------------------
def _cli(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "facetrack.cli.main", *args], cwd=cwd, env=env, capture_output=True, timeout=300, **kw)


def test_a_video_whose_name_is_not_utf8_is_tracked(clip, tmp_path, model_args):
    """OpenCV's binding dereferences NULL on such a name (exit 139 before the fix); the video
    is opened through a descriptor instead, and messages show the bytes escaped."""
    name = os.fsdecode(b"caf\xe9_\xff.mp4")
    (tmp_path / name).write_bytes(clip.read_bytes())
    r = _cli([name, "--out", "x.csv", "--end", "5f", "-q", *model_args], tmp_path)
    assert r.returncode == 0, r.stderr[-1000:]
    assert list(read_landmarks_csv(tmp_path / "x.csv").frame) == [1, 2, 3, 4, 5]
    missing = _cli([os.fsdecode(b"gone_\xe9.mp4"), "--out", "y.csv", "-q", *model_args], tmp_path)
    assert missing.returncode == 1 and missing.stderr.decode().strip() == "facetrack: gone_\\xe9.mp4: no such file"


def test_images_one_row_per_image_and_face(data_dir, tmp_path, model_args):
    """A folder: one row per image (and face) in name order, an image column, undecodable files
    skipped with a warning; a single image works the same."""
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    src = sorted((data_dir / "images68" / "helen_test").glob("*.jpg"))[:3]
    for p in src:
        shutil.copy(p, photos / p.name)
    (photos / "zz_broken.jpg").write_bytes(b"not an image")
    (photos / "notes.txt").write_text("ignored")
    out = tmp_path / "l.csv"
    r = _cli([str(photos), "--out", str(out), *model_args], tmp_path)
    assert r.returncode == 1, r.stderr[-1000:]  # some inputs failed (issue 34): the others are all in the file
    rows = _rows(out)
    assert rows[0] == ["image", *COLUMNS]
    assert [r[0] for r in rows[1:]] == [p.name for p in src] and [r[1] for r in rows[1:]] == ["1", "2", "3"]
    assert b"zz_broken.jpg: not an image OpenCV can decode; skipped" in r.stderr
    assert b"3 images" in r.stdout and b"1 skipped (see the warnings)" in r.stdout
    one = tmp_path / "one.csv"
    assert _cli([str(photos / src[0].name), "--out", str(one), "-q", *model_args], tmp_path).returncode == 0
    assert _rows(one)[1] == rows[1]  # the same row as in the folder run


def _record_run(clip: Path, out: Path, model_args: list[str], *extra: str) -> int:
    return main([str(clip), "--out", str(out), "-q", *model_args, *extra])


def test_resume_refuses_a_csv_of_another_video_model_or_start(clip, data_dir, tmp_path, model_args, capsys):
    out = tmp_path / "l.csv"
    assert _record_run(clip, out, model_args, "--end", "10f") == 0
    before = out.read_bytes()
    other = data_dir / "videos_unlabelled" / "sbr_demo_selfie.mp4"
    capsys.readouterr()
    assert main([str(other), "--out", str(out), "--resume", "-q", *model_args]) == 1
    err = capsys.readouterr().err
    assert "made from another run (input (" in err and "sbr_demo_selfie.mp4" in err and "not resuming" in err
    assert _record_run(clip, out, model_args, "--resume", "--start", "5f") == 1
    assert "start frame (0 vs 5)" in capsys.readouterr().err
    assert _record_run(clip, out, model_args, "--resume", "--max-faces", "2") == 1
    assert "max_faces (1 vs 2)" in capsys.readouterr().err
    assert out.read_bytes() == before  # refused: not a byte changed
    (tmp_path / "l.csv.run.json").unlink()
    assert _record_run(clip, out, model_args, "--resume") == 1
    assert "no record of what it was made from" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_no_face_rows_after_a_resume_repeat_the_last_known_landmarks(clip, tmp_path, model_args):
    """6 frames of a face then black frames: the rows after the face is lost carry its last
    landmarks, in a resumed run as in an uninterrupted one (zeros before the fix)."""
    cap = cv2.VideoCapture(str(clip))
    for _ in range(90):  # frame 90: the frontal face of the clip
        cap.read()
    face = cap.read()[1]
    cap.release()
    video = tmp_path / "face_then_black.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for i in range(20):
        w.write(face if i < 6 else np.zeros_like(face))
    w.release()
    whole, part = tmp_path / "whole.csv", tmp_path / "part.csv"
    assert main([str(video), "--out", str(whole), "-q", *model_args]) == 0
    assert main([str(video), "--out", str(part), "--end", "9f", "-q", *model_args]) == 0
    assert main([str(video), "--out", str(part), "--resume", "-q", *model_args]) == 0
    a, b = read_landmarks_csv(whole), read_landmarks_csv(part)
    assert a.success[:6].any() and not a.success[6:].any()
    last = a.landmarks[np.flatnonzero(a.success)[-1]]
    assert np.abs(last).sum() > 0
    np.testing.assert_array_equal(b.landmarks[9:], np.broadcast_to(last, b.landmarks[9:].shape))
    assert whole.read_bytes() == part.read_bytes()


def test_progress_into_a_pipe_is_plain_lines(clip, tmp_path, model_args):
    r = _cli([str(clip), "--out", "l.csv", "--end", "20f", *model_args], tmp_path)
    assert r.returncode == 0
    assert b"\r" not in r.stderr  # no bar redraws into a log file
    assert b"20 frames" in r.stdout


def test_the_runtime_line_is_printed_once_for_aan_mdm(clip, tmp_path):
    if not {"aan", "mdm"} <= set(models.available()):
        pytest.skip("the shipped aan and mdm-rt weights are not in this checkout")
    r = _cli([str(clip), "--out", "l.csv", "--end", "3f", "--model", "aan+mdm", "-v"], tmp_path)  # set-up lines: -v
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stderr.count(b"runtime: ") == 1, r.stderr.decode()


@pytest.mark.parametrize("suffix, min_frames", [(".avi", 1), (".mkv", 1)])
def test_overlay_of_a_killed_run_is_playable(clip, tmp_path, model_args, suffix, min_frames):
    """.avi (Motion JPEG) and .mkv need no index at the end: after SIGKILL the frames written so
    far can be read back (an .mp4 opens no more)."""
    out, ov = tmp_path / "l.csv", tmp_path / f"o{suffix}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "facetrack.cli.main", str(clip), "--out", str(out), "--overlay", str(ov),
                             "-q", *model_args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # a loaded machine starts slowly; the rows, not the clock, decide
    while time.monotonic() < deadline and proc.poll() is None and (not out.exists() or out.read_bytes().count(b"\n") < 80):
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()
    proc.wait(timeout=30)
    cap = cv2.VideoCapture(str(ov))
    n = 0
    while cap.read()[0]:
        n += 1
    assert cap.isOpened() and n >= min_frames


def test_many_videos_with_jobs_skip_complete_and_report_failures(clip, data_dir, tmp_path, model_args):
    """--jobs 2 over two real videos and a broken one: two complete CSVs, one failure line naming
    the broken file, exit 1; a rerun tracks nothing; a partial CSV is resumed."""
    selfie = data_dir / "videos_unlabelled" / "sbr_demo_selfie.mp4"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:100_000])
    args = [str(clip), str(selfie), str(broken), "--out-dir", "out", "--jobs", "2", "--end", "12f", *model_args]
    r = _cli(args, tmp_path)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    fails = [ln for ln in err.splitlines() if "FAILED" in ln]
    assert len(fails) == 1 and "broken.mp4" in fails[0] and "not a video" in fails[0]
    for name in ("short_hamilton_clip", "sbr_demo_selfie"):
        assert list(read_landmarks_csv(tmp_path / "out" / f"{name}.csv").frame) == list(range(1, 13))
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    again = _cli(args[:2] + args[3:], tmp_path)
    assert again.returncode == 0 and again.stderr.decode().count(": already complete ->") == 2
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == stamp  # nothing rewritten
    # a longer --end resumes both files after their 12 frames
    longer = _cli(args[:2] + ["--out-dir", "out", "--jobs", "2", "--end", "15f", *model_args], tmp_path)
    assert longer.returncode == 0, longer.stderr.decode()
    assert list(read_landmarks_csv(tmp_path / "out" / "sbr_demo_selfie.csv").frame) == list(range(1, 16))


def test_shards_split_the_inputs_deterministically():
    from facetrack.cli.batch import shard, shard_arg

    names = [f"v{i:02d}.mp4" for i in range(10)]
    parts = [shard(list(reversed(names)), i, 3) for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == names and all(not set(a) & set(b) for a in parts for b in parts if a is not b)
    assert parts == [shard(names, i, 3) for i in (1, 2, 3)]  # the order given does not matter
    assert shard_arg("2/8") == (2, 8)
    for bad in ("0/8", "9/8", "a/b", "3"):
        with pytest.raises(Exception):
            shard_arg(bad)


def test_workers_get_the_job_every_option_included():
    """A worker gets the batch's typed job for its input as JSON: --out, --resume, one thread and
    every other option as given, the input kept as a name (it may start with a dash); no command
    line is rebuilt from the parser."""
    import argparse

    from facetrack.cli.batch import Job, worker_command
    from facetrack.cli.job import TrackJob
    from facetrack.cli.track import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--out-dir", "d", "--jobs", "2", "--end", "12f", "--smooth", "--confidence", "0.3",
                              "--model", "aan", "--max-faces", "2", "--", "a.mp4", "-b.mp4"])
    job = TrackJob.from_args(args)
    cmd = worker_command(job, Job("-b.mp4", Path("d/-b.csv")), 1)
    assert cmd[1:4] == ["-m", "facetrack.cli.track", "--job"] and len(cmd) == 5
    one = TrackJob.from_json(cmd[4])
    assert one == job.for_input("-b.mp4", "d/-b.csv", 1, resume=True)
    assert one.video == ("-b.mp4",) and one.out == "d/-b.csv" and one.resume and one.threads == 1
    assert one.out_dir is None and one.jobs == 1
    for k in ("end", "smooth", "confidence", "model", "max_faces"):
        assert getattr(one, k) == getattr(args, k)


def test_the_job_has_a_field_for_every_option_with_the_parsers_default():
    """A new option without a TrackJob field fails here (it would miss the workers and records)."""
    import argparse
    import dataclasses

    from facetrack.cli.job import TrackJob
    from facetrack.cli.track import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = TrackJob.from_args(parser.parse_args([]))
    names = {f.name for f in dataclasses.fields(TrackJob)}
    assert set(vars(parser.parse_args([]))) <= names
    for k, v in vars(parser.parse_args([])).items():
        assert getattr(TrackJob(), k) == (tuple(v) if isinstance(v, list) else v), k
    assert TrackJob.from_json(defaults.to_json()) == defaults
    with pytest.raises(TypeError, match="no field for the option"):
        TrackJob.from_args(argparse.Namespace(**vars(parser.parse_args([])), new_option=1))


def test_no_import_cycle_between_batch_and_track():
    """batch imports neither track nor anything that imports it; track may import batch."""
    import ast

    def imports(mod: str) -> set[str]:
        tree = ast.parse((REPO / "facetrack" / "cli" / f"{mod}.py").read_text())
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                out.add(node.module)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
        return out

    assert "facetrack.cli.track" not in imports("batch") and "facetrack.cli.track" not in imports("job")
    assert "facetrack.cli.batch" not in imports("job")
    assert "_actions" not in (REPO / "facetrack" / "cli" / "batch.py").read_text()


def _short_video(path: Path, source: Path, frames: int = 4) -> Path:
    """The first ``frames`` frames of ``source`` written as ``path``."""
    cap = cv2.VideoCapture(str(source))
    out = None
    for _ in range(frames):
        ok, f = cap.read()
        assert ok
        if out is None:
            out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (f.shape[1], f.shape[0]))
        out.write(f)
    cap.release()
    out.release()
    return path


def test_a_folder_of_recordings_is_tracked_video_by_video_with_the_default_model(clip, tmp_path):
    """``facetrack RECORDINGS/ --out-dir DIR`` with no --model: each video of the folder into its
    own CSV. (``--model auto`` once failed every batch: the up-front check took ``auto`` for a file
    name.) One output file for the folder says to use --out-dir."""
    rec = tmp_path / "recordings"
    rec.mkdir()
    for name in ("b.mp4", "a.mkv"):
        _short_video(rec / name, clip)
    (rec / "notes.txt").write_text("not a video")
    r = _cli([str(rec), "--out-dir", "out", "-q"], tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.csv")) == ["a.csv", "b.csv"]
    for name in ("a", "b"):
        assert list(read_landmarks_csv(tmp_path / "out" / f"{name}.csv").frame) == [1, 2, 3, 4]
        assert json.loads((tmp_path / "out" / f"{name}.csv.run.json").read_text())["model"]["name"] == "aan+mdm"
    one = _cli([str(rec), "--out", "x.csv"], tmp_path)
    err = one.stderr.decode().strip()
    assert one.returncode != 0 and "recordings: no images in this folder but 2 video(s)" in err and "--out-dir" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "x.csv").exists()


def test_folders_of_images_in_a_batch_are_fitted_skipped_when_complete_and_never_overwritten(data_dir, tmp_path, model_args):
    """Image inputs take no --resume, so their workers are started without it; a complete output
    is skipped, and one made with other options is left as it is, with one line saying why."""
    src = sorted((data_dir / "images68" / "helen_test").glob("*.jpg"))[:2]
    for d in ("p1", "p2"):
        (tmp_path / d).mkdir()
        for f in src:
            (tmp_path / d / f.name).write_bytes(f.read_bytes())
    args = ["p1", "p2", "--out-dir", "out", *model_args]
    r = _cli(args, tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    for d in ("p1", "p2"):
        rows = _rows(tmp_path / "out" / f"{d}.csv")
        assert rows[0] == ["image", *COLUMNS] and sorted({r[0] for r in rows[1:]}) == [f.name for f in src]
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    again = _cli(args, tmp_path)
    assert again.returncode == 0 and again.stderr.decode().count(": already complete ->") == 2
    other = _cli(args + ["--max-faces", "2"], tmp_path)
    fails = [ln for ln in other.stderr.decode().splitlines() if "FAILED" in ln]
    assert other.returncode == 1 and len(fails) == 2
    assert all("made from another run" in ln and "max_faces" in ln and "not overwriting" in ln for ln in fails)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == stamp  # nothing rewritten


def test_ctrl_c_stops_a_batch_and_a_rerun_finishes_it(clip, data_dir, tmp_path, model_args):
    """SIGINT to the process group (what Ctrl-C does): exit 130, every CSV ends on whole
    frames, and the same command again resumes them to the end."""
    selfie = data_dir / "videos_unlabelled" / "sbr_demo_selfie.mp4"
    args = [str(clip), str(selfie), "--out-dir", "out", "--jobs", "2", *model_args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "facetrack.cli.main", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    first = tmp_path / "out" / "short_hamilton_clip.csv"
    deadline = time.monotonic() + 300  # a loaded machine starts slowly; the rows, not the clock, decide
    while time.monotonic() < deadline and proc.poll() is None and (not first.exists() or first.read_bytes().count(b"\n") < 20):
        time.sleep(0.02)
    assert proc.poll() is None, "the batch ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-1000:]
    assert b"interrupted; rerun the same command to continue" in err and b"Traceback" not in err
    n = len(read_landmarks_csv(first).frame)
    assert 19 <= n < 275 and first.read_bytes().endswith(b"\n")  # the header and 19 rows were there
    r = _cli(args, tmp_path)
    assert r.returncode == 0, r.stderr.decode()[-1000:]
    for name in ("short_hamilton_clip", "sbr_demo_selfie"):
        assert list(read_landmarks_csv(tmp_path / "out" / f"{name}.csv").frame) == list(range(1, 276))


@pytest.mark.skipif(not {"aan", "mdm"} <= set(models.available()), reason="needs the shipped aan and mdm-rt models")
def test_default_model_is_aan_mdm_for_images_and_video(data_dir, clip, tmp_path):
    """``--model auto`` (the default) is aan+mdm for still images and video alike, recorded as
    such (a video run recorded with the earlier default, mdm, resumes with ``--model mdm``)."""
    img = sorted((data_dir / "images68" / "helen_test").glob("*.jpg"))[0]
    outs = {}
    for label, extra in (("auto", []), ("aan+mdm", ["--model", "aan+mdm"]), ("mdm", ["--model", "mdm"])):
        outs[label] = tmp_path / f"img-{label.replace('+', '_')}.csv"
        assert main([str(img), "--out", str(outs[label]), "--max-faces", "3", "--quiet", *extra]) == 0

    def points(path):
        with path.open() as fh:
            return np.array([[float(r[f"{a}_{i}"]) for i in range(68) for a in "xy"] for r in csv.DictReader(fh)])

    rows = {k: points(v) for k, v in outs.items()}
    assert np.array_equal(rows["auto"], rows["aan+mdm"]) and not np.allclose(rows["auto"], rows["mdm"])
    assert json.loads(outs["auto"].with_name(outs["auto"].name + ".run.json").read_text())["model"]["name"] == "aan+mdm"
    vid = tmp_path / "vid.csv"
    assert main([str(clip), "--out", str(vid), "--end", "3f", "--quiet"]) == 0
    assert json.loads((tmp_path / "vid.csv.run.json").read_text())["model"]["name"] == "aan+mdm"
    old = tmp_path / "old.csv"  # a run made with the earlier default
    assert main([str(clip), "--out", str(old), "--end", "3f", "--quiet", "--model", "mdm"]) == 0
    assert main([str(clip), "--out", str(old), "--end", "5f", "--resume", "--quiet"]) != 0
    assert main([str(clip), "--out", str(old), "--end", "5f", "--resume", "--quiet", "--model", "mdm"]) == 0


def test_video_files_are_not_smoothed_by_default_and_smoothing_is_one_switch(data_dir, clip, tmp_path, model_args, capsys):
    """``--smooth auto`` (the default) leaves video files unsmoothed (docs/SMOOTHING.md: on real
    head turns smoothing cost accuracy): its rows equal ``--smooth off``'s and differ from
    ``--smooth on``'s (``--smooth`` alone); the record stores the resolved choice, so a smoothed
    run resumes with ``--smooth on`` only, and the message says so."""
    outs = {}
    for label, extra in (("auto", []), ("on", ["--smooth", "on"]), ("off", ["--smooth", "off"]), ("bare", ["--smooth"])):
        outs[label] = tmp_path / f"v-{label}.csv"
        assert main([str(clip), "--out", str(outs[label]), "--end", "15f", "--quiet", *model_args, *extra]) == 0
    pts = {k: np.array([r[5:] for r in _rows(v)[1:]], float) for k, v in outs.items()}
    assert np.isfinite(pts["auto"]).all() and len(pts["auto"]) == 15
    assert np.array_equal(pts["auto"], pts["off"]) and np.array_equal(pts["on"], pts["bare"])
    assert not np.allclose(pts["auto"], pts["on"])

    def record(path):
        return json.loads(path.with_name(path.name + ".run.json").read_text())["options"]

    assert record(outs["auto"])["smooth"] is False and "smooth_beta" not in record(outs["auto"])
    on = record(outs["on"])
    assert on["smooth"] is True and on["smooth_reset"] == 0.02 and on["smooth_shape_min_cutoff"] == 8.0
    img = sorted((data_dir / "images68" / "helen_test").glob("*.jpg"))[0]
    assert main([str(img), "--out", str(tmp_path / "img.csv"), "--quiet", *model_args]) == 0
    assert record(tmp_path / "img.csv")["smooth"] is False
    # a smoothed run (as every default video run recorded before 2026-12-07) resumes only smoothed
    capsys.readouterr()
    assert main([str(clip), "--out", str(outs["on"]), "--end", "20f", "--resume", "--quiet", *model_args]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "v-on.csv" in err[0] and "smoothing on vs off: add --smooth on to resume it" in err[0]
    assert "smooth_beta" not in err[0]
    assert main([str(clip), "--out", str(outs["on"]), "--end", "20f", "--resume", "--quiet", "--smooth", "on", *model_args]) == 0
    assert len(_rows(outs["on"])) == 21


def test_smooth_flow_changes_rows_and_is_recorded(clip, tmp_path, model_args, capsys):
    """``--smooth-flow off`` smooths without moving the filter by the flow: other rows, recorded,
    and a run made with it resumes only with it. Also with the default two-model chain, which
    measures the flow for its own use either way (it once moved the filter with the flow off)."""
    for extra in ([], model_args):
        outs = {}
        for label in ("on", "off"):
            outs[label] = tmp_path / f"flow-{label}.csv"
            outs[label].unlink(missing_ok=True)
            assert main([str(clip), "--out", str(outs[label]), "--end", "15f", "--quiet", "--smooth", "on", "--smooth-flow", label, *extra]) == 0
        pts = {k: np.array([r[6:] for r in _rows(v)[1:]], float) for k, v in outs.items()}
        assert np.isfinite(pts["on"]).all() and pts["on"].shape == pts["off"].shape
        assert not np.allclose(pts["on"], pts["off"]), extra
    opts = {k: json.loads(v.with_name(v.name + ".run.json").read_text())["options"] for k, v in outs.items()}
    assert opts["on"]["smooth_flow"] == "on" and opts["off"]["smooth_flow"] == "off"
    capsys.readouterr()
    assert main([str(clip), "--out", str(outs["off"]), "--end", "20f", "--resume", "--quiet", "--smooth", "on", *model_args]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flow-off.csv" in err[0] and "smooth_flow" in err[0], err
    assert main([str(clip), "--out", str(outs["off"]), "--end", "20f", "--resume", "--quiet", "--smooth", "on", "--smooth-flow", "off", *model_args]) == 0
    assert len(_rows(outs["off"])) == 21


def test_shape_modes_are_recorded_where_they_act_and_checked(clip, tmp_path, capsys):
    """``--shape-modes`` changes rows only with ``--track-init shape``: recorded there (the
    shipped model's choice when not given), absent otherwise, so template runs recorded before
    the option still resume; a negative count is a usage error."""
    import argparse

    from facetrack.tracker.shape_model import default_shape_model
    from facetrack.cli.track import add_arguments, make_record

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    files = [tmp_path / "m.onnx"]
    files[0].write_bytes(b"x")

    def options(*argv):
        return make_record(parser.parse_args([str(clip), "--out", "o.csv", *argv]), clip, files, 0, None).options

    assert "shape_modes" not in options() and "shape_modes" not in options("--shape-modes", "5")
    assert options("--track-init", "shape")["shape_modes"] == default_shape_model().record["tracking_modes"]
    assert options("--track-init", "shape", "--shape-modes", "0")["shape_modes"] == 0
    assert main([str(clip), "--out", str(tmp_path / "x.csv"), "--shape-modes", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["facetrack: usage: --shape-modes -1: must be 0 or more"] or err[-1].endswith("--shape-modes -1: must be 0 or more")


@pytest.mark.skipif(not {"aan", "mdm"} <= set(models.available()), reason="needs the shipped aan and mdm-rt models")
def test_still_images_are_searched_wider_than_video(data_dir, clip, tmp_path):
    """Still images take ``STILL_DETECTOR`` by default, recorded by name: the turned face under a
    hat and a hand (300-W ``ibug/image_003_1``), which the video default misses, is reported
    near its landmarks; ``--detector`` still chooses; video keeps the default detector."""
    from facetrack.tracker.detect import DEFAULT_DETECTOR, STILL_DETECTOR
    from facetrack.io.landmarks import read_pts
    from facetrack.eval.metrics import nme

    img = data_dir / "images68" / "ibug" / "image_003_1.jpg"
    gt = read_pts(img.with_suffix(".pts"))

    def run(name, *extra):
        out = tmp_path / f"{name}.csv"
        assert main([str(img), "--out", str(out), "--max-faces", "5", "--quiet", *extra]) == 0
        with out.open() as fh:
            rows = [r for r in csv.DictReader(fh) if r["success"] == "1"]
        fits = [np.array([[float(r[f"x_{i}"]), float(r[f"y_{i}"])] for i in range(68)]) for r in rows]
        options = json.loads(out.with_name(out.name + ".run.json").read_text())["options"]
        return [float(nme(f[None], gt[None])[0]) for f in fits], options["detector"]

    errs, recorded = run("still")
    assert recorded == STILL_DETECTOR and errs and min(errs) < 0.10
    errs, recorded = run("video-default", "--detector", DEFAULT_DETECTOR)
    assert recorded == DEFAULT_DETECTOR and not any(e < 0.10 for e in errs)
    vid = tmp_path / "vid.csv"
    assert main([str(clip), "--out", str(vid), "--end", "2f", "--quiet"]) == 0
    assert json.loads((tmp_path / "vid.csv.run.json").read_text())["options"]["detector"] is None


@pytest.mark.skipif(not {"aan-turned", "mdm-rt-turned"} <= set(models.available()), reason="needs the shipped turned-face models")
def test_the_turned_view_is_on_by_default_and_recorded(clip, tmp_path, capsys):
    """``--turned-model`` defaults to the shipped turned-face models: their files are loaded and
    hashed into the run record, so a CSV made with them does not resume without them."""
    import argparse

    from facetrack.tracker.models import TURNED
    from facetrack.cli.track import add_arguments, make_record, model_files, run_model_files

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    on = parser.parse_args([str(clip), "--out", "o.csv"])
    off = parser.parse_args([str(clip), "--out", "o.csv", "--turned-model", "none"])
    assert run_model_files(on) == run_model_files(off) + model_files(TURNED)
    assert make_record(on, clip, run_model_files(on), 0, None).model["turned"] == TURNED
    assert "turned" not in make_record(off, clip, run_model_files(off), 0, None).model
    out = tmp_path / "t.csv"
    assert main([str(clip), "--out", str(out), "--end", "10f", "--quiet", "--turned-model", "none"]) == 0
    capsys.readouterr()
    assert main([str(clip), "--out", str(out), "--end", "20f", "--quiet", "--resume"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t.csv" in err[0], err
    assert main([str(clip), "--out", str(out), "--end", "20f", "--quiet", "--resume", "--turned-model", "none"]) == 0
    assert len(_rows(out)) > 1
