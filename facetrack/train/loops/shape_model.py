"""Fit the tracker's shape model (:mod:`facetrack.tracker.shape_model`) on training labels, and
choose how many of its modes constrain MDM's start by tracking held-out sequences.

    python -m facetrack.train.loops.shape_model --data ../shared/data --out facetrack/tracker/data/shape_model.json \\
        [--sources images68:4 pseudo_dlib:1 pseudo_v2:1] [--seed 0] [--choose CKPT.pt --modes 0 4 8 12 16 24]

The shapes are the training faces of ``--sources`` split as the trainer splits them (same seed:
the held-out human images and ``pseudo_v2`` groups are left out; no 300-W test face is read),
each also mirrored. With ``--choose``, the checkpoint's MDM tracks the held-out validation
sequences of :func:`facetrack.train.loops.track_train.validation_sequences` from its previous fit,
its start projected onto the first K modes for each ``--modes`` K (0: the mean shape in the
previous fit's pose, which is the template start by another name; ``raw``: the previous fit
itself, MDM's 300VW protocol), beside the tracker's default (the template in the crop aligned on
the previous fit); the K >= 1 with the lowest mean NME is written into the model file as
``tracking_modes``, which the tracker's ``shape`` start uses.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.tracker.markup import mirror_landmarks
from facetrack.eval.metrics import THRESHOLD
from facetrack.tracker.shape_model import ShapeModel


def training_shapes(data: Path, sources: list[str], seed: int) -> np.ndarray:
    """The training split's landmarks and their mirror images, ``(2N, 68, 2)``."""
    from facetrack.train.data.sources import load_sources, parse_sources

    split = load_sources(parse_sources(sources, data), seed=seed)
    shapes = np.stack([np.asarray(s.landmarks, np.float64) for s in split.train])
    return np.concatenate([shapes, mirror_landmarks(shapes, 0.0)])


def tracking_table(checkpoint: Path, data: Path, model: ShapeModel, modes: list[str], sequences: int, frames: int,
                   seed: int = 1000) -> list[dict[str, Any]]:
    """Mean NME, drift (last 5 frames minus first 5) and failures (NME over 0.08) of tracking the
    held-out sequences from the previous fit, per start constraint, and from the template."""
    import torch

    from facetrack.train.models.checkpoint import load_checkpoint
    from facetrack.train.loops.track_train import load_track_data, roll_out, validation_sequences

    net = load_checkpoint(checkpoint).build_model()
    net.eval()
    d = load_track_data(str(data))
    seqs = validation_sequences(d, sequences, frames, seed=seed)
    rows = []
    for label in ["template", *modes]:
        if label == "template":
            init, fn = "template", None
        elif label == "raw":
            init, fn = "shape", None
        else:
            k = int(label)
            init, fn = "shape", (lambda p, k=k: model.project(p, k))
        with torch.no_grad():
            r = roll_out(net, seqs, np.random.default_rng(99), init=init, start_transform=fn)
        rows.append({"start": label, "nme": float(r.nme.mean()), "drift": float((r.nme[:, -5:].mean(1) - r.nme[:, :5].mean(1)).mean()),
                     "failure": float((r.nme > THRESHOLD).mean())})
        print(f"{label}: NME {100 * rows[-1]['nme']:.2f} %, drift {100 * rows[-1]['drift']:+.2f} pts, "
              f"failures {100 * rows[-1]['failure']:.1f} %", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facetrack.train.loops.shape_model", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the shared data folder")
    p.add_argument("--out", type=Path, required=True, help="the model file to write (JSON)")
    p.add_argument("--sources", nargs="+", default=["images68:4", "pseudo_dlib:1", "pseudo_v2:1"])
    p.add_argument("--seed", type=int, default=0, help="the trainer's split seed")
    p.add_argument("--keep", type=int, default=40, help="modes stored")
    p.add_argument("--choose", type=Path, default=None, metavar="CKPT", help="an MDM checkpoint to choose the tracking modes with")
    p.add_argument("--modes", nargs="+", default=["raw", "0", "4", "8", "12", "16", "24"])
    p.add_argument("--sequences", type=int, default=48)
    p.add_argument("--frames", type=int, default=30)
    args = p.parse_args(argv)
    if args.choose and any(m != "raw" and not (m.isdigit() and int(m) <= args.keep) for m in args.modes):
        print(f"shape_model: --modes takes 'raw' or numbers from 0 to --keep ({args.keep})", file=sys.stderr)
        return 2
    t0 = time.time()
    try:
        shapes = training_shapes(args.data, args.sources, args.seed)
    except (OSError, ValueError) as e:
        print(f"shape_model: {e}", file=sys.stderr)
        return 2
    record: dict[str, Any] = {"command": "python -m facetrack.train.loops.shape_model " + " ".join(argv if argv is not None else sys.argv[1:]),
                              "sources": args.sources, "seed": args.seed, "training_shapes": int(len(shapes) // 2), "mirrored": True,
                              "test_images_used": False, "method": "PCA of the shapes aligned onto the template (least-squares similarity)"}
    model = ShapeModel.fit(shapes, args.keep, record)
    cum = np.cumsum(model.variance)
    record["modes_for_variance"] = {q: int(np.searchsorted(cum, q / 100) + 1) for q in (90, 95, 98, 99)}
    if args.choose:
        rows = tracking_table(args.choose, args.data, model, args.modes, args.sequences, args.frames)
        # K = 0 starts from the mean shape in the previous fit's pose: the template start by another name
        numbered = [r for r in rows if r["start"] not in ("template", "raw", "0")]
        best = min(numbered, key=lambda r: r["nme"]) if numbered else None
        record["tracking_choice"] = {"checkpoint": str(args.choose), "sequences": args.sequences, "frames": args.frames, "rows": rows}
        if best is not None:
            record["tracking_modes"] = int(best["start"])
    model.record = record
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    print(f"{args.out}: {len(model.modes)} modes from {record['training_shapes']} training shapes (+ mirrored); modes for 95/98 % of "
          f"the variance: {record['modes_for_variance'][95]}/{record['modes_for_variance'][98]}"
          + (f"; tracking modes {record['tracking_modes']}" if "tracking_modes" in record else "") + f" ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
