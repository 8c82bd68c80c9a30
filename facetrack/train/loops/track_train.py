"""Roll-out training of MDM on its own tracking starts (issue 13: exposure bias).

The first training stage (:mod:`facetrack.train.loops.trainer`) starts MDM from the template or from
the ground truth plus about 1 % noise. When tracking, MDM starts from its own previous fit, whose
errors are larger and structured (a jaw that slid, a mouth that lags), and those errors feed
back frame after frame: the model drifts. This stage fine-tunes a trained MDM on the starts it
makes itself:

1. Draw ``batch`` sequences (:mod:`facetrack.train.data.sequences`: still faces under smooth random
   similarity motion, and consecutive frames of ``pseudo_v2`` video faces).
2. Frame 0 is fitted from a jittered box (MDM from the template, as after a detection). Every
   later frame is cropped around the previous fit (:func:`facetrack.tracker.geometry.crop_from_shape`)
   and MDM starts from the previous fit mapped into that crop: exactly the tracker's
   ``--track-init shape``.
3. The current model rolls the sequences forward without gradients for a random number of
   burn-in frames (so its own accumulated error is in the starts), then ``window`` frames are
   unrolled with gradients (truncated back-propagation: the previous fit feeds the next start
   inside the window; the burn-in is cut off). Each window frame's loss is MDM's usual one
   (normalised point error summed over its steps) plus the confidence's binary cross-entropy
   against the outcome (fit under 0.08 NME or not), so the confidence learns from the model's
   own tracking outcomes, drifted fits included.
4. A share ``p_drift`` of the sequences get a drifted start injected in the window (the
   previous fit deformed or displaced as a drifting tracker's would be): the model learns to
   recover from it, and the confidence to flag it where it does not.
5. A batch of ordinary augmented crops (template and perturbed-truth starts, negatives) is
   trained with every step, so fitting from a detector's box is not forgotten.

``carry_hidden``: pass the recurrent state from frame to frame (at run time the state is an
input and output of the exported model but the landmarker feeds zeros); off by default, see
the README for the measurement.

Checkpoints (``last.pt``, ``best.pt`` by validation drift-aware NME) use
:func:`facetrack.train.models.checkpoint.save_checkpoint`, so ``facetrack export`` and
``python -m facetrack.train.export.ship`` take them as they take the first stage's.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from facetrack.tracker.geometry import apply_affine, box_of, crop_from_box, crop_from_shape, face_size, invert_affine, template, to_input
from facetrack.eval.metrics import THRESHOLD

from facetrack.train.data.augment import AugmentConfig
from facetrack.train.models.checkpoint import load_checkpoint, save_checkpoint
from facetrack.train.data.datasets import CachedFace, build_cache, load_images68, load_pseudo_dlib, load_pseudo_v2, split_groups, split_train_val
from facetrack.train.models.registry import config_to_dict
from facetrack.train.data.sequences import Sequence, SequenceSource, read_manifest_columns, video_tracks
from facetrack.train.loops.trainer import (Progress, TrainOptions, _StopOnSignal, _rng_state, _set_rng_state, forward_loss, lr_at,
                                     make_batch, make_optimizer, normalised_error, pick_device)

log = logging.getLogger(__name__)


@dataclass
class TrackTrainOptions:
    """One fine-tuning run. ``init``: the first stage's checkpoint (MDM kind). ``batch``:
    sequences per step; ``burn_in``: the most frames rolled forward without gradients before
    the window (drawn uniformly from 0..burn_in each step); ``window``: frames unrolled with
    gradients; ``still_batch``: ordinary augmented crops trained with each step;
    ``p_video``: share of sequences from ``pseudo_v2`` videos; ``p_drift``: share of sequences
    with a drifted start injected; ``box_jitter``: frame 0's box error (fraction of the face)."""

    init: str
    data: str
    out: str
    steps: int = 1500
    batch: int = 8
    burn_in: int = 12
    window: int = 3
    still_batch: int = 8
    lr: float = 2e-4
    warmup: int = 50
    weight_decay: float = 1e-3
    confidence_weight: float = 0.5
    p_video: float = 0.5
    p_drift: float = 0.15
    box_jitter: float = 0.08
    carry_hidden: bool = False
    seed: int = 0
    val_every: int = 100
    val_sequences: int = 24
    val_frames: int = 30
    resume: bool = False
    threads: int = 0
    device: str = "cpu"
    progress: bool = True
    command: str = ""
    stop_at: int = 0
    limit: int = 0  # tests: only the first N pseudo_v2 faces, no pseudo_dlib


# --------------------------------------------------------------------------------------------
# Rolling a model over sequences


def _affine_t(m: np.ndarray, pts: torch.Tensor) -> torch.Tensor:
    """``(2, 3)`` affine (numpy) applied to ``(68, 2)`` torch points (differentiable in ``pts``)."""
    a = torch.from_numpy(np.asarray(m, np.float32))
    return pts @ a[:, :2].T + a[:, 2]


def drifted(shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A drifting tracker's start made from a fit ``(68, 2)`` (frame px): one of a jaw that
    slid off (the contour points pushed outwards and down), a shape displaced by 0.15-0.5 of the
    face size, or a smooth random deformation of up to 0.25 face size."""
    s = np.asarray(shape, np.float64).copy()
    side = face_size(s)
    kind = int(rng.integers(3))
    if kind == 0:
        c = s.mean(0)
        jaw = slice(0, 17)
        s[jaw] = c + (s[jaw] - c) * rng.uniform(1.15, 1.5) + np.array([0.0, rng.uniform(0.0, 0.3) * side])
    elif kind == 1:
        a = rng.uniform(0, 2 * np.pi)
        s += rng.uniform(0.15, 0.5) * side * np.array([np.cos(a), np.sin(a)])
    else:
        c = s.mean(0)
        u = (s - c) / side
        coef = rng.normal(0.0, 1.0, (2, 3))
        field = np.stack([coef[k, 0] * u[:, 0] + coef[k, 1] * u[:, 1] + coef[k, 2] * u[:, 0] * u[:, 1] for k in range(2)], 1)
        field *= rng.uniform(0.08, 0.25) * side / max(1e-6, np.abs(field).max())
        s += field
    return s.astype(np.float32)


@dataclass
class RollOut:
    """Per-frame figures of a roll-out: ``nme`` ``(B, T)``, ``confidence`` ``(B, T)``, ``pred``
    ``(B, T, 68, 2)`` frame px; ``loss``: the window's loss (a tensor; 0 without a window)."""

    nme: np.ndarray
    confidence: np.ndarray
    pred: np.ndarray
    loss: torch.Tensor
    hidden: np.ndarray | None = None


def roll_out(model: nn.Module, seqs: list[Sequence], rng: np.random.Generator, *, window_from: int | None = None,
             init: str = "shape", carry_hidden: bool = False, box_jitter: float = 0.08, drift_at: dict[int, int] | None = None,
             confidence_weight: float = 0.5, keep_hidden: bool = False,
             start_transform: Callable[[np.ndarray], np.ndarray] | None = None) -> RollOut:
    """Track ``seqs`` (all the same length) with ``model`` as the tracker would.

    ``window_from``: frames from this index on are run with gradients and give the loss (None:
    no gradients at all). ``init``: ``"shape"`` (MDM from the previous fit) or ``"template"``
    (MDM from the template in the crop aligned on the previous fit). ``drift_at``: sequence
    index -> frame at which its start is replaced by :func:`drifted` of the previous fit.
    ``keep_hidden``: also return the final hidden state of every fit ``(B, T, H)``.
    ``start_transform(previous fit)``: with ``init="shape"``, MDM starts from this map of each
    previous fit (``(68, 2)`` frame px) in the crop aligned on the fit itself, as the tracker's
    shape constraint does (:meth:`facetrack.tracker.shape_model.ShapeModel.project`); no
    gradient flows through it.
    """
    size = model.config.input_size
    n, frames = len(seqs), len(seqs[0])
    tmpl = torch.from_numpy(template(size).copy())
    nmes = np.zeros((n, frames))
    confs = np.zeros((n, frames))
    preds = np.zeros((n, frames, 68, 2), np.float32)
    hiddens = [] if keep_hidden else None
    loss = torch.zeros(())
    prev_t: list[torch.Tensor | None] = [None] * n  # previous fit, frame px, with its graph inside the window
    h = model.zero_hidden(n)
    for t in range(frames):
        grad = window_from is not None and t >= window_from
        mats, inits, imgs, gts = [], [], [], []
        for i, s in enumerate(seqs):
            gt = s.landmarks(t)
            if t == 0:
                b = box_of(gt).astype(np.float64)
                w, hh = b[2] - b[0], b[3] - b[1]
                m = crop_from_box(b + rng.uniform(-box_jitter, box_jitter, 4) * np.array([w, hh, w, hh]), size)
                start = tmpl
            else:
                p = prev_t[i]
                p_np = p.detach().numpy()
                if drift_at is not None and drift_at.get(i) == t:
                    p_np = drifted(p_np, rng)
                    p = torch.from_numpy(p_np)
                m = crop_from_shape(p_np, size)
                if init == "shape" and start_transform is not None:
                    p = torch.from_numpy(np.asarray(start_transform(p_np), np.float32))
                start = _affine_t(m, p if grad else p.detach()) if init == "shape" else tmpl
            mats.append(m)
            inits.append(start)
            imgs.append(to_input(s.crop(t, m, size))[0])
            gts.append(apply_affine(m, gt))
        image = torch.from_numpy(np.stack(imgs))
        init_shape = torch.stack(inits).float()
        gt_t = torch.from_numpy(np.stack(gts))
        h_in = h if carry_hidden and t > 0 else model.zero_hidden(n)
        with torch.set_grad_enabled(grad):
            shapes, conf, h_out = model.forward_steps(image, init_shape if grad else init_shape.detach(), h_in if grad else h_in.detach())
            final = shapes[-1]
            e = normalised_error(final, gt_t)
            if grad:
                lm = sum(normalised_error(sh, gt_t).mean() for sh in shapes)
                target = (e.detach() < THRESHOLD).float()
                bce = nn.functional.binary_cross_entropy(conf.clamp(1e-6, 1 - 1e-6), target)
                loss = loss + lm + confidence_weight * bce
        h = h_out if grad else h_out.detach()
        if keep_hidden:
            hiddens.append(h_out.detach().numpy().copy())
        for i, m in enumerate(mats):
            pf = _affine_t(invert_affine(m), final[i] if grad else final[i].detach())
            prev_t[i] = pf
            preds[i, t] = pf.detach().numpy()
        nmes[:, t] = e.detach().numpy()
        confs[:, t] = conf.detach().numpy()
    if window_from is not None:
        loss = loss / max(1, frames - window_from)
    hid = np.stack(hiddens, 1) if keep_hidden else None
    return RollOut(nmes, confs, preds, loss, hid)


# --------------------------------------------------------------------------------------------
# Data


@dataclass
class TrackData:
    """Cached faces for training and validation: ``stills`` (+ sampling ``weights``),
    ``video_faces`` with ``tracks`` (indices into it, frame order), and the same for validation."""

    stills: list[CachedFace]
    weights: np.ndarray
    video_faces: list[CachedFace]
    tracks: list[list[int]]
    val_stills: list[CachedFace]
    val_video_faces: list[CachedFace]
    val_tracks: list[list[int]]
    record: dict[str, Any]


def load_track_data(data: str, face_px: float = 2.0 * 0.55 * 112, seed: int = 0, val_fraction: float = 0.1,
                    val_groups_fraction: float = 0.06, human_weight: float = 4.0, limit: int = 0) -> TrackData:
    """The first stage's split (same seeded hold-out of human images and of ``pseudo_v2`` groups,
    so validation faces were never trained on by either stage); never test faces."""
    human = load_images68(data, "train")
    train_h, val_h = split_train_val(human, val_fraction, seed)
    v2 = load_pseudo_v2(data)
    v2_train, v2_val = split_groups(v2, val_groups_fraction, seed)
    if limit:
        v2_train, v2_val = v2_train[:limit], v2_val[: max(4, limit // 4)]
    cols = read_manifest_columns(data)
    tr_tracks = video_tracks(v2_train, cols["source"], cols["track"])
    va_tracks = video_tracks(v2_val, cols["source"], cols["track"])
    pd = [] if limit else load_pseudo_dlib(data)
    stills_s = train_h + pd + v2_train
    stills = build_cache(stills_s, face_px)
    weights = np.array([human_weight if f.sample.source == "human" else 1.0 for f in stills], np.float64)
    weights /= weights.sum()
    # video faces are the pseudo_v2 part of the still cache (same order as v2_train)
    off = len(train_h) + len(pd)
    video_faces = stills[off:]
    val_cache = build_cache(val_h + v2_val, face_px)
    record = {"train_stills": len(stills), "train_video_tracks": len(tr_tracks), "train_video_frames": sum(map(len, tr_tracks)),
              "val_stills": len(val_cache), "val_video_tracks": len(va_tracks), "val_groups": sorted({s.group for s in v2_val}),
              "val_images": sorted({Path(s.image).name for s in val_h}), "test_images_used": False}
    return TrackData(stills, weights, video_faces, tr_tracks, val_cache, val_cache[len(val_h):], va_tracks, record)


def validation_sequences(d: TrackData, n: int, frames: int, seed: int = 4321) -> list[Sequence]:
    """A fixed set of held-out sequences: half video tracks of held-out groups, half held-out stills."""
    src = SequenceSource(d.val_stills, d.val_video_faces, d.val_tracks, p_video=0.5)
    rng = np.random.default_rng(seed)
    return [src.draw(frames, rng) for _ in range(n)]


@torch.no_grad()
def validate_tracking(model: nn.Module, seqs: list[Sequence], carry_hidden: bool = False, seed: int = 99) -> dict[str, float]:
    """Mean NME of tracking the validation sequences from the previous fit (``shape``) and from
    the template (``template``), drift (mean of the last 5 frames minus the first 5), and the
    confidence's AUC at telling fits under 0.08 from the rest."""
    from facetrack.train.loops.confidence import roc_auc

    model.eval()
    out: dict[str, float] = {}
    for mode in ("shape", "template"):
        r = roll_out(model, seqs, np.random.default_rng(seed), init=mode, carry_hidden=carry_hidden and mode == "shape")
        out[f"val_{mode}_nme"] = float(r.nme.mean())
        out[f"val_{mode}_drift"] = float((r.nme[:, -5:].mean(1) - r.nme[:, :5].mean(1)).mean())
        if mode == "shape":
            out["val_shape_failure"] = float((r.nme > THRESHOLD).mean())
            out["val_conf_auc"] = roc_auc(r.confidence.ravel(), r.nme.ravel() < THRESHOLD)
    model.train()
    return out


# --------------------------------------------------------------------------------------------
# Training


def train_tracking(opts: TrackTrainOptions) -> dict[str, Any]:
    """Run (or resume) the roll-out fine-tuning; returns the final metrics. Writes ``last.pt``,
    ``best.pt``, ``metrics.jsonl`` and ``record.json`` into ``opts.out``."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    device = pick_device(opts.device)
    if device.type != "cpu":
        raise ValueError("the roll-out stage runs on the CPU (its crops are made frame by frame in numpy)")
    rng = np.random.default_rng(opts.seed)
    last = out / "last.pt"
    src_ck = load_checkpoint(last if opts.resume else opts.init)
    if opts.resume and not last.exists():
        raise FileNotFoundError(f"{last}: nothing to resume")
    model = src_ck.build_model()
    if model.config.kind != "mdm":
        raise ValueError(f"{src_ck.path}: roll-out training is for MDM models, not {model.config.kind!r}")
    arch = src_ck.arch
    base = TrainOptions(arch=arch, data=opts.data, out=opts.out, steps=opts.steps, lr=opts.lr, warmup=opts.warmup,
                        weight_decay=opts.weight_decay, seed=opts.seed)
    opt = make_optimizer(model, base)
    step, best, history = 0, float("inf"), []
    if opts.resume:
        m = src_ck.meta
        opt.load_state_dict(m["optimizer"])
        _set_rng_state(rng, m["rng"])
        step = int(m["step"])
        best = float(m["metrics"].get("best", float("inf")))
        history = list(m["metrics"].get("history", []))
        init_path = m.get("init_from", opts.init)
        log.info("resumed %s at step %d", last, step)
    else:
        init_path = str(opts.init)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    t0 = time.perf_counter()
    d = load_track_data(opts.data, limit=opts.limit)
    log.info("%d still faces, %d video tracks (%d frames); validation %d faces, %d tracks; cached in %.1f s",
             len(d.stills), len(d.tracks), sum(map(len, d.tracks)), len(d.val_stills), len(d.val_tracks), time.perf_counter() - t0)
    source = SequenceSource(d.stills, d.video_faces, d.tracks, opts.p_video, d.weights)
    val_seqs = validation_sequences(d, opts.val_sequences, opts.val_frames)
    record = {"command": opts.command, "init_from": init_path, "init_step": src_ck.step, "options": asdict(opts), "data": d.record,
              "stage": "track (roll-out on own starts, facetrack.train.loops.track_train)"}
    size = model.config.input_size
    aug = AugmentConfig()

    def save(path: Path, metrics: dict[str, Any]) -> None:
        save_checkpoint(path, model.state_dict(), config_to_dict(model.config), arch=arch, step=step, optimizer=opt.state_dict(),
                        rng=_rng_state(rng), metrics=metrics, command=opts.command, seed=opts.seed, data=d.record,
                        init_from=init_path, stage="track")

    if step == 0 and not opts.resume:
        v = validate_tracking(model, val_seqs, opts.carry_hidden)
        entry = {"step": 0, **v}
        history.append(entry)
        with (out / "metrics.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        log.info("step 0 (the initial model): %s", " ".join(f"{k}={x:.4f}" for k, x in v.items()))
    model.train()
    end = min(opts.steps, opts.stop_at) if opts.stop_at else opts.steps
    bar = Progress(opts.steps, step, opts.progress, every=10)
    ema = None
    metrics: dict[str, Any] = {}
    stop = _StopOnSignal()
    t_start = time.perf_counter()
    with stop:
        while step < end and not stop.requested:
            burn = int(rng.integers(0, opts.burn_in + 1))
            frames = burn + opts.window + 1  # frame 0 is the box fit
            seqs = [source.draw(frames, rng) for _ in range(opts.batch)]
            drift_at = {i: int(rng.integers(burn + 1, frames)) for i in range(opts.batch) if rng.random() < opts.p_drift}
            for g in opt.param_groups:
                g["lr"] = lr_at(step, base) * g.get("lr_scale", 1.0)
            r = roll_out(model, seqs, rng, window_from=burn + 1, carry_hidden=opts.carry_hidden, box_jitter=opts.box_jitter,
                         drift_at=drift_at, confidence_weight=opts.confidence_weight)
            loss = r.loss
            if opts.still_batch:
                idx = rng.choice(len(d.stills), size=opts.still_batch, p=d.weights)
                sb = make_batch(d.stills, idx, size, rng, aug, p_template=0.5)
                l2, _ = forward_loss(model, sb, device, opts.confidence_weight)
                loss = loss + l2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            step += 1
            win = float(r.nme[:, burn + 1 :].mean())
            ema = win if ema is None else 0.9 * ema + 0.1 * win
            bar.update(step, loss=float(loss.detach()), track_nme=ema)
            if step % opts.val_every == 0 or step == end or stop.requested:
                v = validate_tracking(model, val_seqs, opts.carry_hidden)
                entry = {"step": step, "loss": float(loss.detach()), "train_track_nme_ema": ema, "lr": lr_at(step - 1, base),
                         "elapsed_s": round(time.perf_counter() - t_start, 1), **v}
                history.append(entry)
                with (out / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")
                # selection: tracking NME from the previous fit plus the template mode's (fitting
                # from a box must not get worse)
                score = v["val_shape_nme"] + 0.5 * v["val_template_nme"]
                improved = score < best
                best = min(best, score)
                metrics = {**entry, "best": best, "history": history}
                save(last, metrics)
                if improved or not (out / "best.pt").exists():
                    save(out / "best.pt", metrics)
                log.info("step %d: %s", step, " ".join(f"{k}={x:.4f}" for k, x in entry.items() if isinstance(x, float)))
    bar.close()
    (out / "record.json").write_text(json.dumps({**record, "final": {k: v for k, v in metrics.items() if k != "history"}}, indent=1,
                                                default=str), encoding="utf-8")
    return metrics


def add_arguments(parser: Any) -> None:
    """Options of ``facetrack train-track``."""
    parser.add_argument("init", type=Path, help="the first stage's MDM checkpoint (e.g. runs/mdm-rt/best.pt)")
    parser.add_argument("--data", required=True, type=Path, help="the shared data folder (images68/, pseudo_dlib/, pseudo_v2/)")
    parser.add_argument("--out", required=True, type=Path, help="run folder for checkpoints and logs")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps (default 1500)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step (default 8)")
    parser.add_argument("--burn-in", type=int, default=12, help="most frames rolled out without gradients before the window (default 12)")
    parser.add_argument("--window", type=int, default=3, help="frames unrolled with gradients (default 3)")
    parser.add_argument("--still-batch", type=int, default=8, help="ordinary augmented crops per step (default 8)")
    parser.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (default 2e-4)")
    parser.add_argument("--carry-hidden", action="store_true", help="carry MDM's recurrent state from frame to frame")
    parser.add_argument("--p-drift", type=float, default=0.15, help="share of sequences given a drifted start (default 0.15)")
    parser.add_argument("--val-every", type=int, default=100, help="steps between validations and checkpoints (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="PyTorch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--stop-at", type=int, default=0, help="stop (checkpointed) at this step; the schedule still runs to --steps")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: Any) -> int:
    """``facetrack train-track``; returns the exit code."""
    import shlex
    import sys

    for name in ("steps", "batch", "window", "val_every"):
        if getattr(args, name) < 1:
            print(f"facetrack train-track: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if not (args.data / "images68").is_dir():
        print(f"facetrack train-track: {args.data}: no images68/ folder (expected the shared data folder)", file=sys.stderr)
        return 2
    command = "facetrack " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "train-track" in sys.argv else ""
    opts = TrackTrainOptions(init=str(args.init), data=str(args.data), out=str(args.out), steps=args.steps, batch=args.batch,
                             burn_in=args.burn_in, window=args.window, still_batch=args.still_batch, lr=args.lr,
                             carry_hidden=args.carry_hidden, p_drift=args.p_drift, val_every=args.val_every, seed=args.seed,
                             threads=args.threads, stop_at=args.stop_at, resume=args.resume, progress=not args.quiet, command=command)
    try:
        metrics = train_tracking(opts)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        print(f"facetrack train-track: {e}", file=sys.stderr)
        return 2
    figs = {k: v for k, v in metrics.items() if isinstance(v, float)}
    print(f"{args.out}: step {metrics.get('step')} " + " ".join(f"{k} {v:.4f}" for k, v in figs.items()))
    return 0
