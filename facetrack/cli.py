"""The ``facetrack`` command: track a video by default, other jobs as subcommands.

``facetrack VIDEO --out landmarks.csv`` tracks; ``facetrack SUBCOMMAND ...`` runs another job.
Each subcommand lives in its own module, imported only when used, exposing
``add_arguments(parser)`` and ``run(args) -> int`` (exit code).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand -> (module, one-line help). Imported lazily so torch/Qt/TensorRT load only when needed.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "track": ("facetrack.tracker.track_cli", "track faces in a video or camera (the default: `facetrack VIDEO ...`)"),
    "train": ("facetrack.train.cli", "train mdm, mdm-rt or aan on 300-W style data (needs the [train] extra)"),
    "export": ("facetrack.train.export", "export a training checkpoint to ONNX with embedded metadata"),
    "eval-300vw": ("facetrack.tracker.eval300vw", "score a model on 300VW: per-category NME, AUC, failure rate, CED plots"),
    "gui": ("facetrack.gui.app", "open the desktop app (needs the [gui] extra)"),
    "build-engine": ("facetrack.engines.build", "build a TensorRT engine from an ONNX model (needs the [trt] extra and a GPU)"),
    "bench": ("facetrack.bench.bench", "benchmark facetrack against peers"),
}

EPILOG = """\
examples:
  facetrack video.mp4 --out landmarks.csv        track a video, OpenFace-style CSV
  facetrack --camera 0 --out cam.csv             track webcam 0
  facetrack video.mp4 --out l.csv --overlay o.mp4 --model aan+mdm
  facetrack eval-300vw /data/300VW --category 1 2 3 --out report/
  facetrack train mdm-rt --data ../shared/data --out runs/mdm-rt
  facetrack export runs/mdm-rt/last.pt --out mdm-rt.onnx
  facetrack <subcommand> --help                  options of one job
"""


def _build_parser(name: str) -> argparse.ArgumentParser:
    module_name, help_text = SUBCOMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"facetrack {name}" if name != "track" else "facetrack", description=help_text)
    importlib.import_module(module_name).add_arguments(parser)
    return parser


def _top_help() -> str:
    lines = ["usage: facetrack VIDEO [--out CSV] [options]   |   facetrack SUBCOMMAND [options]", "",
             "Real-time 68-point facial landmark tracking (MDM / AAN).", "", "subcommands:"]
    lines += [f"  {k:<14}{v[1]}" for k, v in SUBCOMMANDS.items() if k != "bench"]
    lines += ["", "tracking options: facetrack track --help", "", EPILOG]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``facetrack`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="facetrack: %(message)s")
    if not argv:
        import os

        if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
            argv = ["gui"]
        else:
            print(_top_help())
            return 2
    if argv[0] in ("-h", "--help"):
        print(_top_help())
        return 0
    name = argv[0] if argv[0] in SUBCOMMANDS else "track"
    rest = argv[1:] if argv[0] in SUBCOMMANDS else argv
    try:
        parser = _build_parser(name)
    except ModuleNotFoundError as e:
        print(f"facetrack {name}: missing dependency '{e.name}' ({SUBCOMMANDS[name][1]})", file=sys.stderr)
        return 2
    args = parser.parse_args(rest)
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("facetrack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
