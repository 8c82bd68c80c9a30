"""DistributedDataParallel: 2 CPU processes (gloo) train the same weights as one process with
the same global batch.

Each process takes half of every global batch (same faces, same augmentation seeds) and DDP
averages the two half-batch gradients, which equals the full batch's mean gradient when both
halves hold the same number of faces (no negatives here). The weights then agree up to float32
summation order, which Adam amplifies only where a gradient is near its epsilon. Tolerance:
every weight within 1 % of one optimiser step (lr times the layer's lr scale: 56 for MDM's
update layer). Measured after 3 steps of mdm-rt: 99.9 % of the weights within 3e-7, the largest
difference 4.2e-5 in the update layer (0.08 % of its step of 0.056), 3e-6 elsewhere (0.3 % of 1e-3).
A wrong reduction (a sum instead of a mean, or one rank's gradient only) moves weights by whole steps.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from facetrack.train.data.augment import NO_AUGMENT
from facetrack.train.models.registry import build_model
from facetrack.train.loops.trainer import TrainOptions, train

TOL_STEPS = 0.01  # of one optimiser step


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(args: list[str], out: Path, timeout: float = 90.0, tries: int = 3) -> list[str]:
    """Run ``python -m facetrack train ARGS`` as 2 ranks on this machine and return their logs.

    The ranks are started here with the environment ``torchrun`` gives them (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT), not by ``torchrun`` itself: torchrun starts each rank
    in a session of its own, so a hung rank outlives a kill of torchrun and holds its output pipe
    (a clean-clone CI run once waited on it past its 90 minutes). Here each rank is our own child,
    writes to a file, and is killed by pid. Gloo binds to the loopback device, so no lookup of
    this machine's name (which a sandbox may not resolve) stands between the two. A run past
    ``timeout`` (a few in a hundred here hang at the end, the weights written: seen only without
    torchrun's own store) is killed and started again, on a new port."""
    for attempt in range(tries):
        port = _free_port()
        procs, logs = [], []
        for rank in range(2):
            env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                   "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo"}
            log = out.parent / f"rank{rank}.{attempt}.log"
            logs.append(log)
            with open(log, "w") as f:
                procs.append(subprocess.Popen([sys.executable, "-m", "facetrack", "train", *args], env=env,
                                              stdout=f, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        try:
            for p in procs:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
                p.wait()
            if attempt == tries - 1:
                raise AssertionError(f"the 2 ranks did not finish in {timeout:.0f} s: " + logs[0].read_text()[-2000:]) from None
            shutil.rmtree(out, ignore_errors=True)  # the killed run's folder
            continue
        texts = [log.read_text() for log in logs]
        codes = [p.returncode for p in procs]
        assert codes == [0, 0], f"ranks exited {codes}: " + texts[0][-2000:] + texts[1][-2000:]
        return texts
    raise AssertionError("unreachable")


def test_two_processes_train_the_same_weights_as_one(data_dir: Path, tmp_path: Path) -> None:
    common = ["--data", "images68:1", "--data-root", str(data_dir), "--steps", "3", "--batch", "4", "--val-every", "3",
              "--limit-images", "4", "--augment", "none", "--workers", "0", "--threads", "1", "--quiet", "--seed", "0"]
    _run_ranks(["mdm-rt", "--out", str(tmp_path / "ddp"), *common], tmp_path / "ddp")
    one = TrainOptions(arch="mdm-rt", data=str(data_dir), out=str(tmp_path / "one"), sources=("images68:1",), steps=3, batch=4,
                       val_every=3, limit_images=4, augment=NO_AUGMENT, workers=0, threads=1, progress=False, seed=0)
    train(one)
    a = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 3
    worst = 0.0
    for key in ("state_dict", "train_state_dict"):
        for k, v in b[key].items():
            step = 1e-3 * (56.0 if k.startswith("update.") else 1.0)
            worst = max(worst, float((a[key][k] - v).abs().max()) / step)
    assert worst < TOL_STEPS, worst
    # the weights did move (3 steps at lr up to 1e-3): not two untouched initialisations compared
    torch.manual_seed(0)
    fresh = build_model("mdm-rt").state_dict()
    moved = max(float((b["train_state_dict"][k] - v).abs().max()) for k, v in fresh.items())
    assert moved > 1e-4, moved
