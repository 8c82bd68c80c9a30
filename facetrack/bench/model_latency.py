"""Parameter counts and ONNX Runtime CPU latency of mdm, mdm-rt and aan.

``python facetrack/bench/model_latency.py [--archs mdm mdm-rt aan] [--runs 100] [--threads 2] [--json out.json]``

Random weights (latency does not depend on them). Each model is exported with
:func:`facetrack.train.export.to_onnx.export_onnx` (parity-checked) to a temporary folder, then timed with ONNX
Runtime's CPU provider, ``--threads`` intra-op threads, batch 1 and batch 8: median (and 10th /
90th percentiles) of ``--runs`` runs after ``--warmup`` runs, in milliseconds per call.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np



def _feed(kind: str, cfg, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    from facetrack.engines import names
    from facetrack.tracker.geometry import template

    s = cfg.input_size
    feed = {names.IMAGE: rng.random((batch, 1, s, s), dtype=np.float32)}
    if kind == "mdm":
        feed[names.INIT_SHAPE] = np.repeat(template(s)[None], batch, 0).astype(np.float32)
        feed[names.HIDDEN] = np.zeros((batch, cfg.hidden_size), np.float32)
    return feed


def time_session(sess, feed: dict[str, np.ndarray], runs: int, warmup: int) -> dict[str, float]:
    """Milliseconds per ``sess.run``: median, min, p10, p90 over ``runs`` after ``warmup`` (on a
    shared machine the min is the best estimate of the uncontended cost)."""
    for _ in range(warmup):
        sess.run(None, feed)
    t = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        t[i] = (time.perf_counter() - t0) * 1e3
    return {"median_ms": float(np.median(t)), "min_ms": float(t.min()), "p10_ms": float(np.percentile(t, 10)), "p90_ms": float(np.percentile(t, 90))}


def bench(archs: list[str], runs: int, warmup: int, threads: int, batches: list[int]) -> list[dict]:
    import onnxruntime as ort
    import torch

    from facetrack.train.export.to_onnx import export_onnx
    from facetrack.train.models.registry import build_model

    rows = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            torch.manual_seed(0)
            model = build_model(arch).eval()
            cfg = model.config
            n_params = sum(p.numel() for p in model.parameters())
            n_heads = sum(p.numel() for p in model.heads.parameters()) if hasattr(model, "heads") else 0
            path = export_onnx(model, Path(tmp) / f"{arch}.onnx")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            row = {
                "arch": arch,
                "params": n_params,
                "params_inference": n_params - n_heads,
                "onnx_mb": path.stat().st_size / 1e6,
            }
            for b in batches:
                row[f"batch{b}"] = time_session(sess, _feed(cfg.kind, cfg, b, rng), runs, warmup)
            rows.append(row)
            del sess
            path.unlink()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["mdm", "mdm-rt", "aan"])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    rows = bench(args.archs, args.runs, args.warmup, args.threads, args.batches)
    head = f"{'arch':<8} {'params':>11} {'inference':>11} {'onnx MB':>8}" + "".join(
        f" {'b' + str(b) + ' ms med [min p10-p90]':>28}" for b in args.batches)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"ONNX Runtime CPU, {args.threads} intra-op threads, median of {args.runs} after {args.warmup} warm-up"
          f" ({os.cpu_count()} CPUs, load average {load:.1f} at the end)")
    print(head)
    for r in rows:
        line = f"{r['arch']:<8} {r['params']:>11,} {r['params_inference']:>11,} {r['onnx_mb']:>8.1f}"
        for b in args.batches:
            t = r[f"batch{b}"]
            line += f" {t['median_ms']:.2f} [{t['min_ms']:.2f} {t['p10_ms']:.2f}-{t['p90_ms']:.2f}]".rjust(29)
        print(line)
    if args.json:
        import onnxruntime

        info = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "onnxruntime": onnxruntime.__version__,
                "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "load_average_1min": load}
        args.json.write_text(json.dumps({"setup": info, "models": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
