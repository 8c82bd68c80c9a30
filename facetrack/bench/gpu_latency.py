"""GPU latency of mdm, mdm-rt and aan with PyTorch CUDA graphs (needs an NVIDIA GPU).

``python facetrack/bench/gpu_latency.py [--archs mdm mdm-rt aan] [--batches 1 8] [--runs 200] [--warmup 20]
[--no-graphs] [--compile] [--checkpoint ARCH=PATH ...] [--json out.json]``

Random weights unless ``--checkpoint`` gives a training checkpoint (latency does not depend on
the weights). Each model runs through :class:`facetrack.train.export.torch_cuda.CudaGraphRunner` (a CUDA graph
captured per batch size, replayed; ``--no-graphs``: eager). Per call (= one video frame with
``batch`` faces), inputs already on the GPU: the GPU time between two CUDA events around the
call, median and 10th / 90th percentiles of ``--runs`` calls after ``--warmup`` calls, in ms;
also ms per face. ``end-to-end`` adds the host -> device copy of numpy crops and the copy
back (wall clock, ``time.perf_counter``).

Without a CUDA GPU it prints why and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np


ARCHS = ("mdm", "mdm-rt", "aan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the benchmark (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="gpu_latency.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8], metavar="N")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-graphs", action="store_true", help="eager PyTorch instead of CUDA-graph replay")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model before capture")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="ARCH=PATH",
                    help="use trained weights for ARCH (repeatable)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if any(b < 1 for b in args.batches):
        ap.error(f"--batches must be positive, got {args.batches}")
    if args.runs < 1 or args.warmup < 0:
        ap.error("--runs must be at least 1 and --warmup at least 0")
    ckpts = {}
    for item in args.checkpoint:
        arch, sep, path = item.partition("=")
        if not sep or arch not in ARCHS or not path:
            ap.error(f"--checkpoint takes ARCH=PATH with ARCH in {', '.join(ARCHS)}, got {item!r}")
        ckpts[arch] = Path(path)
    args.checkpoints = ckpts
    return args


def percentiles(ms: list[float]) -> dict[str, float]:
    """``{"median", "p10", "p90"}`` of a list of milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    return {"median": float(np.median(a)), "p10": float(np.percentile(a, 10)), "p90": float(np.percentile(a, 90))}


def time_runner(runner, feed_np: dict[str, np.ndarray], runs: int, warmup: int) -> dict[str, dict[str, float]]:
    """GPU-event and end-to-end milliseconds per call of ``runner`` on ``feed_np``."""
    import torch

    feed_gpu = {k: torch.from_numpy(v).cuda() for k, v in feed_np.items()}
    for _ in range(warmup):
        runner(feed_gpu)
    torch.cuda.synchronize()
    gpu_ms, e2e_ms = [], []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(runs):
        start.record()
        runner(feed_gpu)
        end.record()
        end.synchronize()
        gpu_ms.append(start.elapsed_time(end))
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run_numpy(feed_np)
        e2e_ms.append((time.perf_counter() - t0) * 1e3)
    return {"gpu": percentiles(gpu_ms), "end_to_end": percentiles(e2e_ms)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from facetrack.train.export.torch_cuda import CudaGraphRunner, CudaUnavailableError, load_model, model_io, random_feed, require_cuda

    try:
        torch = require_cuda()
    except CudaUnavailableError as e:
        print(f"gpu_latency.py needs an NVIDIA GPU and a CUDA build of PyTorch; not run: {e}", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
               "python": platform.python_version(), "graphs": not args.no_graphs, "compile": args.compile,
               "runs": args.runs, "warmup": args.warmup, "models": {}}
    print(f"{results['device']}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{'CUDA graphs' if not args.no_graphs else 'eager'}{', torch.compile' if args.compile else ''}; "
          f"median [p10, p90] of {args.runs} calls after {args.warmup}, ms")
    print("model    batch  GPU ms/call [p10, p90]     ms/face   end-to-end ms/call [p10, p90]")
    for arch in args.archs:
        model = load_model(args.checkpoints.get(arch, arch))
        runner = CudaGraphRunner(model, batches=args.batches, cuda_graphs=not args.no_graphs, compile=args.compile)
        kind, size, hidden = model_io(model)
        for b in args.batches:
            r = time_runner(runner, random_feed(kind, size, hidden, b), args.runs, args.warmup)
            results["models"].setdefault(arch, {})[str(b)] = r
            g, e = r["gpu"], r["end_to_end"]
            print(f"{arch:<8}{b:>6}  {g['median']:8.3f} [{g['p10']:.3f}, {g['p90']:.3f}]".ljust(40)
                  + f"{g['median'] / b:8.3f}   {e['median']:8.3f} [{e['p10']:.3f}, {e['p90']:.3f}]")
        del runner, model
        torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
