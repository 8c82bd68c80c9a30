"""PyTorch backend: runs a training checkpoint (``.pt``) with the exported models' tensor
names, for development and for parity tests against the ONNX file.

It lives in ``train`` (where the models and the checkpoint format live), not in ``engines``:
``engines`` never imports ``train``. The registry learns of it at run time through
:func:`register`, which the composition root calls (the ``facetrack`` command, the benchmark,
or a caller that wants ``.pt`` files): a ``.pt`` file then opens through
``facetrack.engines.registry.open_backend`` like any other model file.

The checkpoint is read by :func:`facetrack.train.models.checkpoint.load_checkpoint` (weights
checksum verified) and the metadata is the one :func:`facetrack.train.export.to_onnx.metadata_for`
writes into an ONNX export of the same checkpoint. torch is imported only when a backend is
opened, so this module (and :func:`register`) imports without it.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import numpy as np

from facetrack.engines import names
from facetrack.engines.base import Backend, TensorSpec, check_model_path, looks_like_text, verify_metadata
from facetrack.engines.errors import BackendUnavailableError, ModelFileError

log = logging.getLogger(__name__)

#: registry name of this backend and the model file suffixes it reads
NAME = "torch"
SUFFIXES = (".pt", ".pth")


def register() -> None:
    """Add the torch backend to ``facetrack.engines.registry`` (idempotent; imports no torch)."""
    from facetrack.engines.registry import BackendEntry, register_backend

    register_backend(NAME, BackendEntry(__name__, "TorchBackend", "PyTorch", suffixes=SUFFIXES))


def _io_shapes(input_size: int, hidden_size: int) -> dict[str, tuple]:
    s, h = input_size, hidden_size
    return {
        names.IMAGE: (names.BATCH_AXIS, 1, s, s),
        names.INIT_SHAPE: (names.BATCH_AXIS, 68, 2),
        names.HIDDEN: (names.BATCH_AXIS, h),
        names.LANDMARKS: (names.BATCH_AXIS, 68, 2),
        names.CONFIDENCE: (names.BATCH_AXIS,),
        names.HIDDEN_OUT: (names.BATCH_AXIS, h),
    }


class TorchBackend(Backend):
    """A training checkpoint run in eager PyTorch (CPU by default, ``device="cuda"`` when asked).

    Raises :class:`ModelFileError` naming the file for a missing / empty / text / non-checkpoint
    file or weights that fail their checksum, :class:`BackendUnavailableError` if torch is missing.
    """

    name = NAME
    suffixes = SUFFIXES

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__(path)
        p = check_model_path(path, "checkpoint")
        if looks_like_text(p):
            raise ModelFileError(f"{p}: a text file, not a PyTorch checkpoint")
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailableError(f"{p}: the torch backend needs PyTorch (pip install 'facetrack[train]'): {e}") from None
        from facetrack.train.models.checkpoint import CheckpointError, load_checkpoint
        from facetrack.train.export.to_onnx import metadata_for, training_facts

        if threads:
            torch.set_num_threads(int(threads))
        try:
            ckpt = load_checkpoint(p)
            model = ckpt.build_model()
        except CheckpointError as e:
            raise ModelFileError(str(e)) from None
        self._metadata = metadata_for(model, training_facts(ckpt.meta))
        verify_metadata(self._metadata, p)
        self._torch = torch
        self._device = torch.device(device)
        self._model = model.to(self._device).eval()
        io = names.MODEL_IO[self.kind]
        shapes = _io_shapes(self.input_size, self.hidden_size)
        self._inputs = tuple(TensorSpec(n, shapes[n]) for n in io.inputs)
        self._outputs = tuple(TensorSpec(n, shapes[n]) for n in io.outputs)
        log.info("%s: %s checkpoint on torch %s", p.name, self.arch, self._device)

    @property
    def device(self) -> str:
        return f"PyTorch {self._device.type.upper()}"

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feed[s.name])).to(self._device) for s in self._inputs]
        with torch.inference_mode():
            out: Any = self._model(*args)
        return {s.name: t.detach().float().cpu().numpy().reshape(-1, *s.shape[1:]) for s, t in zip(self._outputs, out)}

    def _close(self) -> None:
        self._model = None
