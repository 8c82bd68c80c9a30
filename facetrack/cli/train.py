"""``facetrack train mdm|mdm-rt|aan --data SOURCE[:WEIGHT] ... --out RUN_DIR [--config KEY=VALUE ...]``: train a landmark model.

Sources (:mod:`facetrack.train.data.sources`): ``images68``, ``pseudo_dlib``, ``pseudo_v2`` (in
``--data-root``, the shared data folder), ``300w=DIR[,boxes=BOXDIR]``, ``300vw=DIR``, or the
shared data folder itself (``images68`` at ``--human-weight`` + ``pseudo_dlib`` unless
``--no-pseudo``, + ``pseudo_v2`` with ``--pseudo-v2``: the options of earlier versions).
``--config`` changes fields of the named configuration (:func:`facetrack.train.models.registry.with_overrides`);
an unknown field or a bad value is one line and exit 2.

Writes ``RUN_DIR/last.pt``, ``best.pt`` (best validation NME), ``config.json``,
``metrics.jsonl`` and ``record.json``. ``--resume`` continues from ``last.pt`` (same split and
schedule); a folder holding an earlier run is refused without ``--resume`` or ``--force``.
Ctrl-C checkpoints and exits 130. Under ``torchrun --nproc_per_node N -m facetrack train ...``
the same command trains with DistributedDataParallel (``--batch`` is the global batch).
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from facetrack.train.models.registry import ARCHS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facetrack train``."""
    parser.add_argument("arch", choices=ARCHS, help="model architecture")
    parser.add_argument("--data", required=True, nargs="+", metavar="SOURCE[:WEIGHT]",
                        help="training sources: images68, pseudo_dlib, pseudo_v2 (in --data-root), 300w=DIR[,boxes=BOXDIR], 300vw=DIR, "
                             "or the shared data folder; :WEIGHT = sampling weight of one face (default 2 human, 1 teacher labels)")
    parser.add_argument("--data-root", type=Path, default=None, help="the shared data folder of the named sources (default: a --data item that is one)")
    parser.add_argument("--out", required=True, type=Path, help="run folder for checkpoints and logs")
    parser.add_argument("--steps", type=int, default=5000, help="optimiser steps (default 5000)")
    parser.add_argument("--batch", type=int, default=16, help="samples per step, over all processes (default 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3; warm-up then cosine)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, augmentation and initialisation (default 0)")
    parser.add_argument("--val-every", type=int, default=500, help="steps between validations and checkpoints (default 500)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--force", action="store_true", help="replace an earlier run in RUN_DIR")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: CUDA when present")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes (default 2; 0: in the training process)")
    parser.add_argument("--ema", type=float, default=0.999, help="decay of the weights' moving average, validated and saved (default 0.999; 0: off)")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA (never used on the CPU)")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="off",
                        help="torch.compile the training step: on, off (default) or auto (aan only: measured on a CPU, "
                             "its step costs 24%% less after a compile of minutes; mdm's costs more)")
    parser.add_argument("--no-pseudo", action="store_true", help="with the shared data folder as --data: leave out pseudo_dlib")
    parser.add_argument("--pseudo-v2", action="store_true", help="with the shared data folder as --data: add pseudo_v2 (6%% of its groups validate)")
    parser.add_argument("--human-weight", type=float, default=2.0, help="with the shared data folder as --data: weight of an images68 face (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--output-lr-scale", type=float, default=0.0,
                        help="learning-rate factor of the layers that emit crop-pixel coordinates (default 0: 8 for aan, input size / 2 for mdm)")
    parser.add_argument("--limit-images", type=int, default=0, help="train on only the first N faces of the first source (overfit checks)")
    parser.add_argument("--augment", choices=("full", "none"), default="full",
                        help="full: geometric + photometric + 20%% negatives; none: the plain crop from the shape (overfit checks)")
    parser.add_argument("--profile", type=float, default=0.0, metavar="SHARE",
                        help="share of training faces first turned further by a synthetic head turn of 20-55 degrees "
                             "(facetrack.train.data.profile; default 0: never)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="warm start from this training checkpoint's weights, or from an exported float32 model such as the "
                             "shipped facetrack/tracker/weights/mdm-rt.onnx (same architecture and split); new optimiser and schedule")
    parser.add_argument("--config", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="change fields of the architecture's configuration, e.g. hidden_size=256 conv_channels=16,32 "
                             "(facetrack.train.models.mdm.MDMConfig / aan.AANConfig); stored in the checkpoints and the ONNX export")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def expand_sources(args: argparse.Namespace) -> tuple[list[str], Path | None]:
    """``--data`` items with the shared data folder expanded into named sources, and the data root."""
    root = args.data_root
    items: list[str] = []
    for item in args.data:
        p = Path(item)
        if (p / "images68").is_dir():
            root = root or p
            items.append(f"images68:{args.human_weight:g}")
            if not args.no_pseudo:
                items.append("pseudo_dlib:1")
            if args.pseudo_v2:
                items.append("pseudo_v2:1")
        else:
            items.append(item)
    return items, root


def run(args: argparse.Namespace) -> int:
    """Run ``facetrack train``; returns the exit code (130 after Ctrl-C, checkpointed)."""
    from facetrack.train.data.augment import NO_AUGMENT, AugmentConfig
    from facetrack.train.data.sources import SourceError, parse_sources
    from facetrack.train.loops.trainer import TrainOptions, train

    for name in ("steps", "batch", "val_every"):
        if getattr(args, name) < 1:
            print(f"facetrack train: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if not 0 <= args.profile <= 1:
        print(f"facetrack train: --profile must be in [0, 1], got {args.profile}", file=sys.stderr)
        return 2
    if args.workers < 0 or not 0 <= args.ema < 1:
        print("facetrack train: --workers must be >= 0 and --ema in [0, 1)", file=sys.stderr)
        return 2
    from facetrack.train.models.registry import ConfigOverrideError, config_for, with_overrides

    try:
        with_overrides(config_for(args.arch), args.config)
    except ConfigOverrideError as e:
        print(f"facetrack train: --config {e}", file=sys.stderr)
        return 2
    items, root = expand_sources(args)
    try:
        parse_sources(items, root)
    except SourceError as e:
        print(f"facetrack train: {e}", file=sys.stderr)
        return 2
    command = "facetrack train " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("train") + 1 :]) if "train" in sys.argv else ""
    opts = TrainOptions(arch=args.arch, data=str(root) if root else "", out=str(args.out), steps=args.steps, batch=args.batch, lr=args.lr,
                        seed=args.seed, val_every=args.val_every, resume=args.resume, device=args.device, sources=tuple(items),
                        threads=args.threads, limit_images=args.limit_images, output_lr_scale=args.output_lr_scale, progress=not args.quiet,
                        command=command, init_from=str(args.init_from) if args.init_from else "", workers=args.workers, ema=args.ema,
                        amp=not args.no_amp, compile=args.compile, force=args.force, config=tuple(args.config), augment=NO_AUGMENT if args.augment == "none" else AugmentConfig(p_profile=args.profile))
    try:
        metrics = train(opts)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        print(f"facetrack train: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    figs = {k: v for k, v in metrics.items() if isinstance(v, float)}
    if not metrics.get("rank"):  # distributed: rank 0 reports
        print(f"{args.out}: step {metrics.get('step')} " + " ".join(f"{k} {v:.4f}" for k, v in figs.items()))
    if metrics.get("interrupted"):
        sig = int(metrics["interrupted"])
        print(f"facetrack train: stopped by {signal.Signals(sig).name} at step {metrics.get('step')} (checkpointed; continue with --resume)", file=sys.stderr)
        return 128 + sig
    return 0
