"""``facetrack track`` (the default job): track a video file, still images or a camera and write
the landmarks as an OpenFace-layout CSV (or JSON lines), optionally an overlay video; many
inputs at once with ``--out-dir`` (:mod:`facetrack.cli.batch`).

Rows are flushed after every frame: a killed or interrupted run leaves a valid file up to the
last completed frame, and ``--resume`` continues after it, once the record beside the file
(``<out>.run.json``) shows it was made from the same input, model, start and options.
Errors are one line, ``facetrack: <file>: <problem>``, with a non-zero exit code (2 for a
wrong option); Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import errno
import functools
import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

USAGE = """\
facetrack VIDEO|IMAGE|FOLDER [--out CSV] [options]
       facetrack VIDEO... --out-dir DIR [--jobs N] [--shard I/N] [options]
       facetrack --camera N|/dev/videoN [--out CSV] [options]"""


# the job's value and the helpers batch shares live in facetrack.cli.job (no track <-> batch cycle)
from facetrack.cli.job import CliError, TrackJob, covers, shard_arg, to_frame  # noqa: E402,F401


@dataclass(frozen=True)
class Outcome:
    """How one run ended: ``status`` (exit code) and the one line to print (``""``: none);
    ``to_stderr`` for errors and notices, else the summary goes to stdout."""

    status: int
    line: str = ""
    to_stderr: bool = True


def _time_arg(text: str) -> str:
    t = text.strip().lower()
    try:
        v = float(t[:-1]) if t.endswith("f") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds (e.g. 12.5) or frames with an f suffix (e.g. 300f)") from None
    if v < 0 or not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a non-negative time")
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the track job."""
    from facetrack.io.video import OVERLAY_CODECS, camera_arg

    parser.usage = USAGE
    src = parser.add_argument_group("input")
    src.add_argument("video", nargs="*", metavar="INPUT",
                     help="video file, image file, or folder of images (one row per image and face); "
                          "several inputs need --out-dir")
    src.add_argument("--camera", type=camera_arg, metavar="N|DEVICE", help="track camera N (or a device such as /dev/video0)")
    src.add_argument("--start", type=_time_arg, metavar="T",
                     help="start at T: seconds (12.5) or a 0-based frame number with an f suffix (300f)")
    src.add_argument("--end", type=_time_arg, metavar="T",
                     help="stop before T (exclusive): seconds or frames with an f suffix; '--end 30f' tracks frames 0-29")
    src.add_argument("--max-pixels", type=int, default=100_000_000, metavar="N",
                     help="refuse images and video frames of more than N pixels, read from the header before decoding "
                          "(default 100000000: 100 megapixels; 0: no limit)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", "-o", metavar="FILE", help="landmark file (default: INPUT's name with .csv / .jsonl, in the current "
                                                       "folder; -: standard output, the summary then on standard error)")
    out.add_argument("--format", choices=("csv", "json"), default="csv",
                     help="csv: OpenFace columns frame,face_id,timestamp,confidence,success,pose_Tx..pose_Rz,x_0..x_67,"
                          "y_0..y_67,p_scale,p_rx,p_ry,p_rz,p_tx,p_ty (the pose's only with --pose on; images: an image "
                          "column first); json: one JSON object per frame")
    out.add_argument("--pose", choices=("on", "off"), default="on",
                     help="each face's head pose from its landmarks, in OpenFace's columns and conventions (pose_T* mm, "
                          "pose_R* radians: pitch, yaw, roll; default on; off: the landmark columns only)")
    out.add_argument("--fx", type=float, metavar="PX", help="camera focal length in px for the pose (default, as OpenFace: "
                                                            "500 * (width / 640 + height / 480) / 2)")
    out.add_argument("--fy", type=float, metavar="PX", help="vertical focal length in px (default --fx)")
    out.add_argument("--cx", type=float, metavar="PX", help="optical centre x in px (default: the image centre)")
    out.add_argument("--cy", type=float, metavar="PX", help="optical centre y in px (default: the image centre)")
    out.add_argument("--overlay", metavar="VIDEO",
                     help=f"also write a video with the landmarks drawn ({', '.join(OVERLAY_CODECS)}; "
                          ".mkv and .avi stay playable if the run is killed, .mp4 does not)")
    out.add_argument("--resume", action="store_true",
                     help="continue after the last complete frame of an existing --out CSV made from the same input, "
                          "model, --start and options (an --overlay then holds only the new frames)")
    out.add_argument("--force", action="store_true",
                     help="replace an existing --out that facetrack did not make (no <out>.run.json beside it) or that "
                          "holds a finished run made with other options (both are refused without it)")
    out.add_argument("--verbose", "-v", action="count", default=0,
                     help="also say how the run is set up (the runtime, each model file and its threads)")
    out.add_argument("--quiet", "-q", action="count", default=0,
                     help="-q: no progress bar, only the final summary line (frames, faces, fps, output) and errors; "
                          "-qq: errors only. The summary's fps is frames over the seconds from the first frame read "
                          "to the last written, model loading excluded (with --resume the frames tracked again count)")
    many = parser.add_argument_group("many inputs")
    many.add_argument("--out-dir", metavar="DIR", help="write one CSV per input into DIR (created); finished ones are "
                                                       "skipped and partial ones resumed on a rerun")
    many.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                      help="track N inputs at once, in worker processes with one runtime thread each (default 1)")
    many.add_argument("--shard", type=shard_arg, metavar="I/N",
                      help="take only the I-th of N shares of the inputs (1 <= I <= N; sorted by name, every N-th), "
                           "e.g. --shard $SLURM_ARRAY_TASK_ID/8 with --array=1-8")
    mod = parser.add_argument_group("model")
    mod.add_argument("--model", default="auto",
                     help="mdm (MDM-RT from the detector box, MDM tracks), aan (AAN fits and tracks), "
                          "aan+mdm (AAN on the detector box, MDM refines; on video the two take turns on each face "
                          "and each fit is averaged with the other's last), or a model file (default auto: aan+mdm)")
    mod.add_argument("--turned-model", default="auto", metavar="MODEL",
                     help="models for the turned faces --model rejects, which then track them (as --model; default auto: "
                          "aan-turned+mdm-turned, trained with synthetic head turns; none: no second view)")
    mod.add_argument("--backend", default="auto",
                     help="auto (TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU), onnxruntime, onnxruntime-cuda, torch, tensorrt")
    mod.add_argument("--threads", type=int, default=None,
                     help="CPU threads for the runtime, OpenCV's image functions and the video decoder (default 1: "
                          "the least CPU time per frame; the runtime's extra threads never spin)")
    mod.add_argument("--detector", default=None, metavar="NAME",
                     help="face detector: haar-alt2+cnn (default for video and cameras with --max-faces 1: the Haar cascade "
                          "and this project's CNN together), haar-alt2+cnn+profile (default with --max-faces over 1: the "
                          "profile cascade too, for turned faces), haar-alt2+cnn-wide (default for images: the CNN also at "
                          "larger sizes), haar-alt2, haar-alt2-fast, haar-profile, dlib-hog (needs the [dlib] extra), "
                          "cnn (alone: 25x less CPU, misses small faces), ... (docs/DETECTORS.md)")
    mod.add_argument("--flip", choices=("auto", "on", "off"), default="auto",
                     help="also fit each face's mirror image and average the two: less error and flicker for twice the "
                          "landmark model's CPU (default auto: on for images, off for video and cameras)")
    trk = parser.add_argument_group("tracking")
    trk.add_argument("--max-faces", type=int, default=1, metavar="N", help="track up to N faces (default 1)")
    trk.add_argument("--detect-every", type=int, default=3, metavar="K",
                     help="frames between searches for new faces while fewer than --max-faces are tracked (default 3)")
    trk.add_argument("--confidence", type=float, default=0.5, metavar="C",
                     help="confidence under which a face is lost / a detection rejected, in [0, 1] (default 0.5)")
    trk.add_argument("--track-init", choices=("template", "shape"), default="template",
                     help="MDM start on a tracked face, in a crop aligned on its previous landmarks: the template "
                          "(default: the most accurate with the shipped weights) or the previous landmarks, MDM's 300VW "
                          "protocol, kept to face shapes by --shape-modes")
    trk.add_argument("--shape-modes", type=int, default=None, metavar="K",
                     help="with --track-init shape: project MDM's start (the previous landmarks) onto the first K modes of "
                          "the shape model, so errors no face makes are not fed back (default: the number chosen on held-out "
                          "sequences, stored with the model; 0: the previous landmarks as they are, MDM's 300VW protocol)")
    trk.add_argument("--smooth", nargs="?", const="on", choices=("auto", "on", "off"), default="auto",
                     help="One Euro smoothing of the output landmarks, moved with each face by optical flow: less flicker "
                          "on slow motion, a little more error and lag on real head turns (default auto: on for cameras, off "
                          "for video files and still images; --smooth alone: on; docs/SMOOTHING.md)")
    from facetrack.tracker.tracker import TrackerConfig  # the defaults live there

    trk.add_argument("--smooth-min-cutoff", type=float, default=TrackerConfig.smooth_min_cutoff, metavar="HZ",
                     help=f"One Euro cutoff at rest, Hz, > 0 (default {TrackerConfig.smooth_min_cutoff:g})")
    trk.add_argument("--smooth-beta", type=float, default=TrackerConfig.smooth_beta, metavar="B",
                     help=f"One Euro speed coefficient, Hz per face size per second, >= 0 (default {TrackerConfig.smooth_beta:g})")
    trk.add_argument("--smooth-shape-min-cutoff", type=float, default=TrackerConfig.smooth_shape_min_cutoff, metavar="HZ",
                     help="the same for the face's shape (expression), filtered apart from its pose (position, size, roll), "
                          f"which the two options above filter (default {TrackerConfig.smooth_shape_min_cutoff:g})")
    trk.add_argument("--smooth-shape-beta", type=float, default=TrackerConfig.smooth_shape_beta, metavar="B",
                     help=f"speed coefficient of the shape's filter (default {TrackerConfig.smooth_shape_beta:g})")
    trk.add_argument("--smooth-reset", type=float, default=TrackerConfig.smooth_reset, metavar="F",
                     help="a fit farther than F face sizes from where the moved filter expects the face restarts the "
                          f"filter from the fit: motion the flow missed (blur, fast turns); 0: never (default {TrackerConfig.smooth_reset:g})")
    trk.add_argument("--smooth-flow", choices=("on", "off"), default="on" if TrackerConfig.smooth_flow else "off",
                     help="move the filter with each face's motion measured by optical flow before it smooths, so it "
                          "smooths the fits' errors without lagging behind the head (default on; off: One Euro alone, "
                          "which lags at the default --smooth-beta: give it --smooth-beta 40)")


#: options that change the rows a run writes, recorded beside the CSV (``--resume`` compares them)
ROW_OPTIONS: tuple[str, ...] = ("format", "max_faces", "detect_every", "confidence", "track_init", "smooth",
                                "smooth_min_cutoff", "smooth_beta", "smooth_shape_min_cutoff", "smooth_shape_beta", "smooth_reset", "smooth_flow", "detector",
                                "flip", "shape_modes")


def preset_for(args: argparse.Namespace, images: bool) -> Any:
    """The product's defaults for this run's input (:func:`facetrack.tracker.presets.preset`):
    ``image`` for still images, ``live`` for a camera, ``video`` for a file."""
    from facetrack.tracker.presets import preset

    mode = "image" if images else "live" if getattr(args, "camera", None) is not None else "video"
    return preset(mode, int(getattr(args, "max_faces", 1) or 1))


def model_for(args: argparse.Namespace) -> str:
    """``--model`` for this run: ``auto`` takes the presets' model (``aan+mdm`` for every input)."""
    from facetrack.tracker.presets import DEFAULT_MODEL

    model = str(getattr(args, "model", "auto"))
    return DEFAULT_MODEL if model == "auto" else model


def turned_for(args: argparse.Namespace) -> str | None:
    """``--turned-model`` for this run: ``auto`` takes the presets' turned view (the shipped
    turned-face models, :data:`facetrack.tracker.models.TURNED`), ``none`` none."""
    from facetrack.tracker.presets import Preset

    turned = str(getattr(args, "turned_model", "auto"))
    return None if turned == "none" else Preset.turned_model if turned == "auto" else turned


def run_model_files(args: argparse.Namespace) -> list[Path]:
    """Every model file this run loads: ``--model``'s, then ``--turned-model``'s."""
    turned = turned_for(args)
    return model_files(model_for(args)) + (model_files(turned) if turned else [])


def flip_on(args: argparse.Namespace, images: bool) -> bool:
    """``--flip`` for this input: ``auto`` takes the preset's (on for still images only)."""
    flip = getattr(args, "flip", "auto")
    return flip == "on" or (flip == "auto" and preset_for(args, images).flip)


def smooth_on(args: argparse.Namespace, images: bool) -> bool:
    """``--smooth`` for this input: ``auto`` takes the preset's (on for video and cameras)."""
    smooth = getattr(args, "smooth", "auto")
    return smooth == "on" or (smooth == "auto" and preset_for(args, images).smooth)


def pose_on(args: argparse.Namespace) -> bool:
    """``--pose``: whether the rows carry each face's head pose (default on)."""
    return getattr(args, "pose", "on") == "on"


def camera_for(args: argparse.Namespace) -> Any:
    """``--fx --fy --cx --cy`` as a :class:`facetrack.tracker.pose.Camera`; ``None`` when none
    is given (OpenFace's defaults for each frame's size)."""
    values = [getattr(args, k, None) for k in ("fx", "fy", "cx", "cy")]
    if all(v is None for v in values):
        return None
    from facetrack.tracker.pose import Camera

    return Camera(*values)


def check_options(args: argparse.Namespace) -> None:
    """Every option checked before anything is opened or written: :class:`CliError`
    (``usage: ...``) naming the option and what it accepts."""
    from facetrack.engines.registry import BACKENDS
    from facetrack.io.video import OVERLAY_CODECS

    def finite(v: float) -> bool:
        return bool(np.isfinite(v))

    if args.backend != "auto" and args.backend not in BACKENDS:
        hint = " (needs the [train] extra: pip install 'facetrack[train]')" if args.backend == "torch" else ""
        raise CliError(f"usage: --backend {args.backend}: unknown or unavailable runtime{hint} "
                       f"(choose from auto, {', '.join(BACKENDS)})")
    if not (finite(args.confidence) and 0.0 <= args.confidence <= 1.0):
        raise CliError(f"usage: --confidence {args.confidence:g}: must be between 0 and 1")
    for name in ("smooth_min_cutoff", "smooth_shape_min_cutoff"):
        v = getattr(args, name)
        if not (finite(v) and v > 0):
            raise CliError(f"usage: --{name.replace('_', '-')} {v:g}: must be a frequency above 0 Hz")
    for name in ("smooth_beta", "smooth_shape_beta", "smooth_reset"):
        v = getattr(args, name)
        if not (finite(v) and v >= 0):
            raise CliError(f"usage: --{name.replace('_', '-')} {v:g}: must be 0 or more")
    if args.threads is not None and args.threads < 1:
        raise CliError(f"usage: --threads {args.threads}: must be at least 1")
    if args.shape_modes is not None and args.shape_modes < 0:
        raise CliError(f"usage: --shape-modes {args.shape_modes}: must be 0 or more")
    if args.max_faces < 1 or args.detect_every < 1:
        raise CliError("usage: --max-faces and --detect-every must be at least 1")
    if args.jobs < 1:
        raise CliError(f"usage: --jobs {args.jobs}: must be at least 1")
    if getattr(args, "max_pixels", 0) < 0:
        raise CliError(f"usage: --max-pixels {args.max_pixels}: must be 0 (no limit) or more")
    if args.resume and args.out == "-":
        raise CliError("usage: --resume continues a file, not --out - (standard output)")
    if args.resume and args.format != "csv":
        raise CliError("usage: --resume needs --format csv")
    for name in ("fx", "fy", "cx", "cy"):
        v = getattr(args, name, None)
        if v is not None and not (finite(v) and (v > 0 or name in ("cx", "cy"))):
            raise CliError(f"usage: --{name} {v:g}: must be a {'focal length above 0' if name[0] == 'f' else 'finite position'} in px")
    if args.overlay and Path(args.overlay).suffix.lower() not in OVERLAY_CODECS:
        raise CliError(f"usage: --overlay {args.overlay}: unknown video type '{Path(args.overlay).suffix}' "
                       f"(choose from {', '.join(OVERLAY_CODECS)})")
    if args.out and args.overlay and _same_path(Path(args.out), Path(args.overlay)):
        raise CliError(f"usage: --out and --overlay are the same file ({args.out}); give the overlay another name")


def _same_path(a: Path, b: Path) -> bool:
    return _same_file(a, b) or os.path.abspath(a) == os.path.abspath(b)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _check_writable(path: Path, inputs: list[Path]) -> None:
    from facetrack.io.video import display_name

    name = display_name(path)
    parent = Path(os.path.abspath(path)).parent
    try:  # first: any stat of a name that is too long fails with ENAMETOOLONG
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    try:
        os.stat(path)
    except OSError as e:  # a loop: resolve() below would raise RuntimeError
        if e.errno == errno.ELOOP:
            raise CliError(f"{name}: symlink loop (too many levels of symbolic links)") from None
    n_bytes = len(os.fsencode(path.name))
    if n_bytes > name_max:
        short = display_name(path.parent / f"{path.name[:40]}...{path.name[-10:]}")
        raise CliError(f"{short}: file name too long ({n_bytes} bytes; this file system allows {name_max})")
    for i in inputs:
        if _same_file(path, i) or path.resolve() == i.resolve():
            raise CliError(f"{name}: output would overwrite the input {display_name(i)}")
    if path.is_dir():
        raise CliError(f"{name}: is a directory")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise CliError(f"{name}: folder {display_name(parent)} does not exist")
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(parent, os.W_OK):
        raise CliError(f"{name}: not writable (permission denied)")


def _draw(frame: np.ndarray, result: Any, fps: float, frame_number: int) -> np.ndarray:
    """The overlay video's frame: :func:`facetrack.tracker.draw.annotate` (the library's drawer)."""
    from facetrack.tracker.draw import annotate

    return annotate(frame, result, [f"frame {frame_number}", f"{fps:4.1f} fps"] + (["cut"] if result.cut else []))


def run(args: argparse.Namespace | TrackJob) -> int:
    """Run the track job; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted).
    The command line is made a :class:`TrackJob` once, here; everything after takes the job."""
    try:
        args = args if isinstance(args, TrackJob) else TrackJob.from_args(args)
        check_options(args)
        if args.out_dir is not None or len(args.video) > 1 or args.shard is not None:
            from facetrack.cli.batch import run_batch

            return run_batch(args, record_of=_record_of, check_models=run_model_files)
        outcome = track(args)
    except CliError as e:
        outcome = Outcome(2 if str(e).startswith("usage") else 1, f"facetrack: {e}")
    if outcome.line and (outcome.to_stderr or args.quiet < 2):
        to_stderr = outcome.to_stderr or getattr(args, "out", None) == "-"  # stdout holds the rows
        print(outcome.line, file=sys.stderr if to_stderr else sys.stdout)
    return outcome.status


def model_files(model: str) -> list[Path]:
    """The model files a ``--model`` value loads (``aan+mdm``: two); :class:`CliError` when one is missing."""
    from facetrack.tracker.models import ModelNotFoundError, parse_model

    try:
        return list(parse_model(model).paths().values())
    except ModelNotFoundError as e:
        raise CliError(str(e)) from None


def _runtime(args: argparse.Namespace, files: list[Path]) -> str:
    """The runtime every model of this run opens in, decided (and logged) once, so that
    ``aan+mdm`` says it once; an explicit ``--backend`` must read the model files."""
    from facetrack.engines.errors import BackendUnavailableError
    from facetrack.engines.registry import BACKENDS, pick_backend

    if args.backend == "auto":
        if not all(f.suffix.lower() == ".onnx" for f in files):
            return "auto"  # by suffix, in the registry
        try:
            return pick_backend().name
        except BackendUnavailableError as e:
            raise CliError(str(e)) from None
    reads = getattr(BACKENDS[args.backend], "suffixes", None)
    for f in files:
        if reads is not None and f.suffix.lower() not in reads:
            raise CliError(f"{f}: --backend {args.backend} reads {', '.join(reads)} files, not {f.suffix or 'this file'} "
                           f"(use --backend auto, or --model with a {reads[0]} file)")
    return args.backend


def make_record(args: argparse.Namespace, source_path: Path, files: list[Path], start: int, end: int | None,
                images: bool = False) -> Any:
    """The :class:`~facetrack.io.output.RunRecord` of this run (``images``: the input is read
    as still images)."""
    from facetrack.io.output import RunRecord, input_identity

    options = {k: getattr(args, k, None) for k in ROW_OPTIONS if hasattr(args, k)}
    options.pop("flip", None)
    if flip_on(args, images):  # recorded only when on, so runs recorded before the option still resume
        options["flip"] = "on"
    options.pop("shape_modes", None)
    if getattr(args, "track_init", "template") == "shape":  # recorded only where it acts, so earlier template runs still resume
        from facetrack.tracker.tracker import resolve_shape_modes

        options["shape_modes"] = resolve_shape_modes(getattr(args, "shape_modes", None))
    options["smooth"] = smooth_on(args, images)  # the resolved choice, as runs recorded before auto stored it
    if pose_on(args):  # recorded only when on: a file from before the pose columns resumes with --pose off only
        options["pose"] = "on"
        camera = camera_for(args)
        if camera is not None:
            options["camera"] = [camera.fx, camera.fy, camera.cx, camera.cy]
    if images:  # images never resume: the detector that searched them is recorded by name
        options["detector"] = detector_name(args, images)
    if not options["smooth"]:  # the One Euro settings change nothing without smoothing
        for k in ("smooth_min_cutoff", "smooth_beta", "smooth_shape_min_cutoff", "smooth_shape_beta", "smooth_reset", "smooth_flow"):
            options.pop(k, None)
    model = {"name": model_for(args), "sha256": [_model_sha256(f) for f in files]}
    turned = turned_for(args)
    if turned:  # recorded only when on (the files' hashes are in the list above)
        model["turned"] = turned
    return RunRecord(input_identity(source_path), model, int(start), end, options)


@functools.lru_cache(maxsize=None)
def _model_sha256(path: Path) -> str:
    """A model file's SHA-256, once per process (a batch checks every input against it)."""
    from facetrack.engines.engine_cache import file_sha256

    return file_sha256(path)


def track(args: argparse.Namespace) -> Outcome:
    """Track one input (``args.video[0]`` or ``args.camera``) into ``args.out``; the
    :class:`Outcome`. Raises :class:`CliError` for what stops it before the first frame."""
    from facetrack.io.images import ImageFiles, is_image_input
    from facetrack.io.output import OutputFileError, OutputLock
    from facetrack.io.video import VideoError, display_name, open_source

    if not args.verbose:  # the set-up lines (runtime, models) only with -v; warnings always
        logging.getLogger().setLevel(logging.WARNING)
    inputs = list(args.video or [])
    if (not inputs) == (args.camera is None):
        raise CliError("usage: give a VIDEO file (or images) or --camera N, one of them")
    video = inputs[0] if inputs else None
    images = video is not None and is_image_input(video)
    if images and (args.resume or args.start or args.end or args.overlay or args.format != "csv"):
        raise CliError(f"usage: {display_name(video)}: images take no --resume, --start, --end, --overlay or --format json")
    ext = ".csv" if args.format == "csv" else ".jsonl"
    to_stdout = args.out == "-"
    if args.out:
        out = Path(args.out)
    else:
        stem = Path(video).stem if video and not Path(video).is_dir() else Path(video).resolve().name if video else None
        out = Path((stem or f"camera{args.camera}".replace("/", "_")) + ext)
    overlay = Path(args.overlay) if args.overlay else None
    in_paths = [Path(video)] if video else []
    try:
        max_pixels = getattr(args, "max_pixels", None) or None
        source = (ImageFiles(video, max_pixels=max_pixels) if images
                  else open_source(video, args.camera, threads=cpu_threads(args), max_pixels=max_pixels))
    except VideoError as e:
        raise CliError(str(e)) from None
    with source:
        if not to_stdout:
            _check_writable(out, in_paths)
        if overlay is not None:
            _check_writable(overlay, in_paths)
        # one writer per output: a second run on the same --out is refused before it reads or
        # changes a byte (devices and pipes are not files another run could replace)
        lock = OutputLock(out) if not to_stdout and (not out.exists() or out.is_file()) else None
        try:
            if lock is not None:
                lock.acquire()
        except OutputFileError as e:
            raise CliError(str(e)) from None
        try:
            return _track_locked(args, source, out, overlay, in_paths, images)
        finally:
            if lock is not None:
                lock.release()


def _track_locked(args: argparse.Namespace, source: Any, out: Path, overlay: Path | None, in_paths: list[Path],
                  images: bool) -> Outcome:
    """:func:`track` once the output is locked: what the file holds decides whether it is
    resumed, replaced or refused."""
    from facetrack.io.output import OutputFileError, read_landmarks_csv, read_record, truncate_to_complete
    from facetrack.io.video import VideoError, display_name

    name = display_name(out)
    files = run_model_files(args)
    start = to_frame(args.start, source.fps) or 0
    end = to_frame(args.end, source.fps)
    record = make_record(args, in_paths[0], files, start, end, images) if in_paths else camera_record(args, files)
    if args.out == "-":
        record = None  # standard output: no record, nothing to replace or resume
    resume_from = 0
    has_rows = record is not None and out.is_file() and out.stat().st_size > 0
    if has_rows and not args.resume and not getattr(args, "force", False):
        _refuse_to_replace(out, record)
    if args.resume and has_rows:
        if not in_paths:
            raise CliError(f"usage: {name}: a camera run cannot be resumed")
        try:
            read_landmarks_csv(out, upto_damage=True)  # first what the file is, without changing a byte of it
            old = read_record(out)
        except OutputFileError as e:
            raise CliError(f"{e} (cannot --resume)") from None
        if old is None:
            raise CliError(f"{name}: no record of what it was made from ({out.name}.run.json is missing); "
                           f"not resuming: remove it or choose another --out")
        diffs = old.differences(record)
        was = old.options.get("smooth")
        if isinstance(was, bool) and was != record.options.get("smooth"):
            # the One Euro settings follow from smoothing; say the one switch that resumes it
            diffs = [d for d in diffs if not d.startswith(("smooth ", "smooth_"))]
            diffs.append(f"smoothing {'on' if was else 'off'} vs {'off' if was else 'on'}: add --smooth {'on' if was else 'off'} to resume it")
        had = old.options.get("pose", "off")
        if had != record.options.get("pose", "off"):  # the layouts differ: a file holds one or the other
            diffs = [d for d in diffs if not d.startswith(("pose ", "camera "))]
            diffs.append(f"head pose {had} vs {record.options.get('pose', 'off')}: the file's columns are those of --pose {had}, "
                         f"add --pose {had} to resume it")
        if diffs:
            raise CliError(f"{name}: made from another run ({'; '.join(diffs)}); "
                           f"not resuming: remove it or choose another --out")
        if covers(old, end):
            why = old.mismatch(out)
            if why is None:
                frames = (old.file or {}).get("frames")
                if frames is None:
                    frames = read_landmarks_csv(out).last_frame
                return Outcome(0, "" if args.quiet > 1 else f"facetrack: {name}: already complete ({frames} frames)")
            _notice(args, f"facetrack: {name}: marked complete, but {why}: rebuilding it")
        try:
            table = truncate_to_complete(out, upto_damage=True)
        except OutputFileError as e:
            raise CliError(f"{e} (cannot --resume)") from None
        resume_from = table.last_frame
        if end is not None and end <= resume_from:
            raise CliError(f"{name}: nothing to do: start frame {resume_from} is not before end frame {end}")
        if resume_from > start:
            # the tracker's state (tracks, filters, the search schedule, the chain's turn) is
            # rebuilt by tracking the frames already in the file again without writing them
            _notice(args, f"facetrack: {name}: resuming after frame {resume_from} (its frames {start + 1}-{resume_from} "
                          f"are tracked again first, to rebuild the tracker's state; nothing is written for them)")
    if end is not None and end <= start:
        raise CliError(f"{name}: nothing to do: start frame {start} is not before end frame {end}")
    try:
        source.seek(start)
    except VideoError as e:
        raise CliError(str(e)) from None
    return _track_frames(args, source, out, overlay, files, record, start, end, resume_from, images)


def _refuse_to_replace(out: Path, record: Any) -> None:
    """:class:`CliError` unless ``out`` is facetrack's and replacing it loses nothing: a file
    without a run record beside it, or a finished run made with other options (another
    ``--end`` included), is kept unless ``--force`` is given."""
    from facetrack.io.output import OutputFileError, read_record
    from facetrack.io.video import display_name

    name = display_name(out)
    hint = "not replacing it: give --force to replace it, or choose another --out"
    try:
        old = read_record(out)
    except OutputFileError as e:
        raise CliError(f"{e}; {hint}") from None
    if old is None:
        raise CliError(f"{name}: exists and was not made by facetrack (no {out.name}.run.json beside it); {hint}")
    if old.complete:
        diffs = old.differences(record)
        if old.end != record.end:
            diffs.append(f"end frame ({old.end} vs {record.end})")
        if diffs:
            raise CliError(f"{name}: holds a finished run made with other options ({'; '.join(diffs)}); {hint}")


def camera_record(args: argparse.Namespace, files: list[Path]) -> Any:
    """The record of a camera run: the model and options (a camera run is never resumed; the
    record says the file is facetrack's, so the next run may replace it)."""
    from facetrack.io.output import RunRecord

    camera = getattr(args, "camera", None)
    return RunRecord({"name": f"camera {camera}"}, {"name": model_for(args), "sha256": [_model_sha256(f) for f in files]},
                     0, None, {})


def _notice(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(line, file=sys.stderr, flush=True)


def cpu_threads(args: argparse.Namespace) -> int:
    """The threads each CPU stage of a run may use (``--threads``, default 1): the runtime's
    intra-op threads, OpenCV's (:func:`use_opencv_threads`) and FFmpeg's decoding threads."""
    return int(args.threads) if args.threads else 1


def use_opencv_threads(n: int) -> None:
    """Let OpenCV's functions (grey conversion, resizes, warps, the Haar search) use ``n`` threads,
    for the whole process. With 2 the spare one's waiting costs more CPU than it saves: tracking
    ``sbr_demo_selfie.mp4`` (frames in memory, 2 cores, load 1-2) spent 5.45-7.37 ms of CPU per
    frame, of which only 4.30-6.19 on the tracking thread; with 1 the two are equal (4.20-5.78 ms).
    A Haar search then takes about twice the wall time for less CPU (the Hamilton clip: 6.15-7.88
    against 7.46-8.76 ms per frame)."""
    import cv2

    cv2.setNumThreads(int(n))


def detector_name(args: argparse.Namespace, images: bool) -> str:
    """``--detector`` for this input, else the preset's: ``DEFAULT_DETECTOR`` for video and
    cameras with one face, ``GROUP_DETECTOR`` (turned faces too) for more, and the wider
    ``STILL_DETECTOR`` for still images (no frame waits for a still's search)."""
    name = getattr(args, "detector", None)
    return name if name is not None else preset_for(args, images).detector


def _detector(name: str) -> Any:
    """``--detector`` -> a face detector; :class:`CliError` naming the known detectors, or
    saying what to install."""
    from facetrack.tracker.detect import DetectorUnavailableError, make_detector

    try:
        return make_detector(name)
    except ValueError as e:
        raise CliError(f"usage: --detector: {e}") from None
    except DetectorUnavailableError as e:
        raise CliError(f"--detector: {e}") from None


class _Terminated(BaseException):
    """SIGTERM (``kill``, ``docker stop``, a batch parent stopping its workers) during the frames;
    a ``BaseException`` like ``KeyboardInterrupt``, so no ``except Exception`` on the way swallows it."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def _track_frames(args: argparse.Namespace, source: Any, out: Path, overlay: Path | None, files: list[Path], record: Any,
                  start: int, end: int | None, resume_from: int, images: bool) -> Outcome:
    """Track the frames from ``start`` into ``out``. ``resume_from``: the last frame the file
    holds (``--resume``): the frames up to it are tracked again and compared with the file's
    rows instead of written (:meth:`~facetrack.io.output._FrameWriter.replay`)."""
    import signal
    import threading

    from facetrack.engines.errors import BackendUnavailableError, ModelFileError
    from facetrack.tracker.models import ModelNotFoundError
    from facetrack.io.output import OutputFileError, open_writer, write_record
    from facetrack.io.progress import Progress
    from facetrack.tracker.tracker import Tracker
    from facetrack.io.video import VideoError, VideoReadError, display_name, open_video_writer

    backend = _runtime(args, files)
    use_opencv_threads(cpu_threads(args))
    # the input's preset with the options given (its threads are --threads as given: None keeps
    # the runtime's own default of one), so the CLI cannot drift from facetrack.FaceTracker
    run_preset = replace(preset_for(args, images), model=model_for(args), turned_model=turned_for(args),
                         flip=flip_on(args, images), smooth=smooth_on(args, images), threads=args.threads)
    config = run_preset.tracker_config(
        backend=backend, smooth_min_cutoff=args.smooth_min_cutoff, smooth_beta=args.smooth_beta,
        smooth_shape_min_cutoff=args.smooth_shape_min_cutoff, smooth_shape_beta=args.smooth_shape_beta,
        smooth_reset=getattr(args, "smooth_reset", 0.0),
        smooth_flow=getattr(args, "smooth_flow", "on") == "on", confidence_threshold=args.confidence,
        detect_every=args.detect_every, default_fps=source.fps, track_init=args.track_init, shape_modes=args.shape_modes,
        pose=pose_on(args), camera=camera_for(args))
    try:
        tracker = Tracker(config, detector=_detector(detector_name(args, images)))
    except (ModelNotFoundError, ModelFileError, BackendUnavailableError) as e:
        raise CliError(str(e)) from None
    name = display_name(out)
    total = None
    if source.total:
        total = (min(end, source.total) if end is not None else source.total) - start
    elif end is not None:
        total = end - start
    writer = None
    video_writer = None
    n = n_face = rows = 0
    last_frame = start  # 1-based number of the last frame tracked
    outcome: Outcome | None = None
    on_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if on_main else None
    progress = Progress(total, not args.quiet)

    def held() -> str:
        if writer is None:
            return f"nothing was written to {name}" if not resume_from else f"{name} holds frames up to {resume_from}"
        return f"{name} holds frames up to {resume_from if writer.replaying else last_frame}"

    try:
        while end is None or start + n < end:  # stop before reading past --end
            item = source.read()
            if item is None:
                break
            index, ts, frame = item
            if writer is None:
                # opened at the first frame read: an input that gives none replaces nothing
                try:
                    writer = open_writer(out, "image-csv" if images else args.format, append=bool(resume_from), pose=pose_on(args))
                    if resume_from:
                        writer.replay()
                    if record is not None:
                        write_record(out, record)
                except OutputFileError as e:
                    raise CliError(str(e)) from None
            if images:
                tracker.reset()  # images are unrelated: search every one, carry nothing over
            result = tracker.process(frame, ts)
            replaying = writer.replaying
            if images:
                writer.write_frame(index + 1, ts, result.faces, image=display_name(source.current.name))
            else:
                writer.write_frame(index + 1, ts, result.faces, cut=result.cut)
            last_frame = index + 1
            n += 1
            n_face += result.success
            rows += max(1, len(result.faces))
            if overlay is not None and not replaying:  # the overlay of a resumed run holds the new frames
                if video_writer is None:
                    try:
                        video_writer = open_video_writer(overlay, source.fps, frame.shape[1], frame.shape[0])
                    except VideoError as e:
                        raise CliError(str(e)) from None
                video_writer.write(_draw(frame, result, progress.fps, index + 1))
            progress.update(n)
        if writer is not None and writer.replaying:  # the input ended before the file's rows did
            writer.end_replay()
    except (VideoReadError, OutputFileError) as e:  # damaged video mid-stream; disk full
        progress.finish()
        outcome = Outcome(1, f"facetrack: {e}; {name} keeps every frame up to {last_frame}")
    except KeyboardInterrupt:
        progress.finish()
        outcome = Outcome(130, f"facetrack: interrupted; {held()} (continue with --resume)")
    except _Terminated:
        progress.finish()
        outcome = Outcome(143, f"facetrack: terminated (SIGTERM); {held()} (continue with --resume)")
    else:
        progress.finish()
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, old_term)
        if video_writer is not None:
            video_writer.release()
        tracker.close()
        if writer is not None and outcome is None:
            try:  # the rows reach the disk before the record may say they are complete
                writer.sync()
            except OutputFileError as e:
                outcome = Outcome(1, f"facetrack: {e}")
        if writer is not None:
            writer.close()
    if outcome is not None:
        return outcome
    if writer is None:
        what = "image could be decoded" if images else "frame could be read"
        return Outcome(1, f"facetrack: {getattr(source, 'name', name)}: no {what}; nothing written to {name}")
    if writer.differed_at is not None and writer.differed_at <= resume_from:
        _notice(args, f"facetrack: {name}: its rows from frame {writer.differed_at} on differed from an uninterrupted "
                      f"run (an earlier resume or another writer); tracked again")
    if record is not None and out.is_file():
        try:
            write_record(out, record.completed(out, last_frame, _count_rows(out)))
        except (OutputFileError, OSError) as e:
            return Outcome(1, f"facetrack: {e}")
    pct = 100.0 * n_face / n if n else 0.0
    if images:  # each image that could not be used was one warning line; the exit code says some failed
        skipped = f", {len(source.skipped)} skipped (see the warnings)" if source.skipped else ""
        return Outcome(1 if source.skipped else 0,
                       f"facetrack: {n} images, {n_face} with a face ({pct:.0f}%), {rows} rows{skipped} -> {name}", False)
    damaged = source.decode_errors() if hasattr(source, "decode_errors") else None
    if damaged:  # FFmpeg's messages were caught, not printed: one line for them all, and exit 1
        print(f"facetrack: {damaged}", file=sys.stderr)
    return Outcome(1 if damaged else 0, f"facetrack: {n} frames, {n_face} with a face ({pct:.0f}%), {progress.fps:.1f} fps -> {name}", False)


def _count_rows(out: Path) -> int:
    """Data rows of a finished landmark file (lines after the header; image names never hold
    a line break: :func:`facetrack.io.output.image_cell`)."""
    with open(out, "rb") as f:
        return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1)


def _record_of(job: TrackJob, input_path: str, start: int, end: int | None, images: bool) -> Any:
    """The record a batch's input would be written with (the batch compares it with the file's)."""
    return make_record(job, Path(input_path), run_model_files(job), start, end, images)


def worker_main(argv: list[str]) -> int:
    """``python -m facetrack.cli.track --job JSON``: one input of a batch, the job the batch
    parent derived (:meth:`TrackJob.for_input`), run as ``facetrack`` runs it."""
    from facetrack.cli.main import register_backends

    if len(argv) != 2 or argv[0] != "--job":
        print("usage: python -m facetrack.cli.track --job JSON (a batch worker)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="facetrack: %(message)s")
    register_backends()
    try:
        return run(TrackJob.from_json(argv[1]))
    except KeyboardInterrupt:
        print("\nfacetrack: interrupted (exit 130)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover - the batch's workers
    sys.exit(worker_main(sys.argv[1:]))
