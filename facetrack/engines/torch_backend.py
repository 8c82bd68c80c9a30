"""PyTorch backend: runs a training checkpoint (``.pt``) with the exported models' tensor
names, for development and for parity tests against the ONNX file.

The checkpoint is ``{"state_dict", "config" (dict), "arch", ...}`` as written by
``train`` (see docs/ARCHITECTURE.md) and is loaded with ``weights_only=True``. The model is
built by ``facetrack.train.models``; torch and ``train`` are imported here only when a backend is opened,
so ``engines`` imports without them.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Mapping

import numpy as np

from facetrack.engines import names
from facetrack.engines.base import ARCH_KIND, Backend, TensorSpec, check_model_path, looks_like_text, verify_metadata
from facetrack.engines.errors import BackendUnavailableError, ModelFileError

log = logging.getLogger(__name__)


def _config_value(config: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        v = config.get(k) if isinstance(config, dict) else getattr(config, k, None)
        if v is not None:
            return v
    return default


def checkpoint_metadata(arch: str, config: Any, path: str | os.PathLike = "<checkpoint>") -> dict[str, str]:
    """The metadata an export of this checkpoint would carry (keys of :mod:`facetrack.engines.names`),
    synthesised from the architecture ``config`` (dataclass or dict)."""
    kind = ARCH_KIND.get(arch)
    if kind is None:
        raise ModelFileError(f"{path}: checkpoint arch {arch!r} is not one of {sorted(ARCH_KIND)}")
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    size = _config_value(cfg, "input_size", "size", "crop_size")
    if size is None:
        raise ModelFileError(f"{path}: checkpoint config has no input_size")
    hidden = _config_value(cfg, "hidden_size", "hidden", default=0) if kind == "mdm" else 0
    steps = _config_value(cfg, "steps", "n_steps", "num_steps", default=0) if kind == "mdm" else 0
    from facetrack.tracker.geometry import template  # numpy/OpenCV only

    meta = {
        names.FORMAT: names.FORMAT_VERSION,
        names.KIND: kind,
        names.ARCH: arch,
        names.INPUT_SIZE: str(int(size)),
        names.N_POINTS: str(int(_config_value(cfg, "n_points", default=68))),
        names.HIDDEN_SIZE: str(int(hidden)),
        names.STEPS: str(int(steps)),
        names.MEAN_SHAPE: json.dumps(np.round(template(int(size)).astype(float), 4).tolist()),
        names.CONFIG: json.dumps(cfg, default=str),
    }
    return meta


class TorchBackend(Backend):
    """A training checkpoint run in eager PyTorch (CPU by default, ``device="cuda"`` when asked).

    Raises :class:`ModelFileError` naming the file for a missing / empty / non-checkpoint file,
    :class:`BackendUnavailableError` if torch or ``facetrack.train.models`` is missing.
    """

    name = "torch"
    suffixes = (".pt", ".pth")

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__(path)
        p = check_model_path(path, "checkpoint")
        if looks_like_text(p):
            raise ModelFileError(f"{p}: a text file, not a PyTorch checkpoint")
        try:
            import torch

            from facetrack.train import models
        except ImportError as e:
            raise BackendUnavailableError(f"{p}: the torch backend needs PyTorch and facetrack.train.models ({e})") from None
        if threads:
            torch.set_num_threads(int(threads))
        try:
            ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as e:  # pickle / zip errors of many kinds
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(f"{p}: not a loadable PyTorch checkpoint ({first[:200]})") from None
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
            raise ModelFileError(f"{p}: not a facetrack checkpoint (expected a dict with 'state_dict' and 'config')")
        config = ckpt["config"]
        arch = ckpt.get("arch") or _config_value(config, "arch", "name")
        if arch is None:
            raise ModelFileError(f"{p}: checkpoint names no arch")
        verify_metadata(checkpoint_metadata(str(arch), config, p), p)
        try:
            model = models.build_model(self._config_object(models, str(arch), config))
            model.load_state_dict(ckpt["state_dict"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            first = str(e).strip().splitlines()[0]
            raise ModelFileError(f"{p}: checkpoint does not match its {arch} config ({first[:200]})") from None
        self._metadata = self._export_metadata(model, ckpt) or checkpoint_metadata(str(arch), config, p)
        verify_metadata(self._metadata, p)
        self._torch = torch
        self._device = torch.device(device)
        self._model = model.to(self._device).eval()
        kind = self.kind
        s, h = self.input_size, self.hidden_size
        io = names.MODEL_IO[kind]
        shapes: dict[str, tuple] = {
            names.IMAGE: (names.BATCH_AXIS, 1, s, s),
            names.INIT_SHAPE: (names.BATCH_AXIS, 68, 2),
            names.HIDDEN: (names.BATCH_AXIS, h),
            names.LANDMARKS: (names.BATCH_AXIS, 68, 2),
            names.CONFIDENCE: (names.BATCH_AXIS,),
            names.HIDDEN_OUT: (names.BATCH_AXIS, h),
        }
        self._inputs = tuple(TensorSpec(n, shapes[n]) for n in io.inputs)
        self._outputs = tuple(TensorSpec(n, shapes[n]) for n in io.outputs)
        log.info("%s: %s checkpoint on torch %s", p.name, arch, self._device)

    @staticmethod
    def _export_metadata(model: Any, ckpt: dict) -> dict[str, str] | None:
        """What ``facetrack.train.export`` would write into the ONNX file (same keys and values), or
        ``None`` when that exporter is not available."""
        try:
            from facetrack.train.export import metadata_for
        except ImportError:
            return None
        training = {k: ckpt[k] for k in ("step", "metrics") if k in ckpt}
        return {k: str(v) for k, v in metadata_for(model, training).items()}

    @staticmethod
    def _config_object(models: Any, arch: str, config: Any) -> Any:
        """The checkpoint's config dict as ``facetrack.train.models``' config dataclass for ``arch``
        (``config_from_dict`` where it exists, which rejects unknown keys)."""
        if not isinstance(config, dict):
            return config
        if hasattr(models, "config_from_dict"):
            return models.config_from_dict({"arch": arch, **config})
        if not hasattr(models, "config_for"):
            return config
        base = models.config_for(arch)
        if dataclasses.is_dataclass(base):
            fields = {f.name for f in dataclasses.fields(base)}
            known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k in fields}
            return dataclasses.replace(base, **known)
        return config

    @property
    def device(self) -> str:
        return f"PyTorch {self._device.type.upper()}"

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feed[s.name])).to(self._device) for s in self._inputs]
        with torch.inference_mode():
            out = self._model(*args)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        return {s.name: t.detach().float().cpu().numpy().reshape(-1, *[d for d in s.shape[1:]]) for s, t in zip(self._outputs, out)}

    def _close(self) -> None:
        self._model = None
