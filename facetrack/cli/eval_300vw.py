"""``facetrack eval-300vw``: options, a progress line per video, the summary table."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from facetrack.eval.vw300.dataset import CATEGORIES, DATA_ENV
from facetrack.eval.vw300.evaluate import evaluate_300vw
from facetrack.eval.vw300.predictors import MODES
from facetrack.eval.vw300.report import summary_markdown
from facetrack.eval.vw300.results import ProgressEvent
from facetrack.io.progress import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facetrack eval-300vw``."""
    parser.add_argument("root", type=Path, help="300VW root: ROOT/<video>/vid.avi (or imgs/NNNNNN.jpg) and annot/NNNNNN.pts")
    parser.add_argument("--category", type=int, nargs="+", default=list(CATEGORIES), choices=CATEGORIES,
                        help="test categories to evaluate (default: 1 2 3)")
    parser.add_argument("--videos", nargs="+", metavar="ID", help="only these video ids")
    parser.add_argument("--model", default="aan+mdm", help="aan+mdm | mdm | aan | PATH (default: aan+mdm, the tracker's default)")
    parser.add_argument("--backend", default="auto", help="auto | onnxruntime | onnxruntime-cuda | torch | tensorrt")
    parser.add_argument("--mode", default="track", choices=MODES,
                        help="track: the tracker as a user runs it; gt-box: crop every frame from the ground "
                             "truth's box; detector: detect on every frame (default: track)")
    parser.add_argument("--points", type=int, nargs="+", default=[68, 49], choices=(68, 51, 49),
                        help="point subsets to report (default: 68 49)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report/)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="only the first N frames of each video")
    parser.add_argument("--force", action="store_true", help="recompute videos finished by an earlier run")
    parser.add_argument("--reference-dir", type=Path,
                        help="published per-frame errors for the CED plots "
                             f"(default: ${DATA_ENV}/300vw_reference_errors when ${DATA_ENV} is set)")


class _ProgressBar:
    """:class:`~facetrack.eval.vw300.results.ProgressEvent` s -> one
    :class:`facetrack.io.progress.Progress` line per video on stderr."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.bar: Progress | None = None
        self.current: str | None = None

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.video_id != self.current or self.bar is None:
            self.current = ev.video_id
            label = f"[{ev.video_index + 1}/{ev.n_videos}] {ev.video_id}" + (" finished earlier, reused" if ev.resumed else "")
            self.bar = Progress(ev.n_frames, stream=self.stream, prefix="facetrack eval-300vw: ", label=label)
        self.bar.update(ev.frame)
        if ev.frame >= ev.n_frames:
            self.bar.finish()


def run(args: argparse.Namespace) -> int:
    """``facetrack eval-300vw``: evaluate, write the report, print the summary table."""
    from facetrack.io.landmarks import LandmarkFileError

    ref: Path | bool | None = args.reference_dir if args.reference_dir is not None else True
    if args.reference_dir is not None and not args.reference_dir.is_dir():
        print(f"facetrack eval-300vw: {args.reference_dir}: no such folder (--reference-dir)", file=sys.stderr)
        return 2
    try:
        report = evaluate_300vw(args.root, args.category, args.videos, model=args.model, backend=args.backend,
                                mode=args.mode, points=args.points, out_dir=args.out, progress=_ProgressBar(),
                                max_frames=args.max_frames, force=args.force, reference_dir=ref)
    except (OSError, LandmarkFileError, ValueError, RuntimeError) as e:
        print(f"facetrack eval-300vw: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"facetrack eval-300vw: cannot load the runtime ({e})", file=sys.stderr)
        return 1
    if not report.videos:
        print(f"facetrack eval-300vw: no videos of categories {' '.join(map(str, args.category))} under {args.root}",
              file=sys.stderr)
        return 1
    print(summary_markdown(report).split("## Per video")[0].rstrip())
    print(f"\nwritten: {', '.join(str(p) for p in report.outputs)}")
    return 0
