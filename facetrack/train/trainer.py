"""Training loop for MDM (``mdm``, ``mdm-rt``) and AAN (``aan``).

Samples are generated in the main process from the cached small images (about 0.8 ms each),
which keeps up with the model on a CPU. Loss: normalised point error (mean point distance over
the outer-eye-corner distance, points 36/45, crop px) summed over MDM's steps or over AAN's
final and intermediate heads, on face crops only; plus binary cross-entropy of the confidence
head (target 1 for a face crop whose final NME < 0.08, 0 for a negative or a worse fit).
Optimiser: AdamW (decoupled weight decay 1e-3), lr warm-up then cosine decay, gradients
clipped to norm 10.

Checkpoints ``last.pt`` / ``best.pt`` (see ``docs/ARCHITECTURE.md``) and ``config.json`` go to
the run folder; ``resume=True`` continues from ``last.pt`` with the optimiser and RNG states.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facetrack.tracker.geometry import FACE_FRACTION, to_input
from facetrack.tracker.markup import OUTER_EYE_CORNERS
from facetrack.tracker.metrics import THRESHOLD

from facetrack.train.augment import AugmentConfig, augment, mdm_init
from facetrack.train.checkpoint import load_checkpoint, save_checkpoint
from facetrack.train.datasets import CachedFace, FaceSample, build_cache, load_images68, load_pseudo_dlib, load_pseudo_v2, split_groups, split_train_val
from facetrack.train.models import build_model, config_for, config_to_dict

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """One training run. ``steps`` optimiser steps of ``batch`` samples; ``val_every`` steps
    between validations and checkpoints; ``human_weight``: sampling weight of a human-labelled
    face relative to a pseudo-labelled one; ``face_px``: face size of the cached images."""

    arch: str
    data: str
    out: str
    steps: int = 5000
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-3
    seed: int = 0
    val_every: int = 500
    resume: bool = False
    device: str = "auto"
    pseudo: bool = True
    pseudo_v2: bool = False  # add pseudo_v2's faces (a seeded share of its groups goes to validation)
    val_groups_fraction: float = 0.06
    threads: int = 0
    val_fraction: float = 0.1
    human_weight: float = 2.0
    confidence_weight: float = 0.2
    warmup: int = 200
    face_px: float = 2.0 * FACE_FRACTION * 112
    limit_images: int = 0  # use only the first N training faces (tests, overfit runs)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    val_variants: int = 8
    progress: bool = True
    command: str = ""
    p_template: float = 0.5  # MDM: share of face crops initialised from the template (else perturbed truth)
    output_lr_scale: float = 0.0  # lr factor of the coordinate-emitting layers; 0: default_output_lr_scale
    stop_at: int = 0  # stop (checkpointed) after this step though the schedule runs to ``steps``; 0: no stop
    init_from: str = ""  # warm start: weights of this checkpoint (same architecture), fresh optimiser and schedule


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA GPU available to PyTorch")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return torch.device(name)


def normalised_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-sample NME ``(N,)``: mean point distance over the outer-eye distance of ``gt``.

    ``pred``, ``gt``: ``(N, 68, 2)`` crop px.
    """
    d = torch.linalg.norm(gt[:, OUTER_EYE_CORNERS[0]] - gt[:, OUTER_EYE_CORNERS[1]], dim=-1).clamp_min(1e-3)
    return torch.linalg.norm(pred - gt, dim=-1).mean(-1) / d


@dataclass
class Batch:
    """Model inputs and targets (numpy; ``torch`` on demand).

    ``image`` ``(N, 1, S, S)`` f32 [0, 1]; ``gt`` / ``init`` ``(N, 68, 2)`` f32 crop px;
    ``is_face`` ``(N,)`` bool; ``from_template`` ``(N,)`` bool (MDM init kind)."""

    image: np.ndarray
    gt: np.ndarray
    init: np.ndarray
    is_face: np.ndarray
    from_template: np.ndarray


def make_batch(faces: list[CachedFace], idx: np.ndarray, size: int, rng: np.random.Generator,
               cfg: AugmentConfig, negatives: np.ndarray | None = None, p_template: float = 0.5) -> Batch:
    """Augment ``faces[idx]``; ``negatives``: per-sample bool (default: drawn with ``cfg.p_negative``).
    MDM negatives start from the template, positives from :func:`facetrack.train.augment.mdm_init` (the
    template with probability ``p_template``, else the perturbed ground truth)."""
    imgs, gts, inits, isf, tmpl = [], [], [], [], []
    for j, i in enumerate(idx):
        neg = None if negatives is None else bool(negatives[j])
        fc = augment(faces[int(i)], size, rng, cfg, negative=neg)
        if fc.is_face:
            init, t = mdm_init(fc.landmarks, size, rng, p_template=p_template)
        else:
            init, t = mdm_init(fc.landmarks, size, rng, p_template=1.0)
        imgs.append(to_input(fc.crop)[0])
        gts.append(fc.landmarks)
        inits.append(init)
        isf.append(fc.is_face)
        tmpl.append(t)
    return Batch(np.stack(imgs), np.stack(gts).astype(np.float32), np.stack(inits).astype(np.float32), np.array(isf), np.array(tmpl))


def forward_loss(model: nn.Module, batch: Batch, device: torch.device, confidence_weight: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """Loss of one batch and per-sample figures (``nme`` of the final shape, ``confidence``)."""
    image = torch.from_numpy(batch.image).to(device)
    gt = torch.from_numpy(batch.gt).to(device)
    is_face = torch.from_numpy(batch.is_face).to(device)
    if model.config.kind == "mdm":
        init = torch.from_numpy(batch.init).to(device)
        shapes, conf, _ = model.forward_steps(image, init, model.zero_hidden(len(image), device))
        final = shapes[-1]
        heads = shapes
    else:
        final, conf, inter = model.forward_train(image)
        heads = list(inter) + [final]
    nme_final = normalised_error(final, gt)
    pos = is_face.float()
    n_pos = pos.sum().clamp_min(1.0)
    lm_loss = sum((normalised_error(h, gt) * pos).sum() / n_pos for h in heads)
    with torch.no_grad():
        target = (is_face & (nme_final < THRESHOLD)).float()
    conf_loss = nn.functional.binary_cross_entropy(conf.clamp(1e-6, 1 - 1e-6), target)
    loss = lm_loss + confidence_weight * conf_loss
    return loss, {
        "nme": nme_final.detach().cpu().numpy(),
        "confidence": conf.detach().cpu().numpy(),
        "conf_loss": float(conf_loss.detach()),
        "lm_loss": float(lm_loss.detach()),
    }


def output_layers(model: nn.Module) -> list[nn.Linear]:
    """The linear layers that emit landmark coordinates (``n_points * 2`` outputs, crop px)."""
    n = 2 * model.config.n_points
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n]


def default_output_lr_scale(config: Any) -> float:
    """Measured on 4-8 real faces (loss after 20-30 steps, lr 1e-3): MDM's update layer learns
    best at about half the crop side (56 for S = 112; 1 barely moves it); AAN's heads, which read
    thousands of pooled features, overshoot at 56 and do best near 8."""
    return 8.0 if config.kind == "aan" else config.input_size / 2.0


def make_optimizer(model: nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay). The layers that emit crop-pixel coordinates get their
    learning rate scaled by ``opts.output_lr_scale`` (0: :func:`default_output_lr_scale`): Adam
    moves every weight by about ``lr`` per step whatever the units, so a layer predicting pixels
    with small initial weights learns its outputs very slowly at the common ``lr``."""
    scale = opts.output_lr_scale or default_output_lr_scale(model.config)
    out_ids = {id(p) for m in output_layers(model) for p in m.parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in out_ids], "lr_scale": 1.0},
        {"params": [p for p in model.parameters() if id(p) in out_ids], "lr_scale": float(scale)},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=opts.lr, weight_decay=opts.weight_decay)


def lr_at(step: int, opts: TrainOptions) -> float:
    """Linear warm-up over ``opts.warmup`` steps, then cosine decay to 2 % of ``opts.lr``."""
    warm = min(opts.warmup, max(1, opts.steps // 10))
    if step < warm:
        return opts.lr * (step + 1) / warm
    t = (step - warm) / max(1, opts.steps - warm)
    return opts.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


class Progress:
    """A one-line progress bar on stderr (a line every ``every`` steps when not a terminal)."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, every: int = 50) -> None:
        self.total, self.start, self.enabled = total, start, enabled
        self.tty = sys.stderr.isatty()
        self.every = 1 if self.tty else every
        self.t0 = time.perf_counter()

    def update(self, step: int, **figures: float) -> None:
        if not self.enabled or (step % self.every and step != self.total):
            return
        done = step - self.start
        rate = done / max(1e-9, time.perf_counter() - self.t0)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        width = 24
        fill = int(width * step / max(1, self.total))
        figs = " ".join(f"{k} {v:.4f}" for k, v in figures.items())
        line = f"[{'#' * fill}{'.' * (width - fill)}] {step}/{self.total} {figs} {rate:.2f} it/s eta {eta / 60:.1f} min"
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def load_faces(opts: TrainOptions) -> tuple[list[FaceSample], list[FaceSample]]:
    """``(train, val)`` samples: the human-labelled train pool minus a seeded validation share
    of its images, plus the pseudo-labelled faces unless ``opts.pseudo`` is off. Never test faces."""
    human = load_images68(opts.data, "train")
    train, val = split_train_val(human, opts.val_fraction, opts.seed)
    if opts.limit_images:
        train = train[: opts.limit_images]
    elif opts.pseudo:
        train = train + load_pseudo_dlib(opts.data)
    if opts.pseudo_v2 and not opts.limit_images:
        v2_train, v2_val = split_groups(load_pseudo_v2(opts.data), opts.val_groups_fraction, opts.seed)
        train, val = train + v2_train, val + v2_val
    return train, val


def validation_batch(val: list[CachedFace], size: int, variants: int, seed: int = 12345) -> Batch:
    """A fixed validation set: ``variants`` crops per face from a box-style crop (rotation
    ±15°, scale ±10 %, shift ±5 %, mirror, no photometric change), half with MDM's template
    initialisation and half with the tracking initialisation; no negatives. Same every call."""
    cfg = AugmentConfig(rotation_deg=15.0, scale=0.10, shift=0.05, p_box=1.0, photometric=False, p_negative=0.0)
    rng = np.random.default_rng(seed)
    idx = np.repeat(np.arange(len(val)), variants)
    b = make_batch(val, idx, size, rng, cfg, negatives=np.zeros(len(idx), bool))
    tmpl = np.tile(np.arange(variants) < variants // 2, len(val))
    from facetrack.tracker.geometry import template

    b.init[tmpl] = template(size)
    # the tracking half keeps its perturbed-ground-truth start (redraw where mdm_init chose the template)
    for k in np.flatnonzero(~tmpl & b.from_template):
        b.init[k], _ = mdm_init(b.gt[k], size, rng, p_template=0.0)
    b.from_template = tmpl
    return b


@torch.no_grad()
def validate(model: nn.Module, vb: Batch, device: torch.device, chunk: int = 32) -> dict[str, float]:
    """Mean NME of the final shape on the validation batch (and per MDM init kind)."""
    model.eval()
    nmes = []
    for s in range(0, len(vb.image), chunk):
        sl = slice(s, s + chunk)
        sub = Batch(vb.image[sl], vb.gt[sl], vb.init[sl], vb.is_face[sl], vb.from_template[sl])
        _, figs = forward_loss(model, sub, device, 0.0)
        nmes.append(figs["nme"])
    model.train()
    e = np.concatenate(nmes)
    out = {"val_nme": float(e.mean()), "val_failure": float((e > THRESHOLD).mean())}
    if model.config.kind == "mdm":
        out["val_nme_box"] = float(e[vb.from_template].mean())
        out["val_nme_track"] = float(e[~vb.from_template].mean())
    return out


class _StopOnSignal:
    """Within the block, SIGTERM / SIGINT set ``requested`` so the loop checkpoints and stops
    after the current step (only in the main thread; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopOnSignal":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return {"numpy": json.dumps(rng.bit_generator.state), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = json.loads(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _data_record(opts: TrainOptions, train: list[FaceSample], val: list[FaceSample]) -> dict[str, Any]:
    subsets: dict[str, int] = {}
    for s in train:
        subsets[s.subset] = subsets.get(s.subset, 0) + 1
    return {"train_faces": len(train), "val_faces": len(val), "subsets": subsets, "pseudo_dlib": any(s.source == "pseudo_dlib" for s in train),
            "pseudo_v2": sum(s.source == "pseudo_v2" for s in train),
            "val_images": sorted({Path(s.image).name for s in val if not s.group}), "val_groups": sorted({s.group for s in val if s.group}), "test_images_used": False}


def train(opts: TrainOptions) -> dict[str, Any]:
    """Run (or resume) training; returns the final metrics. Writes ``last.pt``, ``best.pt``,
    ``config.json`` and ``metrics.jsonl`` into ``opts.out``."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device(opts.device)
    rng = np.random.default_rng(opts.seed)

    cfg = config_for(opts.arch)
    size = cfg.input_size
    train_s, val_s = load_faces(opts)
    if not train_s:
        raise ValueError(f"{opts.data}: no training faces found")
    t0 = time.perf_counter()
    faces = build_cache(train_s, opts.face_px)
    val_faces = build_cache(val_s, opts.face_px) if val_s else []
    log.info("%d training faces, %d validation faces cached in %.1f s", len(faces), len(val_faces), time.perf_counter() - t0)
    vb = validation_batch(val_faces, size, opts.val_variants) if val_faces else None
    weights = np.array([opts.human_weight if f.sample.source == "human" else 1.0 for f in faces], np.float64)
    weights /= weights.sum()

    model = build_model(cfg).to(device)
    opt = make_optimizer(model, opts)
    step, best, history = 0, float("inf"), []
    last = out / "last.pt"
    if opts.resume:
        if not last.exists():
            raise FileNotFoundError(f"{last}: nothing to resume")
        ck = load_checkpoint(last, map_location=device).as_dict()
        if ck["arch"] != opts.arch:
            raise ValueError(f"{last}: checkpoint is {ck['arch']!r}, not {opts.arch!r}")
        if ck["config"] != config_to_dict(cfg):
            raise ValueError(f"{last}: checkpoint's architecture differs from the current {opts.arch!r} configuration "
                             f"({ck['config']} vs {config_to_dict(cfg)}); start a new run")
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        _set_rng_state(rng, ck["rng"])
        step = int(ck["step"])
        best = float(ck["metrics"].get("best_val_nme", float("inf")))
        history = list(ck["metrics"].get("history", []))
        log.info("resumed %s at step %d", last, step)
    else:
        if opts.init_from:
            ck = load_checkpoint(opts.init_from, map_location=device).as_dict()
            if ck.get("config") != config_to_dict(cfg):
                raise ValueError(f"{opts.init_from}: checkpoint's architecture differs from the current {opts.arch!r} configuration")
            model.load_state_dict(ck["state_dict"])
            log.info("warm start from %s (step %s of its run)", opts.init_from, ck.get("step"))
        (out / "metrics.jsonl").unlink(missing_ok=True)
    (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=1), encoding="utf-8")
    record = {"command": opts.command, "seed": opts.seed, "data": _data_record(opts, train_s, val_s),
              "options": {k: v for k, v in asdict(opts).items() if k not in ("augment",)}, "augment": asdict(opts.augment),
              "optimizer": "AdamW (decoupled weight decay)"}

    def save(path: Path, metrics: dict[str, Any]) -> None:
        save_checkpoint(path, model.state_dict(), config_to_dict(cfg), arch=opts.arch, step=step,
                        optimizer=opt.state_dict(), rng=_rng_state(rng), metrics=metrics,
                        command=opts.command, seed=opts.seed, data=record["data"])

    model.train()
    bar = Progress(opts.steps, step, opts.progress)
    ema_loss = ema_nme = None
    t_start = time.perf_counter()
    metrics: dict[str, Any] = {}
    end = min(opts.steps, opts.stop_at) if opts.stop_at else opts.steps
    stop = _StopOnSignal()
    with stop:
        while step < end and not stop.requested:
            idx = rng.choice(len(faces), size=opts.batch, p=weights)
            batch = make_batch(faces, idx, size, rng, opts.augment, p_template=opts.p_template)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, opts) * g.get("lr_scale", 1.0)
            loss, figs = forward_loss(model, batch, device, opts.confidence_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            step += 1
            pos_nme = float(figs["nme"][batch.is_face].mean()) if batch.is_face.any() else float("nan")
            loss_v = float(loss.detach())
            ema_loss = loss_v if ema_loss is None else 0.95 * ema_loss + 0.05 * loss_v
            ema_nme = pos_nme if ema_nme is None or not np.isfinite(ema_nme) else 0.95 * ema_nme + 0.05 * pos_nme
            bar.update(step, loss=ema_loss, nme=ema_nme)
            if step == 1 and not opts.resume:
                with (out / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": 1, "loss": loss_v, "train_nme": pos_nme}) + "\n")
            if step % opts.val_every == 0 or step == end or stop.requested:
                if stop.requested:
                    log.warning("stop requested (signal) at step %d: checkpointing", step)
                v = validate(model, vb, device) if vb is not None else {}
                entry = {"step": step, "loss": loss_v, "train_nme": pos_nme, "train_nme_ema": ema_nme, "lr": lr_at(step - 1, opts),
                         "elapsed_s": round(time.perf_counter() - t_start, 1), **v}
                history.append(entry)
                with (out / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")
                improved = "val_nme" in v and v["val_nme"] < best
                if improved:
                    best = v["val_nme"]
                metrics = {**entry, "best_val_nme": best, "history": history}
                save(last, metrics)
                if improved or not (out / "best.pt").exists():
                    save(out / "best.pt", metrics)
                log.info("step %d: %s", step, " ".join(f"{k}={val:.4f}" for k, val in entry.items() if isinstance(val, float)))
    bar.close()
    (out / "record.json").write_text(json.dumps({**record, "final": {k: v for k, v in metrics.items() if k != "history"}}, indent=1), encoding="utf-8")
    return metrics
