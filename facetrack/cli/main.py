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
    "track": ("facetrack.cli.track", "track faces in videos, images or a camera (the default: `facetrack VIDEO ...`)"),
    "train": ("facetrack.cli.train", "train mdm, mdm-rt or aan on 300-W style data (needs the [train] extra)"),
    "train-track": ("facetrack.train.loops.track_train", "fine-tune MDM on its own tracking starts (roll-out over moved faces and video frames)"),
    "export": ("facetrack.train.export.to_onnx", "export a training checkpoint to ONNX with embedded metadata"),
    "eval-300vw": ("facetrack.cli.eval_300vw", "score a model on 300VW: per-category NME, AUC, failure rate, CED plots"),
    "eval-images": ("facetrack.eval.images", "score a model on labelled still images (300-W style): NME, AUC, failure rate, CED"),
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
  facetrack a.mp4 b.mp4 --out-dir csv/ --jobs 2  many videos, one CSV each
  facetrack photos/ --out photos.csv             a folder of images, one row per image and face
  facetrack <subcommand> --help                  options of one job
  facetrack --version
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


def register_backends() -> None:
    """The composition root's wiring: backends that live above ``engines`` join its registry
    (the PyTorch backend runs training checkpoints, so it lives in ``facetrack.train``)."""
    from facetrack.train.export.torch_backend import register

    register()


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
    if argv[0] in ("-V", "--version"):
        from facetrack import __version__

        print(f"facetrack {__version__}")
        return 0
    name = argv[0] if argv[0] in SUBCOMMANDS else "track"
    rest = argv[1:] if argv[0] in SUBCOMMANDS else argv
    try:
        try:
            parser = _build_parser(name)
        except ModuleNotFoundError as e:
            print(f"facetrack {name}: missing dependency '{e.name}' ({SUBCOMMANDS[name][1]})", file=sys.stderr)
            return 2
        args = parser.parse_args(rest)
        register_backends()
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return int(module.run(args) or 0)
    except KeyboardInterrupt:  # anywhere, also while loading; the newline ends a progress bar's line
        label = "facetrack" if name == "track" else f"facetrack {name}"
        print(f"\n{label}: interrupted (exit 130)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
