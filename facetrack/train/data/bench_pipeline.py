"""Does the data pipeline keep the model busy? Samples/s of the pipeline alone beside the
model's training step, on this machine.

    python -m facetrack.train.data.bench_pipeline --data-root ../shared/data --arch mdm-rt \\
        [--data images68:4 pseudo_dlib pseudo_v2] [--workers 0 2] [--batch 16] [--steps 30] [--threads 1]

Pipeline: :class:`facetrack.train.data.pipeline.TrainingFaces` through ``DataLoader`` with each
``--workers`` value (lazy decoding from disk and full augmentation, as in training), after one
warm-up batch; model: forward + backward + AdamW step of ``--arch`` on one batch, ``--threads``
PyTorch threads. Wall time and the main process's CPU time; medians are not needed here, the
figures are rates over ``--steps`` batches. The pipeline keeps up when its samples/s exceed the
model's with the workers the machine can spare.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch


def pipeline_rate(dataset, weights: np.ndarray, batch: int, steps: int, workers: int) -> tuple[float, float]:
    """``(samples/s wall, main-process CPU s per sample)`` over ``steps`` batches."""
    from facetrack.train.data.pipeline import StepBatches, make_loader

    it = iter(make_loader(dataset, StepBatches(weights, batch, 0, 0, steps + 1), workers))
    next(it)  # warm-up: worker start, first decode
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for b in it:
        n += len(b[0])
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / max(1, n)


def model_rate(arch: str, dataset, batch: int, steps: int) -> tuple[float, float]:
    """``(ms per step wall, samples/s)`` of the training step on one fixed batch."""
    from facetrack.train.models.registry import build_model
    from facetrack.train.loops.trainer import Batch, TrainOptions, forward_loss, make_optimizer

    items = [dataset[(i % len(dataset), i)] for i in range(batch)]
    b = Batch(*(np.stack([x[k] for x in items]) for k in range(5)))
    model = build_model(arch)
    opt = make_optimizer(model, TrainOptions(arch=arch, data="", out=""))
    dev = torch.device("cpu")
    for _ in range(2):
        loss, _ = forward_loss(model, b, dev, 0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss, _ = forward_loss(model, b, dev, 0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ms = (time.perf_counter() - t0) / steps * 1e3
    return ms, batch / (ms / 1e3)


def main(argv: list[str] | None = None) -> int:
    from facetrack.train.data.augment import AugmentConfig
    from facetrack.train.models.registry import config_for
    from facetrack.train.data.pipeline import TrainingFaces
    from facetrack.train.data.sources import load_sources, parse_sources
    from facetrack.tracker.geometry import FACE_FRACTION

    p = argparse.ArgumentParser(prog="python -m facetrack.train.data.bench_pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--data", nargs="+", default=["images68:4", "pseudo_dlib", "pseudo_v2"])
    p.add_argument("--arch", default="mdm-rt")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    d = load_sources(parse_sources(a.data, a.data_root))
    size = config_for(a.arch).input_size
    ds = TrainingFaces(d.train, size, AugmentConfig(), 2.0 * FACE_FRACTION * size)
    w = np.asarray(d.weights)
    print(f"{len(d.train)} training faces ({', '.join(a.data)}), batch {a.batch}, {a.steps} batches; torch threads {a.threads}")
    print("| stage | samples/s | ms per batch | main-process CPU ms per sample |")
    print("|---|---|---|---|")
    for k in a.workers:
        rate, cpu = pipeline_rate(ds, w, a.batch, a.steps, k)
        print(f"| pipeline, {k} workers | {rate:.0f} | {a.batch / rate * 1e3:.0f} | {cpu * 1e3:.2f} |", flush=True)
    ms, rate = model_rate(a.arch, ds, a.batch, a.steps)
    print(f"| {a.arch} training step ({a.threads} thread) | {rate:.0f} | {ms:.0f} | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
