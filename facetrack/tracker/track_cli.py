"""``facetrack track`` (the default job): track a video file or a camera and write the
landmarks as an OpenFace-layout CSV (or JSON lines), optionally an overlay video.

Rows are flushed after every frame: a killed or interrupted run leaves a valid file up to the
last completed frame, and ``--resume`` continues after it. Errors are one line,
``facetrack: <file>: <problem>``, with a non-zero exit code; Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class CliError(Exception):
    """A one-line user-facing error (``<file>: <problem>``)."""


def _time_arg(text: str) -> str:
    t = text.strip().lower()
    try:
        v = float(t[:-1]) if t.endswith("f") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds (e.g. 12.5) or frames with an f suffix (e.g. 300f)") from None
    if v < 0 or not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a non-negative time")
    return t


def to_frame(value: str | None, fps: float) -> int | None:
    """``--start``/``--end`` value -> 0-based frame index: ``"300f"`` is frame 300, ``"12.5"``
    is 12.5 seconds (``round(12.5 * fps)``)."""
    if value is None:
        return None
    return int(float(value[:-1])) if value.endswith("f") else int(round(float(value) * fps))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the track job."""
    src = parser.add_argument_group("input")
    src.add_argument("video", nargs="?", help="video file to track")
    src.add_argument("--camera", type=int, metavar="N", help="track camera N instead of a file")
    src.add_argument("--start", type=_time_arg, metavar="T",
                     help="start at T: seconds (12.5) or a 0-based frame number with an f suffix (300f)")
    src.add_argument("--end", type=_time_arg, metavar="T",
                     help="stop before T (exclusive): seconds or frames with an f suffix; '--end 30f' tracks frames 0-29")
    out = parser.add_argument_group("output")
    out.add_argument("--out", "-o", metavar="FILE", help="landmark file (default: VIDEO's name with .csv / .jsonl, in the current folder)")
    out.add_argument("--format", choices=("csv", "json"), default="csv",
                     help="csv: OpenFace columns frame,face_id,timestamp,confidence,success,x_0..x_67,y_0..y_67; json: one JSON object per frame")
    out.add_argument("--overlay", metavar="MP4", help="also write a video with the landmarks drawn (mp4v)")
    out.add_argument("--resume", action="store_true", help="continue after the last complete frame of an existing --out CSV (an --overlay then holds only the new frames)")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    mod = parser.add_argument_group("model")
    mod.add_argument("--model", default="mdm",
                     help="mdm (MDM-RT from the detector box, MDM tracks), aan (AAN fits and tracks), "
                          "aan+mdm (AAN on the detector box, MDM refines and tracks), or a model file (default: mdm)")
    mod.add_argument("--backend", default="auto",
                     help="auto (TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU), onnxruntime, onnxruntime-cuda, torch, tensorrt")
    mod.add_argument("--threads", type=int, default=None, help="CPU threads for the runtime (default: its own)")
    trk = parser.add_argument_group("tracking")
    trk.add_argument("--max-faces", type=int, default=1, metavar="N", help="track up to N faces (default 1)")
    trk.add_argument("--detect-every", type=int, default=3, metavar="K",
                     help="frames between searches for new faces while fewer than --max-faces are tracked (default 3)")
    trk.add_argument("--confidence", type=float, default=0.5, metavar="C",
                     help="confidence under which a face is lost / a detection rejected (default 0.5)")
    trk.add_argument("--track-init", choices=("template", "shape"), default="template",
                     help="MDM start on a tracked face, in a crop aligned on its previous landmarks: the template "
                          "(default; no drift with the shipped weights) or the previous landmarks (MDM's 300VW protocol)")
    trk.add_argument("--smooth", action="store_true", help="One Euro smoothing of the output landmarks (off by default)")
    trk.add_argument("--smooth-min-cutoff", type=float, default=1.0, metavar="HZ", help="One Euro cutoff at rest, Hz (default 1.0)")
    trk.add_argument("--smooth-beta", type=float, default=10.0, metavar="B",
                     help="One Euro speed coefficient, Hz per face size per second (default 10)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _check_writable(path: Path, inputs: list[Path]) -> None:
    for i in inputs:
        if _same_file(path, i) or path.resolve() == i.resolve():
            raise CliError(f"{path}: output would overwrite the input {i}")
    if path.is_dir():
        raise CliError(f"{path}: is a directory")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise CliError(f"{path}: folder {parent} does not exist")
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(parent, os.W_OK):
        raise CliError(f"{path}: not writable (permission denied)")


class _Progress:
    """A one-line progress bar on stderr, redrawn at most 5 times a second."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.t0 = time.perf_counter()
        self._last = 0.0
        self.done = 0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < 0.2):
            return
        self._last = now
        fps = done / max(now - self.t0, 1e-9)
        if self.total:
            frac = min(1.0, done / self.total)
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r[{bar:<30}] {done}/{self.total} frames  {fps:5.1f} fps")
        else:
            sys.stderr.write(f"\r{done} frames  {fps:5.1f} fps")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(self.done, force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()

    @property
    def fps(self) -> float:
        return self.done / max(time.perf_counter() - self.t0, 1e-9)


def _draw(frame: np.ndarray, result: Any, fps: float) -> np.ndarray:
    from facetrack.tracker.draw import GREEN, RED, draw_box, draw_landmarks, draw_text
    from facetrack.tracker.geometry import to_gray

    img = frame
    if img.ndim == 2 or img.shape[2] != 3 or img.dtype != np.uint8:
        import cv2

        img = cv2.cvtColor(to_gray(img), cv2.COLOR_GRAY2BGR)
    for f in result.faces:
        color = GREEN if f.success else RED
        if f.success:
            img = draw_landmarks(img, f.landmarks, color)
        img = draw_box(img, f.box, color, f"face {f.face_id} {f.confidence:.2f}{'' if f.success else ' lost'}")
    text = [f"{fps:4.1f} fps"] + (["cut"] if result.cut else [])
    return draw_text(img, text)


def run(args: argparse.Namespace) -> int:
    """Run the track job; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    try:
        return _run(args)
    except CliError as e:
        print(f"facetrack: {e}", file=sys.stderr)
        return 2 if str(e).startswith("usage") else 1


def _run(args: argparse.Namespace) -> int:
    from facetrack.engines.errors import BackendUnavailableError, ModelFileError
    from facetrack.tracker.models import ModelNotFoundError
    from facetrack.tracker.output import OutputFileError, open_writer, truncate_to_complete
    from facetrack.tracker.tracker import Tracker, TrackerConfig
    from facetrack.tracker.video import VideoError, VideoReadError, open_source

    if args.quiet:  # errors and warnings only
        logging.getLogger().setLevel(logging.WARNING)
    if (args.video is None) == (args.camera is None):
        raise CliError("usage: give a VIDEO file or --camera N (one of them)")
    if args.resume and args.format != "csv":
        raise CliError("usage: --resume needs --format csv")
    if args.max_faces < 1 or args.detect_every < 1:
        raise CliError("usage: --max-faces and --detect-every must be at least 1")
    ext = ".csv" if args.format == "csv" else ".jsonl"
    if args.out:
        out = Path(args.out)
    else:
        out = Path((Path(args.video).stem if args.video else f"camera{args.camera}") + ext)
    overlay = Path(args.overlay) if args.overlay else None
    inputs = [Path(args.video)] if args.video else []
    try:
        source = open_source(args.video, args.camera)
    except VideoError as e:
        raise CliError(str(e)) from None
    with source:
        _check_writable(out, inputs)
        if overlay is not None:
            _check_writable(overlay, inputs + [out])
        start = to_frame(args.start, source.fps) or 0
        end = to_frame(args.end, source.fps)
        resume_from = 0
        append = False
        if args.resume and out.exists() and out.stat().st_size > 0:
            try:
                table = truncate_to_complete(out)
            except OutputFileError as e:
                raise CliError(f"{e} (cannot --resume)") from None
            resume_from, append = table.last_frame, True  # 1-based last frame == next 0-based index
            if resume_from > start:
                log.info("resuming %s after frame %d", out, resume_from)
            start = max(start, resume_from)
        if end is not None and end <= start:
            raise CliError(f"{out}: nothing to do: start frame {start} is not before end frame {end}")
        try:
            source.seek(start)
        except VideoError as e:
            if resume_from and source.total and start >= source.total:
                if not args.quiet:
                    print(f"facetrack: {out}: already complete ({resume_from} frames)", file=sys.stderr)
                return 0
            raise CliError(str(e)) from None

        config = TrackerConfig(model=args.model, backend=args.backend, threads=args.threads, max_faces=args.max_faces,
                               smooth=args.smooth, smooth_min_cutoff=args.smooth_min_cutoff, smooth_beta=args.smooth_beta,
                               confidence_threshold=args.confidence, detect_every=args.detect_every,
                               default_fps=source.fps, track_init=args.track_init)
        try:
            tracker = Tracker(config)
        except (ModelNotFoundError, ModelFileError, BackendUnavailableError) as e:
            raise CliError(str(e)) from None
        try:
            writer = open_writer(out, args.format, append=append)
        except OutputFileError as e:
            raise CliError(str(e)) from None
        total = None
        if source.total:
            total = (min(end, source.total) if end is not None else source.total) - start
        elif end is not None:
            total = end - start
        progress = _Progress(total, not args.quiet)
        video_writer = None
        n = n_face = 0
        last_frame = start  # 1-based number of the last frame written
        status = 0
        try:
            while end is None or start + n < end:  # stop before reading past --end
                item = source.read()
                if item is None:
                    break
                index, ts, frame = item
                result = tracker.process(frame, ts)
                writer.write_frame(index + 1, ts, result.faces, cut=result.cut)
                last_frame = index + 1
                n += 1
                n_face += result.success
                if overlay is not None:
                    if video_writer is None:
                        video_writer = _open_overlay(overlay, source.fps, frame.shape[1], frame.shape[0])
                    video_writer.write(_draw(frame, result, progress.fps))
                progress.update(n)
        except (VideoReadError, OutputFileError) as e:  # damaged video mid-stream; disk full
            progress.finish()
            print(f"facetrack: {e}; {out} keeps every frame up to {last_frame}", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            progress.finish()
            print(f"facetrack: interrupted; {out} holds frames up to {last_frame} (continue with --resume)", file=sys.stderr)
            status = 130
        else:
            progress.finish()
        finally:
            writer.close()
            if video_writer is not None:
                video_writer.release()
            tracker.close()
        if status == 0 and not args.quiet:
            pct = 100.0 * n_face / n if n else 0.0
            print(f"facetrack: {n} frames, {n_face} with a face ({pct:.0f}%), {progress.fps:.1f} fps -> {out}")
        return status


def _open_overlay(path: Path, fps: float, width: int, height: int) -> Any:
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (int(width), int(height)))
    if not vw.isOpened():
        raise CliError(f"{path}: cannot open an mp4v video writer")
    return vw
