"""Export a model or training checkpoint to ONNX with embedded facetrack metadata.

``facetrack export CHECKPOINT --out model.onnx [--opset 17]``

Uses PyTorch's legacy TorchScript exporter (``dynamo=False``: the dynamo exporter needs
``onnxscript`` and opset 18, see ``../shared/ENVIRONMENT.md``), the tensor names of
:mod:`facetrack.engines.names`, a dynamic batch axis ``names.BATCH_AXIS``, writes every metadata key of
:mod:`facetrack.engines.names` into ``metadata_props``, then checks parity against ONNX Runtime on random
inputs (a different batch size than the trace, so the dynamic axis is exercised too).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.engines import names
from facetrack.tracker.geometry import template

log = logging.getLogger(__name__)

#: Largest allowed |PyTorch - ONNX Runtime| on float32 outputs of unit scale (confidence, hidden).
PARITY_TOL = 1e-4
#: ... and on ``landmarks``, which are crop pixels (up to ~112): float32 carries ~7 significant
#: digits, and a trained 4-step MDM compounds rounding to ~2e-4 px. 1e-3 px is 1/40,000 of the
#: inter-ocular distance in the crop.
PARITY_TOL_LANDMARKS = 1e-3

CHECKPOINT_KEYS = ("state_dict", "config")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facetrack")
    except PackageNotFoundError:
        return "0.1.0+source"


def load_checkpoint(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model of a training checkpoint (eval mode) and return ``(model, checkpoint)``.

    The checkpoint is a dict with ``state_dict``, ``config`` (from ``config_to_dict``) and
    optionally ``arch``, ``step``, ``metrics``; read with ``torch.load(weights_only=True)``.
    """
    import torch

    from facetrack.train.models import build_model, config_from_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is one message
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
        raise ValueError(f"{path}: checkpoint must be a dict with keys {CHECKPOINT_KEYS}")
    try:
        model = build_model(config_from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, RuntimeError, TypeError) as e:
        raise ValueError(f"{path}: checkpoint does not match its config: {str(e).splitlines()[0]}") from e
    return model.eval(), ckpt


def _training_from_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    keys = ("arch", "step", "metrics", "command", "data", "seed")
    return {k: ckpt[k] for k in keys if k in ckpt}


def _example_inputs(model: Any, batch: int, seed: int) -> tuple[Any, ...]:
    """Random inputs: image in [0, 1]; for MDM a jittered template and a random hidden state."""
    import torch

    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    s = cfg.input_size
    image = torch.rand(batch, 1, s, s, generator=g)
    if cfg.kind == "aan":
        return (image,)
    shape = torch.from_numpy(template(s).copy())[None].repeat(batch, 1, 1)
    shape = shape + 2.0 * torch.randn(batch, cfg.n_points, 2, generator=g)
    hidden = 0.5 * torch.randn(batch, cfg.hidden_size, generator=g).tanh()
    return (image, shape, hidden)


def weights_sha256(model_proto: Any) -> str:
    """sha256 over the initializers' names and raw bytes, in graph order."""
    from onnx import numpy_helper

    h = hashlib.sha256()
    for init in model_proto.graph.initializer:
        h.update(init.name.encode())
        h.update(np.ascontiguousarray(numpy_helper.to_array(init)).tobytes())
    return h.hexdigest()


def metadata_for(model: Any, training: dict[str, Any] | None) -> dict[str, str]:
    """The ``facetrack.engines.names`` metadata of ``model`` (all values strings, JSON where structured)."""
    from facetrack.train.models import config_to_dict

    cfg = model.config
    is_mdm = cfg.kind == "mdm"
    return {
        names.FORMAT: names.FORMAT_VERSION,
        names.KIND: cfg.kind,
        names.ARCH: cfg.arch,
        names.INPUT_SIZE: str(cfg.input_size),
        names.N_POINTS: str(cfg.n_points),
        names.HIDDEN_SIZE: str(cfg.hidden_size if is_mdm else 0),
        names.STEPS: str(cfg.steps if is_mdm else 0),
        names.MEAN_SHAPE: json.dumps(template(cfg.input_size).tolist()),
        names.CONFIG: json.dumps(config_to_dict(cfg)),
        names.TRAINING: json.dumps(training or {}, default=str),
        names.VERSION: _version(),
    }


def check_parity(model: Any, onnx_path: str | Path, batch: int = 3, seed: int = 1) -> dict[str, float]:
    """Max |PyTorch - ONNX Runtime| per output on random inputs; raises if one exceeds its tolerance
    (``PARITY_TOL_LANDMARKS`` for ``landmarks``, ``PARITY_TOL`` for the others)."""
    import onnxruntime as ort
    import torch

    io = names.MODEL_IO[model.config.kind]
    inputs = _example_inputs(model, batch, seed)
    with torch.no_grad():
        ref = [t.numpy() for t in model(*inputs)]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(list(io.outputs), {k: v.numpy() for k, v in zip(io.inputs, inputs)})
    diffs = {}
    for name, r, o in zip(io.outputs, ref, got):
        if r.shape != o.shape:
            raise RuntimeError(f"{onnx_path}: output {name!r} shape {o.shape} != PyTorch {r.shape}")
        diffs[name] = float(np.abs(r - o).max())
    tol = {k: PARITY_TOL_LANDMARKS if k == names.LANDMARKS else PARITY_TOL for k in diffs}
    bad = {k: v for k, v in diffs.items() if not v <= tol[k]}
    if bad:
        raise RuntimeError(f"{onnx_path}: ONNX Runtime differs from PyTorch beyond tolerance {tol}: {bad}")
    return diffs


def export_onnx(
    model_or_checkpoint_path: Any,
    out_path: str | Path,
    training: dict[str, Any] | None = None,
    opset: int = 17,
) -> Path:
    """Export a model (``MDM``/``AAN`` module) or a checkpoint file to ONNX at ``out_path``.

    Inputs/outputs are named by ``facetrack.engines.names.MODEL_IO[kind]`` with a dynamic batch axis.
    ``training``: JSON-able facts stored under ``names.TRAINING``; by default, from a
    checkpoint, its ``arch``/``step``/``metrics`` (and ``command``/``data``/``seed`` if present).
    The graph holds only the inference path (AAN's intermediate heads are not in it).
    Raises ``RuntimeError`` if ONNX Runtime disagrees with PyTorch beyond :func:`check_parity`'s tolerances.
    """
    import onnx
    import torch

    if isinstance(model_or_checkpoint_path, (str, Path)):
        model, ckpt = load_checkpoint(model_or_checkpoint_path)
        if training is None:
            training = _training_from_checkpoint(ckpt)
    else:
        model = model_or_checkpoint_path
    if not hasattr(model, "config"):
        raise TypeError(f"export_onnx: expected an MDM/AAN model or a checkpoint path, got {type(model).__name__}")
    if any(p.device.type != "cpu" for p in model.parameters()):
        import copy

        model = copy.deepcopy(model).cpu()  # export and the parity check run on the CPU
    was_training = model.training
    model.eval()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    io = names.MODEL_IO[model.config.kind]
    dynamic = {n: {0: names.BATCH_AXIS} for n in (*io.inputs, *io.outputs)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                _example_inputs(model, 2, 0),
                str(out_path),
                input_names=list(io.inputs),
                output_names=list(io.outputs),
                dynamic_axes=dynamic,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(out_path))
        meta = metadata_for(model, training)
        meta[names.CHECKSUM] = weights_sha256(proto)
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(out_path))
        del proto
        diffs = check_parity(model, out_path)
    finally:
        model.train(was_training)
    log.info("exported %s (%s, %.1f MB); parity max |diff| %s", out_path, model.config.arch,
             out_path.stat().st_size / 1e6, {k: f"{v:.2e}" for k, v in diffs.items()})
    return out_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facetrack export``."""
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (.pt) written by `facetrack train`")
    parser.add_argument("--out", type=Path, default=None, help="output .onnx (default: beside the checkpoint)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")


def run(args: argparse.Namespace) -> int:
    """Run ``facetrack export``; returns the exit code."""
    import sys

    out = args.out if args.out is not None else args.checkpoint.with_suffix(".onnx")
    try:
        path = export_onnx(args.checkpoint, out, opset=args.opset)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"facetrack export: {e}", file=sys.stderr)
        return 2
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
