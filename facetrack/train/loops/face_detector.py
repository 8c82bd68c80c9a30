"""Train the project's small CNN face detector on ``frames_v2`` teacher boxes; export it to ONNX.

The network (:class:`FaceDetNet`) is a CenterNet-style anchor-free detector (Zhou et al.,
"Objects as Points", 2019) on the grey frame: depthwise-separable conv/BN/ReLU blocks down to
1/32, a top-down path back to 1/8 (so large faces are seen whole), and one head giving per cell
of stride 8 the face-centre score (sigmoid; focal loss on Gaussian-splatted centres), the
centre's sub-cell offset and the log box size (L1 at the centres). The runtime, torch-free, is
:mod:`facetrack.tracker.detect_cnn`; its stride is defined there, its tensor names in
:mod:`facetrack.engines.names`.

Data: ``frames_v2/boxes.jsonl`` split by ``group`` (:func:`split_groups`: whole groups on one
side, a fixed seed); faces of the training groups are positives, ``ignore`` boxes and faces too
small to place are left out of the loss, the no-face crops are negatives. Each sample is the
frame scaled as the runtime scales it (long side 320) times a random factor, rotated a little,
cut to the training window, maybe mirrored, with random brightness, contrast and blur.

Usage::

    python -m facetrack.train.loops.face_detector --data ../shared/data --out runs/det/train \\
        [--steps 6000] [--batch 16] [--heldout 0.15] [--seed 0] [--resume] [--export weights.onnx]

Checkpoints (``OUT/last.pt``, every ``--save-every`` steps and at the end or on Ctrl-C) resume
with ``--resume``; ``--export`` writes the ONNX file (with the training record in its metadata)
from the last checkpoint, and ``--steps 0 --resume --export F`` only exports.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facetrack.tracker.detect_cnn import INPUT, META_HELDOUT, META_PREFIX, OUTPUT, STRIDE, STRIDE_MULTIPLE

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]

#: training windows (width, height), one per batch: the runtime's 16:9 frames at long side 320
#: pad to 320x192, square frames to 320x320, portrait ones to 192x320
WINDOWS = ((320, 192), (256, 256), (192, 320))
#: the runtime's long side (``CnnFaceDetector.max_side``); samples are scaled around it
BASE_SIDE = 320
#: faces whose box side is under this in the input (px) are left out of the loss
MIN_FACE_PX = 8.0


# ---- data ------------------------------------------------------------------------------------
#: yaw added to the synthetic turned faces (degrees, away from the front; at most profile.MAX_YAW)
TURN_DEGREES = (25.0, 60.0)
def load_records(data: Path) -> list[dict]:
    """``frames_v2/boxes.jsonl`` records. ``ValueError`` naming the file when it is unreadable."""
    path = data / "frames_v2" / "boxes.jsonl"
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the frames_v2 records ({e})") from None


def split_groups(records: list[dict], heldout: float = 0.15, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training groups, held-out groups), sorted: the landmark trainer's rule
    (:func:`facetrack.train.data.datasets.held_out_groups`) on the records' groups. Whole groups on one side."""
    from facetrack.train.data.datasets import held_out_groups

    groups = {r["group"] for r in records}
    held = held_out_groups(groups, heldout, seed)
    return sorted(groups - held), sorted(held)


@dataclass
class Sample:
    """One frame: ``gray`` uint8 (H, W); ``faces`` and ``ignore`` (n, 4) float32 boxes in its pixels;
    ``source``: the picture a synthetic sample was made from (empty for frames_v2's own)."""

    gray: np.ndarray
    faces: np.ndarray
    ignore: np.ndarray
    source: str = ""


def load_samples(records: list[dict], root: Path) -> list[Sample]:
    """The frames of ``records`` (paths relative to ``root``, the ``frames_v2`` folder) in memory."""
    out = []
    for r in records:
        path = root / r["file"]
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise ValueError(f"{path}: cannot read image")
        faces = np.asarray([f["box"] for f in r["faces"]], np.float32).reshape(-1, 4)
        ignore = np.asarray(r.get("ignore", []), np.float32).reshape(-1, 4)
        out.append(Sample(gray, faces, ignore))
    return out


def turned_samples(data: Path, held_groups: set[str], n: int, seed: int = 0) -> list[Sample]:
    """``n`` synthetic turned faces for the detector (frames_v2 has 22 profile faces): faces of
    ``pseudo_v2`` outside the detector's held-out groups (the two sets name groups alike), each
    turned :data:`TURN_DEGREES` further by :class:`facetrack.train.data.profile.Profiler`. A face's box
    is the tight box of its turned landmarks mapped into the teachers' box convention by
    inverting the CNN's box calibration (which maps that convention to landmark boxes)."""
    from facetrack.tracker.detect import box_calibration
    from facetrack.tracker.geometry import box_of
    from facetrack.train.data.datasets import load_pseudo_v2
    from facetrack.train.data.profile import Profiler

    faces = [f for f in load_pseudo_v2(data) if f.group not in held_groups]
    if not faces:
        raise ValueError(f"{data / 'pseudo_v2'}: no faces outside the held-out groups to turn")
    profiler = Profiler.from_shapes([f.landmarks for f in faces])
    calib = box_calibration("detector:cnn")
    rng = np.random.default_rng([seed, 7])
    out = []
    for i in rng.choice(len(faces), size=n, replace=n > len(faces)):
        f = faces[int(i)]
        gray = cv2.imread(str(f.image), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise ValueError(f"{f.image}: cannot read image")
        t = profiler.random_turn(gray, f.landmarks, rng, *TURN_DEGREES)
        out.append(Sample(t.image, calib.invert(box_of(t.landmarks))[None].astype(np.float32), np.zeros((0, 4), np.float32), str(f.image)))
    return out


def _affine(sample: Sample, win: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, float, bool]:
    """A random similarity (2x3) from the frame into the window: scale about the runtime's
    (long side :data:`BASE_SIDE`) times 0.5-2, rotation within 10 degrees, a random placement,
    maybe a mirror. Returns (matrix, scale, mirrored)."""
    h, w = sample.gray.shape
    s = BASE_SIDE / max(h, w) * math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    a = math.radians(rng.uniform(-10, 10)) if rng.random() < 0.5 else 0.0
    flip = bool(rng.random() < 0.5)
    c, sn = s * math.cos(a), s * math.sin(a)
    m = np.array([[c, -sn, 0.0], [sn, c, 0.0]])
    if flip:
        m[0] = -m[0]
    # place a random point of the frame (a face's centre half the time) at a random point of the window
    if len(sample.faces) and rng.random() < 0.5:
        f = sample.faces[rng.integers(len(sample.faces))]
        src = np.array([(f[0] + f[2]) / 2, (f[1] + f[3]) / 2])
    else:
        src = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    dst = np.array([rng.uniform(0.15, 0.85) * win[0], rng.uniform(0.15, 0.85) * win[1]])
    m[:, 2] = dst - m[:, :2] @ src
    return m, s, flip


def _map_boxes(boxes: np.ndarray, m: np.ndarray, s: float) -> np.ndarray:
    """Boxes through the similarity: the centre mapped, the sides scaled (a rotated face's box
    stays upright, as the teachers draw it)."""
    if not len(boxes):
        return boxes.reshape(0, 4)
    c = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    c = c @ m[:, :2].T + m[:, 2]
    half = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1) * s / 2
    return np.concatenate([c - half, c + half], 1).astype(np.float32)


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32)
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    mean = float(x.mean())
    x = (x - mean) * rng.uniform(0.6, 1.4) + mean * rng.uniform(0.6, 1.4)
    if rng.random() < 0.3:
        x = x + rng.normal(0, rng.uniform(2, 8), x.shape)
    return np.clip(x, 0, 255)


def make_batch(samples: list[Sample], idx: np.ndarray, win: tuple[int, int], rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Images ``(B, 1, H, W)`` float32 0-255, target heatmaps ``(B, h, w)``, loss masks
    ``(B, h, w)`` (0 over ignored and cut faces), and per image the kept faces ``(n, 4)`` in
    input pixels."""
    W, H = win
    hs, ws = H // STRIDE, W // STRIDE
    imgs = np.empty((len(idx), 1, H, W), np.float32)
    heat = np.zeros((len(idx), hs, ws), np.float32)
    mask = np.ones((len(idx), hs, ws), np.float32)
    kept: list[np.ndarray] = []
    gy, gx = np.mgrid[0:hs, 0:ws].astype(np.float32)
    for b, i in enumerate(idx):
        smp = samples[i]
        m, s, _ = _affine(smp, win, rng)
        pad = float(rng.uniform(0, 255))
        img = cv2.warpAffine(smp.gray, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=pad)
        imgs[b, 0] = _photometric(img, rng)
        faces, ign = _map_boxes(smp.faces, m, s), _map_boxes(smp.ignore, m, s)
        good = []
        for f in faces:
            side = math.sqrt(max(1e-6, (f[2] - f[0]) * (f[3] - f[1])))
            vis_w = max(0.0, min(f[2], W) - max(f[0], 0.0)) * max(0.0, min(f[3], H) - max(f[1], 0.0))
            vis = vis_w / max(1e-6, (f[2] - f[0]) * (f[3] - f[1]))
            if vis <= 0:
                continue
            if side < MIN_FACE_PX or vis < 0.6:  # too small to place, or mostly cut off: no loss either way
                ign = np.concatenate([ign, f[None]], 0)
                continue
            good.append(f)
            cx, cy = (f[0] + f[2]) / 2 / STRIDE, (f[1] + f[3]) / 2 / STRIDE
            sigma = max(0.6, 0.12 * side / STRIDE)
            ix, iy = min(ws - 1, max(0, int(cx))), min(hs - 1, max(0, int(cy)))
            g = np.exp(-((gx - ix) ** 2 + (gy - iy) ** 2) / (2 * sigma ** 2))
            heat[b] = np.maximum(heat[b], g)
        for f in ign:
            x0, y0 = max(0, int(math.floor(f[0] / STRIDE))), max(0, int(math.floor(f[1] / STRIDE)))
            x1, y1 = min(ws, int(math.ceil(f[2] / STRIDE))), min(hs, int(math.ceil(f[3] / STRIDE)))
            if x1 > x0 and y1 > y0:
                mask[b, y0:y1, x0:x1] = 0.0
        for f in good:  # a kept face's own centre stays in the loss even inside an ignore box
            cx, cy = (f[0] + f[2]) / 2 / STRIDE, (f[1] + f[3]) / 2 / STRIDE
            ix, iy = min(ws - 1, max(0, int(cx))), min(hs - 1, max(0, int(cy)))
            mask[b, max(0, iy - 1):iy + 2, max(0, ix - 1):ix + 2] = 1.0
        kept.append(np.asarray(good, np.float32).reshape(-1, 4))
    return imgs, heat, mask, kept


# ---- model -----------------------------------------------------------------------------------
def build_model():
    """The detector network (:class:`FaceDetNet`), built on first use so this module imports
    without torch."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    def cbr(ci: int, co: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(ci, co, 3, stride, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True))

    def dws(ci: int, co: int, stride: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(ci, ci, 3, stride, 1, groups=ci, bias=False), nn.BatchNorm2d(ci), nn.ReLU(inplace=True),
                             nn.Conv2d(ci, co, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True))

    class FaceDetNet(nn.Module):
        """Grey ``(N, 1, H, W)`` 0-255 -> ``(N, 5, H/8, W/8)``: centre score (sigmoid), offset x, y
        (cells), log(width / 8), log(height / 8). ``H``, ``W`` multiples of 32."""

        def __init__(self) -> None:
            super().__init__()
            self.s4 = nn.Sequential(cbr(1, 16, 2), dws(16, 32, 2), dws(32, 32))
            self.s8 = nn.Sequential(dws(32, 64, 2), dws(64, 64))
            self.s16 = nn.Sequential(dws(64, 96, 2), dws(96, 96))
            self.s32 = nn.Sequential(dws(96, 128, 2), dws(128, 128), dws(128, 128))
            self.lat32, self.lat16, self.lat8 = nn.Conv2d(128, 64, 1), nn.Conv2d(96, 64, 1), nn.Conv2d(64, 64, 1)
            self.fuse16, self.fuse8 = dws(64, 64), dws(64, 64)
            self.head = nn.Sequential(dws(64, 64), nn.Conv2d(64, 5, 1))
            with torch.no_grad():  # start from a low face prior, as CenterNet does (focal loss is unstable otherwise)
                self.head[-1].bias.zero_()
                self.head[-1].bias[0] = -2.19
                self.head[-1].bias[3:] = 1.5

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            x = x * (1 / 127.5) - 1.0
            f8 = self.s8(self.s4(x))
            f16 = self.s16(f8)
            f32 = self.s32(f16)
            p = self.fuse16(self.lat16(f16) + F.interpolate(self.lat32(f32), scale_factor=2.0, mode="nearest"))
            p = self.fuse8(self.lat8(f8) + F.interpolate(p, scale_factor=2.0, mode="nearest"))
            y = self.head(p)
            return torch.cat([torch.sigmoid(y[:, :1]), y[:, 1:]], 1)

    return FaceDetNet()


def losses(out, heat, mask, faces: list[np.ndarray]):
    """(focal, offset, size) losses of a batch: the centre score by CenterNet's penalty-reduced
    focal loss (alpha 2, beta 4) over the unmasked cells, divided by the number of faces; the
    offset and log size by L1 at each face's centre cell."""
    import torch

    p = out[:, 0].clamp(1e-4, 1 - 1e-4)
    pos = (heat == 1.0).float()
    n = max(1.0, float(pos.sum()))
    focal = -(pos * (1 - p) ** 2 * torch.log(p) + (1 - pos) * (1 - heat) ** 4 * p ** 2 * torch.log(1 - p)) * mask
    focal = focal.sum() / n
    bi, yi, xi, tgt = [], [], [], []
    hs, ws = heat.shape[1:]
    for b, fs in enumerate(faces):
        for f in fs:
            cx, cy = (f[0] + f[2]) / 2 / STRIDE, (f[1] + f[3]) / 2 / STRIDE
            ix, iy = min(ws - 1, max(0, int(cx))), min(hs - 1, max(0, int(cy)))
            bi.append(b), yi.append(iy), xi.append(ix)
            tgt.append([cx - ix, cy - iy, math.log((f[2] - f[0]) / STRIDE), math.log((f[3] - f[1]) / STRIDE)])
    if not bi:
        zero = out.sum() * 0
        return focal, zero, zero
    pred = out[bi, 1:, yi, xi]
    tgt_t = torch.tensor(tgt, dtype=out.dtype)
    return focal, (pred[:, :2] - tgt_t[:, :2]).abs().mean(), (pred[:, 2:] - tgt_t[:, 2:]).abs().mean()


# ---- training --------------------------------------------------------------------------------
def git_commit() -> str:
    """The working tree's commit (``+dirty`` when tracked files differ), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "facetrack"],
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _numpy_scalars() -> list:
    """The globals a checkpoint written before the history held Python floats needs: numpy's
    scalar constructor and float dtypes (values rebuilt from bytes; no code runs)."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    return [scalar, np.dtype, *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64)}]


def load_checkpoint(path: Path) -> dict:
    """A ``last.pt`` of :func:`train`, read with ``torch.load(weights_only=True)``: tensors,
    numbers, strings, lists and dicts only (and numpy scalars, which older checkpoints' loss
    history holds), never pickled code, so a crafted file cannot run anything. Raises
    ``ValueError`` in one line naming the file for anything else."""
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_scalars()):
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - zip, pickle and weights-only errors of many kinds: one line
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        why = next((ln.strip() for ln in lines if "Unsupported global" in ln or "GLOBAL" in ln), lines[0] if lines else type(e).__name__)
        raise ValueError(f"{path}: not a face-detector checkpoint that loads as weights only (no pickled code): {why[:200]}") from None
    if not isinstance(ck, dict) or not {"model", "opt", "step", "record"} <= set(ck):
        raise ValueError(f"{path}: not a face-detector checkpoint (needs model, opt, step and record)")
    return ck


def train(data: Path, out: Path, steps: int, batch: int = 16, lr: float = 2e-3, heldout: float = 0.15, seed: int = 0,
          resume: bool = False, save_every: int = 250, log_every: int = 50, records: list[dict] | None = None,
          command: str | None = None, turned: float = 0.0, turned_faces: int = 1500) -> dict:
    """Train (or continue) to ``steps`` steps; checkpoint ``out/last.pt``. Returns the
    checkpoint dict (``model`` state, ``step``, ``record``: the facts the export stores).
    ``records``: frames_v2 records to use instead of all of ``data``'s (tests). ``turned``: share
    of a batch's samples drawn from ``turned_faces`` synthetic turned faces (:func:`turned_samples`;
    0: none, and the batches are those of before)."""
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    all_records = records if records is not None else load_records(data)
    train_groups, held_groups = split_groups(all_records, heldout, seed)
    tr = [r for r in all_records if r["group"] in set(train_groups)]
    samples = load_samples(tr, data / "frames_v2")
    extra = turned_samples(data, set(held_groups), turned_faces, seed) if turned > 0 else []
    pool = samples + extra  # indices past len(samples) are turned faces
    model = build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    step, history = 0, []
    record = {"command": command or "", "data": f"frames_v2/boxes.jsonl: {len(tr)} frames of {len(train_groups)} training groups "
              f"({sum(len(s.faces) for s in samples)} faces, {sum(r['kind'] == 'no_face_crop' for r in tr)} no-face crops)",
              "split": f"split_groups(heldout={heldout}, seed={seed}): {len(held_groups)} of {len(train_groups) + len(held_groups)} groups held out",
              "heldout_groups": json.dumps(held_groups), "seed": str(seed), "batch": str(batch), "lr": str(lr),
              "git_commit": git_commit(), "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if turned > 0:
        record["turned"] = (f"{turned:g} of each batch from {len(extra)} pseudo_v2 faces outside the held-out groups, "
                            f"turned {TURN_DEGREES[0]:g}-{TURN_DEGREES[1]:g} degrees further (facetrack.train.data.profile)")
    if resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        if json.loads(ck["record"]["heldout_groups"]) != held_groups:
            raise ValueError(f"{ckpt_path}: trained on another split (heldout/seed differ); use another --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, history = ck["step"], ck.get("history", [])
        resumed = f"at step {step}: {record['command']} (git {record['git_commit']}, {record['started']})"
        record = {**ck["record"], **({"turned": record["turned"]} if "turned" in record else {}), "git_commit": record["git_commit"],
                  "resumed": "; ".join(x for x in (ck["record"].get("resumed", ""), resumed) if x)}
        log.info("resumed %s at step %d", ckpt_path, step)
    rng = np.random.default_rng(seed + step)  # a resumed run draws new batches, not the first ones again
    total = max(steps, 1)

    def save() -> dict:
        ck = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "history": history,
              "record": {**record, "steps": str(step), "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}}
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(ck, tmp)
        tmp.replace(ckpt_path)
        return ck

    model.train()
    t0, acc, n_acc = time.process_time(), np.zeros(4), 0
    try:
        while step < steps:
            for g in opt.param_groups:  # linear warm-up, cosine decay to 5 %
                g["lr"] = lr * min(1.0, (step + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / total)))
            win = WINDOWS[rng.integers(len(WINDOWS))]
            idx = rng.integers(len(samples), size=batch)
            if extra:  # drawn only with turned faces, so runs without them keep their batches
                pick = rng.random(batch) < turned
                idx = np.where(pick, len(samples) + rng.integers(len(extra), size=batch), idx)
            imgs, heat, mask, faces = make_batch(pool, idx, win, rng)
            out_t = model(torch.from_numpy(imgs))
            lf, lo, ls = losses(out_t, torch.from_numpy(heat), torch.from_numpy(mask), faces)
            loss = lf + lo + ls
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            acc += [loss.item(), lf.item(), lo.item(), ls.item()]
            n_acc += 1
            if step % log_every == 0 or step == steps:
                k, n_acc = n_acc, 0
                m = acc / k
                history.append({"step": step, "loss": float(m[0]), "focal": float(m[1]), "offset": float(m[2]), "size": float(m[3])})
                log.info("step %d loss %.4f (focal %.4f offset %.4f size %.4f) %.2f s CPU/step", step, *m,
                         (time.process_time() - t0) / k)
                acc[:], t0 = 0, time.process_time()
            if step % save_every == 0:
                save()
    except KeyboardInterrupt:
        log.warning("interrupted at step %d; checkpoint saved to %s", step, ckpt_path)
        save()
        raise
    return save()


def export(ckpt: dict, path: Path, extra: dict[str, str] | None = None) -> Path:
    """Write the checkpoint's model to ONNX at ``path`` (input :data:`INPUT`, output
    :data:`OUTPUT`, dynamic batch and sides; the training record in ``facetrack.detector.*``
    metadata), after checking ONNX Runtime against PyTorch (max |diff| under 1e-3)."""
    import tempfile
    import warnings

    import onnx
    import onnxruntime as ort
    import torch

    model = build_model()
    model.load_state_dict(ckpt["model"])
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 1, 192, 320)).astype(np.float32))
    with tempfile.TemporaryDirectory(prefix="facetrack-det-") as tmp:
        tmp_path = Path(tmp) / "det.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(tmp_path), input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"}, OUTPUT: {0: "batch", 2: "h8", 3: "w8"}},
                              opset_version=17, do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(tmp_path))
        meta = {META_PREFIX + k: str(v) for k, v in {**ckpt["record"], **(extra or {})}.items()}
        meta[META_PREFIX + "stride"] = str(STRIDE)
        meta[META_PREFIX + "stride_multiple"] = str(STRIDE_MULTIPLE)
        assert META_HELDOUT in meta
        del proto.metadata_props[:]
        for k, v in sorted(meta.items()):
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp_path))
        sess = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        for shape in ((1, 1, 192, 320), (2, 1, 320, 256)):
            xi = np.random.default_rng(1).uniform(0, 255, shape).astype(np.float32)
            with torch.no_grad():
                ref = model(torch.from_numpy(xi)).numpy()
            got = sess.run([OUTPUT], {INPUT: xi})[0]
            diff = float(np.abs(ref - got).max())
            if not diff < 1e-3:
                raise RuntimeError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.2e} on {shape}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tmp_path.read_bytes())
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facetrack.train.loops.face_detector", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder (holds frames_v2)")
    ap.add_argument("--out", type=Path, required=True, help="folder for last.pt and the log")
    ap.add_argument("--steps", type=int, default=6000, help="total optimiser steps (a resumed run continues to this)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--heldout", type=float, default=0.15, help="share of frames_v2 groups held out (default 0.15)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    ap.add_argument("--export", type=Path, default=None, help="write the ONNX model here at the end")
    ap.add_argument("--turned", type=float, default=0.0, metavar="SHARE",
                    help="share of each batch drawn from synthetic turned faces (pseudo_v2 faces turned 25-60 degrees further; default 0)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = "python -m facetrack.train.loops.face_detector " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        ck = train(args.data, args.out, args.steps, args.batch, args.lr, args.heldout, args.seed, args.resume,
                   args.save_every, args.log_every, command=command, turned=args.turned)
        if args.export:
            export(ck, args.export)
            print(f"wrote {args.export} (step {ck['step']})")
    except (ValueError, FileNotFoundError) as e:
        print(f"face_detector: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
