"""PyTorch CUDA path for facetrack's models, with CUDA-graph capture.

:class:`CudaGraphRunner` wraps an MDM or AAN ``nn.Module`` (from a training checkpoint, or
freshly built with random weights for timing) and runs it on a CUDA device:

* for each captured face batch (default 1 and 8) it keeps static input tensors, warms the
  model up on a side stream, captures one forward pass in a ``torch.cuda.CUDAGraph`` and later
  *replays* it after copying the feed into the static inputs, which removes the per-kernel
  launch cost that dominates small batches;
* a feed of ``n`` faces uses the smallest captured batch ``>= n`` (padded with copies of the
  last face, results sliced back); larger feeds run in chunks of the largest captured batch;
* ``compile=True`` wraps the model in ``torch.compile`` first (mode "max-autotune-no-cudagraphs",
  since graphs are captured here);
* ``device="cpu"`` with ``cuda_graphs=False`` runs the same plumbing eagerly on the CPU (tests).

It lives in ``train`` beside the models it runs (``engines`` never imports ``train``); torch is
imported inside functions, so the module imports without it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facetrack.engines import names
from facetrack.engines.errors import BackendUnavailableError

log = logging.getLogger(__name__)

DEFAULT_BATCHES: tuple[int, ...] = (1, 8)


class CudaUnavailableError(BackendUnavailableError):
    """torch is missing, CPU-only, or sees no GPU; the message says which."""


def require_cuda() -> Any:
    """Return the ``torch`` module if it can use a CUDA GPU, else raise :class:`CudaUnavailableError`."""
    try:
        import torch
    except ImportError as e:
        raise CudaUnavailableError(f"the PyTorch CUDA path needs torch (pip install facetrack[train]): {e}") from None
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise CudaUnavailableError(
            f"the PyTorch CUDA path needs an NVIDIA GPU and a CUDA build of torch: torch {torch.__version__} is "
            f"{build} and torch.cuda.is_available() is False"
        )
    return torch


def graph_batch_for(n: int, captured: Sequence[int]) -> int:
    """The captured batch a feed of ``n`` faces runs at: the smallest ``>= n``, else the largest
    (the feed is then chunked). ``captured``: positive batch sizes."""
    if n < 1:
        raise ValueError(f"a feed needs at least one face, got {n}")
    sizes = sorted(set(int(b) for b in captured))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"captured batch sizes must be positive integers, got {list(captured)}")
    return next((b for b in sizes if b >= n), sizes[-1])


def model_io(model: Any) -> tuple[str, int, int]:
    """``(kind, input_size S, hidden_size H)`` of a facetrack model (``H = 0`` for AAN), from ``model.config``."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise ValueError(f"{type(model).__name__} has no .config: not a facetrack model from facetrack.train.models.registry")
    kind = getattr(cfg, "kind", None) or ("aan" if getattr(cfg, "arch", "") == "aan" else "mdm")
    if kind not in names.MODEL_IO:
        raise ValueError(f"unknown model kind {kind!r}")
    hidden = int(getattr(cfg, "hidden_size", 0)) if kind == "mdm" else 0
    return kind, int(cfg.input_size), hidden


def load_model(checkpoint_or_arch: str | Path, seed: int = 0) -> Any:
    """A model in eval mode: from a training checkpoint (read by
    :func:`facetrack.train.models.checkpoint.load_checkpoint`, weights checksum verified), or an
    architecture name of ``facetrack.train.models.registry.ARCHS`` with random weights (seeded; for timing only)."""
    import torch
    from facetrack.train.models.checkpoint import load_checkpoint
    from facetrack.train.models.registry import ARCHS, build_model

    if str(checkpoint_or_arch) in ARCHS:
        torch.manual_seed(seed)
        return build_model(str(checkpoint_or_arch)).eval()
    path = Path(checkpoint_or_arch)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (or give an architecture: {', '.join(ARCHS)})")
    return load_checkpoint(path).build_model()


def random_feed(kind: str, input_size: int, hidden_size: int, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A plausible float32 feed of ``n`` faces: image in [0, 1] ``(n, 1, S, S)``; for MDM an
    ``init_shape`` ``(n, 68, 2)`` of crop px around the crop centre and a zero ``hidden`` ``(n, H)``."""
    rng = np.random.default_rng(seed)
    feed = {names.IMAGE: rng.random((n, 1, input_size, input_size), dtype=np.float32)}
    if kind == "mdm":
        s = float(input_size)
        feed[names.INIT_SHAPE] = (s * (0.25 + 0.5 * rng.random((n, 68, 2)))).astype(np.float32)
        feed[names.HIDDEN] = np.zeros((n, hidden_size), np.float32)
    return feed


class CudaGraphRunner:
    """Run a facetrack model on a GPU with CUDA graphs captured per face batch.

    ``__call__(feed)`` takes name -> float32 numpy arrays or torch tensors (shapes of
    :mod:`facetrack.engines.names`, any device) and returns name -> torch tensors on ``device`` (fresh
    tensors, safe to keep). ``run_numpy`` returns numpy arrays.
    """

    def __init__(
        self,
        model: Any,
        *,
        batches: Sequence[int] = DEFAULT_BATCHES,
        device: str = "cuda",
        cuda_graphs: bool = True,
        compile: bool = False,
        warmup: int = 3,
    ) -> None:
        if device.startswith("cuda") or cuda_graphs:
            torch = require_cuda()
        else:
            import torch
        self._torch = torch
        self.kind, self.input_size, self.hidden_size = model_io(model)
        self.io = names.MODEL_IO[self.kind]
        self.device = torch.device(device)
        self.batches = tuple(sorted(set(int(b) for b in batches)))
        graph_batch_for(1, self.batches)  # validates
        self.model = model.eval().to(self.device)
        self._forward = self.model
        if compile:
            self._forward = torch.compile(self.model, mode="max-autotune-no-cudagraphs")
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[int, tuple[Any, dict[str, Any], tuple[Any, ...]]] = {}
        if cuda_graphs:
            for b in self.batches:
                self._graphs[b] = self._capture(b, warmup)

    def _static_inputs(self, n: int) -> dict[str, Any]:
        feed = random_feed(self.kind, self.input_size, self.hidden_size, n)
        return {k: self._torch.from_numpy(v).to(self.device) for k, v in feed.items()}

    def _capture(self, batch: int, warmup: int) -> tuple[Any, dict[str, Any], tuple[Any, ...]]:
        torch = self._torch
        static_in = self._static_inputs(batch)
        args = [static_in[n] for n in self.io.inputs]
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(max(1, warmup)):  # warm-up (cuDNN autotuning, lazy init) outside the graph
                self._forward(*args)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            static_out = self._forward(*args)
        log.debug("captured a CUDA graph at batch %d", batch)
        return graph, static_in, tuple(static_out)

    def __call__(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        torch = self._torch
        missing = [n for n in self.io.inputs if n not in feed]
        if missing:
            raise ValueError(f"feed lacks {missing}; a {self.kind} model takes {list(self.io.inputs)}")
        tensors = {n: torch.as_tensor(feed[n]).to(self.device, torch.float32) for n in self.io.inputs}
        n = int(tensors[names.IMAGE].shape[0])
        top = self.batches[-1]
        if n > top:
            parts = [self({k: v[i:i + top] for k, v in tensors.items()}) for i in range(0, n, top)]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        if not self.cuda_graphs:
            with torch.no_grad():
                out = self._forward(*(tensors[k] for k in self.io.inputs))
            return {k: v.clone() for k, v in zip(self.io.outputs, out)}
        b = graph_batch_for(n, self.batches)
        graph, static_in, static_out = self._graphs[b]
        for k, t in tensors.items():
            static_in[k][:n].copy_(t)
            if n < b:  # pad with the last face so the padded rows stay well-conditioned
                static_in[k][n:].copy_(t[-1:].expand(b - n, *t.shape[1:]))
        graph.replay()
        return {k: v[:n].clone() for k, v in zip(self.io.outputs, static_out)}

    def run_numpy(self, feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``__call__`` with numpy float32 outputs."""
        return {k: v.detach().float().cpu().numpy() for k, v in self(feed).items()}
