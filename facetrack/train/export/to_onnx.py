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

#: Largest allowed |PyTorch - ONNX Runtime| on float32 outputs of unit scale (confidence, hidden):
#: the shipped mdm-rt after 30,000 training steps reads 1.2e-4 on its confidence (random inputs).
PARITY_TOL = 5e-4
#: ... and on ``landmarks``, which are crop pixels (up to ~112): float32 carries ~7 significant
#: digits, and a trained 4-step MDM compounds rounding: 1.2e-3 px after 8,000 training steps,
#: 2.8e-3 px after 30,000 (a plain ``facetrack export`` of those checkpoints failed at 1e-3),
#: 6.3e-3 px after 30,000 + 12,000 warm-started steps on turned faces (mdm-rt-turned; failed at 5e-3).
#: 1e-2 px is 1/4,000 of the inter-ocular distance in the crop; an export bug is off by pixels.
PARITY_TOL_LANDMARKS = 1e-2


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facetrack")
    except PackageNotFoundError:
        return "0.1.0+source"


#: checkpoint keys recorded under ``names.TRAINING`` in an export (the facts a reader of the
#: shipped file needs: how it was trained and how far).
TRAINING_KEYS = ("arch", "step", "metrics", "command", "data", "seed")


def training_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """The :data:`TRAINING_KEYS` of a checkpoint's metadata (``Checkpoint.meta``)."""
    return {k: meta[k] for k in TRAINING_KEYS if k in meta}


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
    from facetrack.train.models.registry import config_to_dict

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
    The file is built and checked in a temporary folder and only then written to ``out_path``
    (through a temporary name beside it when ``out_path`` is a regular file or absent), so a
    failed export never leaves a half-written model behind.
    Raises ``RuntimeError`` if ONNX Runtime disagrees with PyTorch beyond :func:`check_parity`'s
    tolerances, ``OSError`` naming ``out_path`` when it cannot be written, ``ImportError`` without onnx.
    """
    import tempfile

    import onnx
    import torch

    if isinstance(model_or_checkpoint_path, (str, Path)):
        from facetrack.train.models.checkpoint import load_checkpoint

        ckpt = load_checkpoint(model_or_checkpoint_path)
        model = ckpt.build_model()
        if training is None:
            training = training_facts(ckpt.meta)
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
    io = names.MODEL_IO[model.config.kind]
    dynamic = {n: {0: names.BATCH_AXIS} for n in (*io.inputs, *io.outputs)}
    work = tempfile.TemporaryDirectory(prefix="facetrack-export-")
    final, out_path = out_path, Path(work.name) / "model.onnx"
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
        _deliver(out_path, final)
    finally:
        model.train(was_training)
        work.cleanup()
    log.info("exported %s (%s, %.1f MB); parity max |diff| %s", final, model.config.arch,
             final.stat().st_size / 1e6, {k: f"{v:.2e}" for k, v in diffs.items()})
    return final


def _deliver(built: Path, out: Path) -> None:
    """Copy the checked file to ``out``: a regular file (or a new name) through ``out.tmp`` and
    a rename, anything else (a pipe, a device) by writing into it. ``OSError`` names ``out``."""
    import os
    import shutil

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists() and not out.is_file():
            shutil.copyfile(built, out)
            return
        tmp = out.with_name(out.name + ".tmp")
        try:
            shutil.copyfile(built, tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise OSError(f"{out}: cannot write the model ({e.strerror or e})") from None


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
    except ImportError as e:
        print(f"facetrack export: needs the '{e.name or e}' package (pip install 'facetrack[train]')", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as e:
        print(f"facetrack export: {e}", file=sys.stderr)
        return 2
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
