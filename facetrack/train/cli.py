"""``facetrack train mdm|mdm-rt|aan --data DATA_DIR --out RUN_DIR``: train a landmark model.

Writes ``RUN_DIR/last.pt``, ``best.pt``, ``config.json``, ``metrics.jsonl`` and
``record.json`` (command, data, seed, final figures). ``--resume`` continues from ``last.pt``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from facetrack.train.models import ARCHS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facetrack train``."""
    parser.add_argument("arch", choices=ARCHS, help="model architecture")
    parser.add_argument("--data", required=True, type=Path, help="the shared data folder (images68/, pseudo_dlib/, bboxes/)")
    parser.add_argument("--out", required=True, type=Path, help="run folder for checkpoints and logs")
    parser.add_argument("--steps", type=int, default=5000, help="optimiser steps (default 5000)")
    parser.add_argument("--batch", type=int, default=16, help="samples per step (default 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3; warm-up then cosine)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, augmentation and initialisation (default 0)")
    parser.add_argument("--val-every", type=int, default=500, help="steps between validations and checkpoints (default 500)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: CUDA when present")
    parser.add_argument("--no-pseudo", action="store_true", help="leave out the dlib pseudo-labelled faces")
    parser.add_argument("--pseudo-v2", action="store_true", help="add the pseudo_v2 teacher-labelled faces (6%% of their groups validate)")
    parser.add_argument("--human-weight", type=float, default=2.0, help="sampling weight of a human-labelled face against a teacher-labelled one (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--output-lr-scale", type=float, default=0.0,
                        help="learning-rate factor of the layers that emit crop-pixel coordinates (default 0: 8 for aan, input size / 2 for mdm)")
    parser.add_argument("--limit-images", type=int, default=0, help="train on only the first N human-labelled faces (overfit checks)")
    parser.add_argument("--augment", choices=("full", "none"), default="full",
                        help="full: geometric + photometric + 20%% negatives; none: the plain crop from the shape (overfit checks)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="warm start from this checkpoint's weights (same architecture); new optimiser and schedule")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``facetrack train``; returns the exit code."""
    from facetrack.train.augment import NO_AUGMENT, AugmentConfig
    from facetrack.train.trainer import TrainOptions, train

    for name in ("steps", "batch", "val_every"):
        if getattr(args, name) < 1:
            print(f"facetrack train: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if not (args.data / "images68").is_dir():
        print(f"facetrack train: {args.data}: no images68/ folder (expected the shared data folder)", file=sys.stderr)
        return 2
    command = "facetrack train " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("train") + 1 :]) if "train" in sys.argv else ""
    opts = TrainOptions(arch=args.arch, data=str(args.data), out=str(args.out), steps=args.steps, batch=args.batch, lr=args.lr,
                        seed=args.seed, val_every=args.val_every, resume=args.resume, device=args.device, pseudo=not args.no_pseudo, pseudo_v2=args.pseudo_v2, human_weight=args.human_weight,
                        threads=args.threads, limit_images=args.limit_images, output_lr_scale=args.output_lr_scale, progress=not args.quiet, command=command,
                        init_from=str(args.init_from) if args.init_from else "",
                        augment=NO_AUGMENT if args.augment == "none" else AugmentConfig())
    try:
        metrics = train(opts)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        print(f"facetrack train: {e}", file=sys.stderr)
        return 2
    figs = {k: v for k, v in metrics.items() if isinstance(v, float)}
    print(f"{args.out}: step {metrics.get('step')} " + " ".join(f"{k} {v:.4f}" for k, v in figs.items()))
    return 0
