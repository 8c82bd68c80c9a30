"""Bad inputs through the real command line (``python -m facetrack.cli.main ...`` in a subprocess).

Every case must end with a non-zero exit code, one clear line ``facetrack...: <file>: <problem>``
naming the file, no traceback and no foreign lines (FFmpeg's or OpenCV's own logging) on
stderr, and no landmark file left behind when nothing was tracked. Videos damaged mid-stream
keep every frame before the damage and say where they stopped. The table of cases and what
each produced is in docs/ROBUSTNESS.md (regenerate it with ``python tests/test_bad_inputs.py``).
"""
from __future__ import annotations

import csv
import dataclasses
import importlib.util
import os
import resource
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for `python tests/test_bad_inputs.py` (the docs table)

from facetrack.engines import names  # noqa: E402
from facetrack.io.landmarks import read_pts, write_pts  # noqa: E402
from facetrack.io.output import HEADER, POSE_CSV_COLUMNS  # noqa: E402

CLIP = Path("videos_unlabelled") / "short_hamilton_clip.mp4"  # 275 frames, 640x360, 29.97 fps
CLIP_FRAMES = 275


# --- building the bad inputs -------------------------------------------------------------------
def identity_mdm_onnx(path: Path, size: int = 32, hidden: int = 8) -> Path:
    """A tiny real MDM-kind ONNX model with facetrack metadata (the tests' one stand-in,
    tests/onnx_standin.py): it returns its ``init_shape`` (an identity refiner) with confidence
    0.9. Fast enough to track the real clip in seconds."""
    from tests.onnx_standin import build_onnx_standin

    return build_onnx_standin(path, "mdm", size=size, hidden=hidden, landmarks="identity", confidence=0.9)


def classifier_onnx(path: Path, facetrack_metadata: bool) -> Path:
    """A valid ONNX model of another kind (an image classifier: ``input`` -> ``output``),
    optionally claiming facetrack MDM metadata it does not live up to."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])
    node = helper.make_node("ReduceMean", ["input"], ["output"], axes=[2, 3], keepdims=0)
    model = helper.make_model(helper.make_graph([node], "classifier", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if facetrack_metadata:
        helper.set_model_props(model, {names.FORMAT: "1", names.KIND: "mdm", names.ARCH: "mdm-rt", names.INPUT_SIZE: "112",
                                       names.N_POINTS: "68", names.HIDDEN_SIZE: "8", names.STEPS: "1"})
    onnx.save(model, str(path))
    return path


def foreign_engine(path: Path, onnx_model: Path) -> Path:
    """A facetrack engine file whose header says it was built on another GPU and TensorRT."""
    import onnx

    from facetrack.engines.engine_cache import write_engine_file

    meta = {p.key: p.value for p in onnx.load(str(onnx_model)).metadata_props}
    meta.update({names.TRT_VERSION: "8.6.1", names.TRT_GPU: "NVIDIA GeForce RTX 3090", names.TRT_COMPUTE_CAPABILITY: "8.6",
                 names.TRT_PRECISION: "fp16", names.TRT_PROFILE: "[1, 1, 8]"})
    return write_engine_file(path, meta, b"\x00plan" * 200)


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _boxes(data: bytes | bytearray, start: int, end: int):
    i = start
    while i + 8 <= end:
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        if n < 8:
            raise ValueError("unsupported MP4 box size")
        yield kind, i, n
        i += n


def _shift_chunk_offsets(buf: bytearray, start: int, end: int, delta: int) -> None:
    for kind, i, n in _boxes(buf, start, end):
        if kind in _CONTAINERS:
            _shift_chunk_offsets(buf, i + 8, i + n, delta)
        elif kind == b"stco":
            count = struct.unpack(">I", buf[i + 12:i + 16])[0]
            for k in range(count):
                o = i + 16 + 4 * k
                buf[o:o + 4] = struct.pack(">I", struct.unpack(">I", buf[o:o + 4])[0] + delta)


def faststart(mp4: bytes) -> bytes:
    """The same MP4 with its index (``moov``) moved before the media data, as streamed web
    videos are laid out, so that a file cut short still opens and decodes up to the cut."""
    top = {kind: (i, n) for kind, i, n in _boxes(mp4, 0, len(mp4))}
    (mi, mn), (di, _) = top[b"moov"], top[b"mdat"]
    if mi < di:
        return mp4
    moov = bytearray(mp4[mi:mi + mn])
    _shift_chunk_offsets(moov, 8, len(moov), mn)
    return mp4[:di] + bytes(moov) + mp4[di:mi] + mp4[mi + mn:]


def zero_frame_avi(path: Path) -> Path:
    """An MJPG AVI with a valid header and no frames."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64))
    w.release()
    return path


def tiny_300vw(root: Path, data: Path, corrupt: str) -> Path:
    """A 2-frame 300VW folder (video 401, category 1, real frames 731/732 written as frames 1
    and 2 of ``vid.avi``) whose second annotation is damaged: ``count`` (header says 67),
    ``nonnumeric`` (a coordinate is 'abc') or ``braces`` (no '{' '}')."""
    src = data / "300vw_samples" / "401"
    d = root / "401"
    (d / "annot").mkdir(parents=True)
    frames = [cv2.imread(str(src / "imgs" / f"{n:06d}.jpg")) for n in (731, 732)]
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(d / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    gt = read_pts(src / "annot" / "000731.pts")
    for n in (1, 2):
        write_pts(d / "annot" / f"{n:06d}.pts", gt)
    bad = d / "annot" / "000002.pts"
    lines = bad.read_text().splitlines()
    if corrupt == "count":
        lines = [ln.replace("n_points: 68", "n_points: 67") for ln in lines]
    elif corrupt == "nonnumeric":
        lines[5] = "abc 12.0"
    elif corrupt == "braces":
        lines = [ln for ln in lines if ln.strip() not in ("{", "}")]
    bad.write_text("\n".join(lines) + "\n")
    return root


# --- running the CLI -------------------------------------------------------------------------
@dataclass
class Ran:
    rc: int
    err: str
    out: str

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.replace("\r", "\n").splitlines() if ln.strip()]


#: ``python -c`` program: the facetrack command, sending itself SIGINT (as Ctrl-C does) right
#: after the first frame of ``eval-300vw``'s progress
SIGINT_AT_FIRST_PROGRESS = """\
import os, signal, sys
import facetrack.cli.eval_300vw as ev
show = ev._ProgressBar.__call__
def show_then_ctrl_c(self, event):
    show(self, event)
    if event.frame >= 1:
        os.kill(os.getpid(), signal.SIGINT)
ev._ProgressBar.__call__ = show_then_ctrl_c
from facetrack.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def facetrack(args: list[str], cwd: Path, preexec: Callable[[], None] | None = None, timeout: float = 120,
              env_changes: dict[str, str | None] | None = None, interrupt: bool = False) -> Ran:
    """``python -m facetrack.cli.main ARGS`` in ``cwd``; stdout/stderr as text."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OPENCV_FFMPEG_LOGLEVEL", None)  # what a user's shell has: nothing
    for k, v in (env_changes or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    cmd = [sys.executable, "-c", SIGINT_AT_FIRST_PROGRESS] if interrupt else [sys.executable, "-m", "facetrack.cli.main"]
    p = subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, errors="backslashreplace",
                       timeout=timeout, preexec_fn=preexec)
    return Ran(p.returncode, p.stderr, p.stdout)


def run_case(case: "Case", work: Path, data: Path, model: Path) -> tuple[list[str], str, Ran]:
    """Build ``case``'s inputs in ``work`` and run it: (argv, file it must name, result)."""
    argv, file = case.make(work, data, model)
    quiet = argv[0] not in ("eval-300vw", "gui")
    r = facetrack([*argv, "-q"] if quiet else argv, cwd=work, env_changes=case.env, interrupt=case.interrupt)
    return argv, file, r


def assert_one_line_error(r: Ran, file: str, problem: str, rc: int = 1, progress: bool = False) -> str:
    """Exit code ``rc``; stderr holds only facetrack's own lines (and, with ``progress``, the
    evaluation's progress bar), no traceback, and exactly one line with ``problem``, which
    names ``file``. Returns that line."""
    assert r.rc == rc, (r.rc, r.err[-2000:])
    assert "Traceback" not in r.err, r.err[-2000:]
    foreign = [ln for ln in r.err_lines if not ln.startswith("facetrack") and not (progress and ln.startswith("["))]
    assert not foreign, f"lines not from facetrack on stderr: {foreign}"
    hits = [ln for ln in r.err_lines if problem in ln]
    assert len(hits) == 1, r.err_lines
    assert file in hits[0], (file, hits[0])
    return hits[0]


# --- the table -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """``make(tmp, data, model) -> (argv, file named in the error)``; ``problem``: the words the
    error must contain; ``rc``: the exit code (2: a wrong option).

    ``env``: environment changes (``None`` removes a variable); ``interrupt``: the run gets a
    real SIGINT from inside, at the first progress event of ``eval-300vw`` (a fixed point, no
    timing); ``progress``: stderr may also hold that progress bar's lines (``[1/1] ...``);
    ``requires``: ``() -> reason`` to skip (empty: run)."""

    name: str
    what: str
    make: Callable[[Path, Path, Path], tuple[list[str], str]]
    problem: str
    rc: int = 1
    env: dict[str, str | None] | None = None
    interrupt: bool = False
    progress: bool = False
    requires: Callable[[], str] | None = None


def _clip(data: Path) -> str:
    return str(data / CLIP)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _half(data: Path) -> bytes:
    raw = (data / CLIP).read_bytes()
    return raw[: len(raw) // 2]


def _same_as_input(t: Path, d: Path, m: Path) -> tuple[list[str], str]:
    video = _write(t / "copy.mp4", (d / CLIP).read_bytes())
    return [video, "--out", video, "--model", str(m)], video


def _link_to_input(t: Path, d: Path, m: Path) -> tuple[list[str], str]:
    video = _write(t / "copy.mp4", (d / CLIP).read_bytes())
    (t / "link.csv").symlink_to(video)
    return [video, "--out", str(t / "link.csv"), "--model", str(m)], str(t / "link.csv")


def _eval_pts(kind: str) -> Callable[[Path, Path, Path], tuple[list[str], str]]:
    def make(t: Path, d: Path, m: Path) -> tuple[list[str], str]:
        root = tiny_300vw(t / "300vw", d, kind)
        return (["eval-300vw", str(root), "--category", "1", "--videos", "401", "--model", str(m), "--out", str(t / "report")],
                str(root / "401" / "annot" / "000002.pts"))
    return make


def _opt(extra: list[str]) -> Callable[[Path, Path, Path], tuple[list[str], str]]:
    """A run of the real clip with ``extra`` options; the error names the first option."""
    def make(t: Path, d: Path, m: Path) -> tuple[list[str], str]:
        return [_clip(d), "--out", str(t / "l.csv"), "--model", str(m), *extra], f"{extra[0]} {extra[1]}" if len(extra) > 1 and not extra[1].startswith("--") else extra[0]
    return make


def _made_from(t: Path, d: Path, m: Path) -> str:
    """``t/prev.csv``: 3 frames of a real run over another video (the selfie), with its record."""
    out = t / "prev.csv"
    r = facetrack([str(d / "videos_unlabelled" / "sbr_demo_selfie.mp4"), "--out", str(out), "--end", "3f", "--model", str(m),
                   "-q"], cwd=t)
    assert r.rc == 0, r.err
    return str(out)


CASES: list[Case] = [
    Case("missing", "video file that does not exist",
         lambda t, d, m: ([str(t / "nope.mp4"), "--out", str(t / "l.csv"), "--model", str(m)], str(t / "nope.mp4")), "no such file"),
    Case("directory", "a folder without images as the input (folders are read as images)",
         lambda t, d, m: ([str(t), "--out", str(t / "l.csv"), "--model", str(m)], str(t)), "no images"),
    Case("empty", "empty file named .mp4",
         lambda t, d, m: ([_write(t / "e.mp4", b""), "--out", str(t / "l.csv"), "--model", str(m)], str(t / "e.mp4")), "empty file"),
    Case("text", "text file named .mp4",
         lambda t, d, m: ([_write(t / "t.mp4", b"not a video\n" * 100), "--out", str(t / "l.csv"), "--model", str(m)],
                          str(t / "t.mp4")), "not a video"),
    Case("half_mp4", "real MP4 cut in half by bytes (index at the end: lost)",
         lambda t, d, m: ([_write(t / "half.mp4", _half(d)), "--out", str(t / "l.csv"), "--model", str(m)], str(t / "half.mp4")),
         "not a video"),
    Case("zero_frames", "AVI with a header and zero frames",
         lambda t, d, m: ([str(zero_frame_avi(t / "z.avi")), "--out", str(t / "l.csv"), "--model", str(m)], str(t / "z.avi")),
         "no frames could be decoded"),
    Case("pts_count", ".pts whose header count is wrong (eval-300vw)", _eval_pts("count"), "header says 67 points, file has 68"),
    Case("pts_nonnumeric", ".pts with a non-numeric coordinate (eval-300vw)", _eval_pts("nonnumeric"), "non-numeric value"),
    Case("pts_braces", ".pts without braces (eval-300vw)", _eval_pts("braces"), "missing '{' or '}'"),
    Case("onnx_garbage", "random bytes named .onnx",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", _write(t / "g.onnx", np.random.default_rng(0).bytes(5000))],
                          str(t / "g.onnx")), "not a loadable ONNX model"),
    Case("onnx_text", "text file named .onnx",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", _write(t / "t.onnx", b"hello\n" * 20)], str(t / "t.onnx")),
         "a text file, not an ONNX model"),
    Case("onnx_empty", "empty .onnx",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", _write(t / "e.onnx", b"")], str(t / "e.onnx")), "empty file"),
    Case("onnx_other_kind", "valid ONNX classifier without facetrack metadata",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", str(classifier_onnx(t / "c.onnx", False))], str(t / "c.onnx")),
         "no facetrack metadata"),
    Case("onnx_wrong_inputs", "ONNX classifier claiming MDM metadata (wrong inputs)",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", str(classifier_onnx(t / "c.onnx", True))], str(t / "c.onnx")),
         "mdm model must have inputs"),
    Case("engine_other_gpu", "engine whose header names another GPU / TensorRT (no TensorRT here)",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", str(foreign_engine(t / "x.engine", m))], str(t / "x.engine")),
         "TensorRT"),
    Case("engine_junk", "junk bytes named .engine",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", _write(t / "j.engine", b"junk" * 100)], str(t / "j.engine")),
         "not a facetrack engine file"),
    Case("model_suffix", "model file with an unknown suffix",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", _write(t / "m.txt", b"x")], str(t / "m.txt")),
         "unknown model file type"),
    Case("camera", "camera index that does not exist",
         lambda t, d, m: (["--camera", "9", "--out", str(t / "l.csv"), "--model", str(m)], "camera 9"), "cannot be opened"),
    Case("out_full_disk", "output on a full disk (/dev/full)",
         lambda t, d, m: ([_clip(d), "--out", "/dev/full", "--end", "5f", "--model", str(m)], "/dev/full"), "write failed"),
    Case("out_no_create", "output where no file can be created (/proc)",
         lambda t, d, m: ([_clip(d), "--out", "/proc/facetrack_x.csv", "--end", "5f", "--model", str(m)], "/proc/facetrack_x.csv"),
         "cannot be created" if os.geteuid() == 0 else "not writable"),
    Case("out_no_folder", "output in a folder that does not exist",
         lambda t, d, m: ([_clip(d), "--out", str(t / "no" / "l.csv"), "--model", str(m)], str(t / "no" / "l.csv")), "does not exist"),
    Case("out_is_input", "--out equal to the input video", _same_as_input, "would overwrite the input"),
    Case("out_link_to_input", "--out a symlink to the input video", _link_to_input, "would overwrite the input"),
    Case("start_past_end", "--start after the last frame",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--start", "400f", "--model", str(m)], _clip(d)), "past the end"),
    # issue 14: tracebacks, crashes and silently wrong runs that are now one line
    Case("name_not_utf8", "a file named with bytes that are not UTF-8 (was a segfault in OpenCV, exit 139)",
         lambda t, d, m: ([_write(t / os.fsdecode(b"caf\xe9_\xff.mp4"), b"not a video\n" * 100), "--out", str(t / "l.csv"),
                           "--model", str(m)], "caf\\xe9_\\xff.mp4"), "not a video"),
    Case("backend_unknown", "--backend foo", _opt(["--backend", "foo"]), "unknown or unavailable runtime", rc=2),
    Case("backend_torch_on_onnx", "--backend torch on an ONNX model (the default model is ONNX)",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", str(m), "--backend", "torch"], str(m)),
         "--backend torch reads"),
    Case("confidence_above_1", "--confidence 2", _opt(["--confidence", "2"]), "must be between 0 and 1", rc=2),
    Case("confidence_negative", "--confidence -1", _opt(["--confidence", "-1"]), "must be between 0 and 1", rc=2),
    Case("smooth_cutoff_negative", "--smooth --smooth-min-cutoff -1 (left a header-only CSV)",
         _opt(["--smooth", "--smooth-min-cutoff", "-1"]), "above 0 Hz", rc=2),
    Case("smooth_shape_beta_negative", "--smooth --smooth-shape-beta -2", _opt(["--smooth", "--smooth-shape-beta", "-2"]),
         "--smooth-shape-beta -2: must be 0 or more", rc=2),
    Case("threads_negative", "--threads -3 (was accepted)", _opt(["--threads", "-3"]), "must be at least 1", rc=2),
    Case("jobs_zero", "--jobs 0", _opt(["--jobs", "0"]), "must be at least 1", rc=2),
    Case("out_name_too_long", "an output file name of 300 bytes",
         lambda t, d, m: ([_clip(d), "--out", str(t / ("x" * 296 + ".csv")), "--model", str(m)], "x" * 30), "file name too long"),
    Case("out_is_overlay", "--out same.mkv --overlay same.mkv (blamed the input)",
         lambda t, d, m: ([_clip(d), "--out", str(t / "same.mkv"), "--overlay", str(t / "same.mkv"), "--model", str(m)],
                          str(t / "same.mkv")), "are the same file", rc=2),
    Case("overlay_type", "--overlay with a suffix no codec is chosen for",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--overlay", str(t / "o.gif"), "--model", str(m)],
                          str(t / "o.gif")), "unknown video type", rc=2),
    Case("camera_device", "--camera /dev/video97 (a device path that does not exist)",
         lambda t, d, m: (["--camera", "/dev/video97", "--out", str(t / "l.csv"), "--model", str(m)], "/dev/video97"),
         "no such camera device"),
    Case("resume_other_video", "--resume on a CSV made from another video (was mixed in)",
         lambda t, d, m: ([_clip(d), "--out", _made_from(t, d, m), "--resume", "--model", str(m)],
                          str(t / "prev.csv")), "made from another run (input"),
    Case("resume_no_record", "--resume on a CSV without the record of what it was made from",
         lambda t, d, m: ([_clip(d), "--out", _write(t / "prev.csv", HEADER.encode()), "--resume", "--model", str(m)],
                          str(t / "prev.csv")), "no record of what it was made from"),
    Case("many_out_and_out_dir", "several videos with --out instead of --out-dir",
         lambda t, d, m: ([_clip(d), _clip(d).replace("short_hamilton_clip", "sbr_demo_selfie"), "--out", str(t / "l.csv"),
                           "--model", str(m)], "--out-dir"), "give --out-dir DIR", rc=2),
    Case("gui_no_display", "facetrack gui without DISPLAY (Qt aborted the process, exit 134)",
         lambda t, d, m: (["gui"], "DISPLAY"), "no display", rc=2,
         env={"DISPLAY": None, "WAYLAND_DISPLAY": None, "QT_QPA_PLATFORM": None},
         requires=lambda: "" if importlib.util.find_spec("PySide6") else "PySide6 (the [gui] extra) is not installed"),
    Case("eval_sigint", "Ctrl-C (SIGINT) during eval-300vw (printed nothing)",
         lambda t, d, m: (["eval-300vw", str(tiny_300vw(t / "300vw", d, "none")), "--category", "1", "--videos", "401",
                           "--model", str(m), "--out", str(t / "report")], "eval-300vw"),
         "interrupted", rc=130, interrupt=True, progress=True),
    Case("detector_dlib_missing", "--detector dlib-hog without dlib installed (said 'unknown face detector')",
         lambda t, d, m: ([_clip(d), "--out", str(t / "l.csv"), "--model", str(m), "--detector", "dlib-hog"], "dlib-hog"),
         "pip install 'facetrack[dlib]'", env={"PYTHONPATH": f"{Path(__file__).with_name('hide_dlib')}{os.pathsep}{REPO}"}),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    pytest.importorskip("onnx", reason="onnx (the [train] extra) builds the stand-in model")
    return identity_mdm_onnx(tmp_path_factory.mktemp("model") / "identity_mdm.onnx")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_line_error(case: Case, tmp_path: Path, data_dir: Path, model: Path) -> None:
    if case.requires is not None and (reason := case.requires()):
        pytest.skip(reason)
    work = tmp_path / "work"
    work.mkdir()
    before: dict[Path, bytes] = {}

    def snapshot_then(make):  # inputs as they were before the run
        def wrapped(t: Path, d: Path, m: Path):
            got = make(t, d, m)
            before.update({p: p.read_bytes() for p in work.rglob("*") if p.is_file() and not p.is_symlink()})
            return got
        return wrapped

    argv, file, r = run_case(dataclasses.replace(case, make=snapshot_then(case.make)), work, data_dir, model)
    assert_one_line_error(r, file, case.problem, case.rc, case.progress)
    for p, data in before.items():  # inputs are never modified
        assert p.read_bytes() == data, p
    if case.name not in ("out_full_disk",) and argv[0] != "eval-300vw":
        assert not (work / "l.csv").exists(), "a landmark file was left behind though nothing was tracked"


def test_all_cases_have_distinct_names() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


# --- damaged mid-stream: keep what decoded, say where it stopped -------------------------------
def _csv_frames(path: Path) -> list[int]:
    """1-based frame numbers of a landmark CSV, parsed with the csv module; every line complete."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "last line incomplete"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == POSE_CSV_COLUMNS  # the CLI's default layout
    for r in rows[1:]:
        assert len(r) == len(POSE_CSV_COLUMNS)
        vals = np.array([float(v) for v in r])
        assert np.isfinite(vals).all()
    return [int(r[0]) for r in rows[1:]]


def test_mp4_cut_mid_stream_keeps_every_decoded_frame(tmp_path: Path, data_dir: Path, model: Path) -> None:
    """A streamed-layout MP4 (index first) cut in half: the frames before the cut are tracked,
    each exactly once, exit code 1, and stderr says at which frame and why it stopped."""
    fs = faststart((data_dir / CLIP).read_bytes())
    cap = cv2.VideoCapture(_write(tmp_path / "full.mp4", fs))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == CLIP_FRAMES  # the rewrite kept the video intact
    cap.release()
    cut = _write(tmp_path / "cut.mp4", fs[: len(fs) // 2])
    cap = cv2.VideoCapture(cut)
    decodable = 0
    while cap.grab():
        decodable += 1
    cap.release()
    assert 50 < decodable < CLIP_FRAMES
    out = tmp_path / "l.csv"
    r = facetrack([cut, "--out", str(out), "--model", str(model), "-q"], cwd=tmp_path)
    line = assert_one_line_error(r, cut, "read failed at frame")
    assert f"read failed at frame {decodable + 1} of {CLIP_FRAMES}" in line
    assert f"keeps every frame up to {decodable}" in line
    assert _csv_frames(out) == list(range(1, decodable + 1))


def test_corrupt_bytes_mid_stream_stop_at_the_first_undecodable_frame(tmp_path: Path, data_dir: Path, model: Path) -> None:
    """Garbage over 20 KB a quarter into the media data: OpenCV stops returning frames there
    (it would return later ones again, but frame numbers after a gap are not trustworthy), so
    the run keeps every frame before the damage, each once, exits 1 and says where."""
    fs = bytearray(faststart((data_dir / CLIP).read_bytes()))
    mid = len(fs) // 4
    fs[mid:mid + 20_000] = np.random.default_rng(1).bytes(20_000)
    bad = _write(tmp_path / "garbled.mp4", bytes(fs))
    cap = cv2.VideoCapture(bad)
    good = 0
    while cap.read()[0]:
        good += 1
    cap.release()
    assert 10 < good < CLIP_FRAMES - 2
    out = tmp_path / "l.csv"
    r = facetrack([bad, "--out", str(out), "--model", str(model), "-q"], cwd=tmp_path)
    line = assert_one_line_error(r, bad, "read failed at frame")
    assert f"read failed at frame {good + 1} of {CLIP_FRAMES}" in line and line.endswith(f"keeps every frame up to {good}")
    assert _csv_frames(out) == list(range(1, good + 1))


def test_output_file_size_limit_mid_run_keeps_complete_frames(tmp_path: Path, data_dir: Path, model: Path) -> None:
    """Writes start failing mid-run (a file-size limit standing in for a full disk): exit 1, one
    line naming the CSV and the last frame kept; the file holds whole frames only (a partial
    last line is what ``--resume`` cuts off)."""
    out = tmp_path / "l.csv"
    limit = 40_000  # header + about 20 rows

    def cap_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    r = facetrack([_clip(data_dir), "--out", str(out), "--model", str(model), "--end", "60f", "-q"], cwd=tmp_path,
                  preexec=cap_file_size)
    line = assert_one_line_error(r, str(out), "write failed")
    from facetrack.io.output import read_landmarks_csv

    table = read_landmarks_csv(out)
    n = len(table.frame)
    assert 5 < n < 60 and list(table.frame) == list(range(1, n + 1))
    assert line.endswith(f"keeps every frame up to {n}")
    assert out.stat().st_size <= limit


# --- engine built for another GPU: the header check itself (runs without TensorRT) -------------
def test_engine_for_another_gpu_is_one_line_through_the_cli(tmp_path: Path, data_dir: Path, model: Path,
                                                           monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """With TensorRT present (faked: the platform probe says H100 / TensorRT 10.13), an engine
    whose header names an RTX 3090 / TensorRT 8.6 is refused before its plan is touched."""
    import facetrack.engines.tensorrt_backend as trt_backend
    from facetrack.engines.engine_cache import Platform
    from facetrack.cli.main import main

    here = Platform("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
    monkeypatch.setattr(trt_backend, "require_tensorrt", lambda: (object(), object()))
    monkeypatch.setattr(trt_backend, "probe_platform", lambda device=0: here)
    engine = foreign_engine(tmp_path / "x.engine", model)
    rc = main([_clip(data_dir), "--out", str(tmp_path / "l.csv"), "--model", str(engine), "-q"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "built for" in ln]
    assert rc == 1 and len(lines) == 1
    assert lines[0].startswith(f"facetrack: {engine}: engine built for TensorRT 8.6.1 (this machine: 10.13.0.35)")
    assert "NVIDIA GeForce RTX 3090" in lines[0] and "rebuild it" in lines[0]
    assert not (tmp_path / "l.csv").exists()


# --- the docs table -----------------------------------------------------------------------------
def _table() -> str:  # pragma: no cover - regenerates docs/ROBUSTNESS.md's table by hand
    import tempfile

    data = Path(os.environ.get("FACETRACK_DATA", REPO.parent / "shared" / "data"))
    rows = ["| case | input | exit | stderr (the error line) |", "| --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        model = identity_mdm_onnx(Path(tmp) / "identity_mdm.onnx")
        for c in CASES:
            if c.requires is not None and c.requires():
                continue
            work = Path(tmp) / c.name
            work.mkdir()
            _, _, r = run_case(c, work, data, model)
            line = next((ln for ln in r.err_lines if c.problem in ln), r.err_lines[-1] if r.err_lines else "")
            line = line.replace(tmp, "$TMP").replace(str(data), "$DATA").replace("|", "\\|")
            code = f"`` {line} ``" if "`" in line else f"`{line}`"
            rows.append(f"| {c.name} | {c.what} | {r.rc} | {code} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(_table())
