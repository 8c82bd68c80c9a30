"""Training weights from an exported model: ``facetrack train ARCH --init-from MODEL.onnx``.

A shipped or exported float32 ONNX file carries every weight the model uses at run time and its
whole configuration (``facetrack.config``), so training can warm-start from it when the run's
checkpoint is gone (the shipped weights' checkpoints lived on machines that were reclaimed):

- weights exported under their PyTorch names (MDM's, AAN's linear layers) are taken by name;
- AAN's convolutions were exported with their batch norms folded in (``W * gamma / sigma``,
  ``beta - gamma * mu / sigma``, under generated names): they are taken in execution order, each
  checked by shape, and the batch norm after each is set to pass the folded output through
  unchanged in eval mode (mean 0, variance ``1 - eps``, scale 1, the folded offset as its
  shift). :func:`recalibrate_norms` then gives those norms the statistics of real training
  crops, so that a training step (batch statistics) sees about what the exported model computes;
  the eval-mode function stays exactly the same;
- AAN's four intermediate-supervision heads are used in training only and are not exported: they
  start fresh.

The rebuilt model must reproduce ONNX Runtime's outputs on random inputs within the export's
parity tolerance (:func:`facetrack.train.export.to_onnx.check_parity`), or the file is refused. int8
variants are refused too (their weights are quantised): give the float32 file they were made
from. The checkpoint carries the export's training record, whose validation split the trainer
checks against the run's as for any ``--init-from``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facetrack.train.models.checkpoint import Checkpoint, CheckpointError

#: training crops whose statistics the batch norms of a model read from an export are given
NORM_CROPS = 64

#: parameters a model trains but never exports (AAN's intermediate-supervision heads)
TRAINING_ONLY_PREFIXES: tuple[str, ...] = ("heads.",)


def _metadata(model_proto: Any) -> dict[str, str]:
    return {p.key: p.value for p in model_proto.metadata_props}


def _execution_order(model: Any) -> list[tuple[str, Any]]:
    """``(name, module)`` of the model's convolutions and batch norms in the order its
    inference forward calls them (the order the exporter wrote them)."""
    import torch
    from torch import nn

    from facetrack.train.export.to_onnx import _example_inputs

    order: list[tuple[str, Any]] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o, name=name: order.append((name, mod)))
             for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            model.eval()(*_example_inputs(model, 1, 0))
    finally:
        for h in hooks:
            h.remove()
    seen: set[str] = set()
    return [(n, m) for n, m in order if not (n in seen or seen.add(n))]  # a module called twice counts once


def state_dict_from_onnx(model: Any, model_proto: Any, where: str) -> dict[str, Any]:
    """The state dict of ``model`` (built from the file's config) filled from ``model_proto``'s
    weights (see the module docstring); :class:`CheckpointError` naming ``where`` when a weight
    is missing or does not fit."""
    import torch
    from onnx import numpy_helper
    from torch import nn

    inits = {i.name: numpy_helper.to_array(i) for i in model_proto.graph.initializer}
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    filled: set[str] = set()
    for k, v in sd.items():
        if k in inits and tuple(inits[k].shape) == tuple(v.shape):
            sd[k] = torch.from_numpy(inits[k].copy()).to(v.dtype)
            filled.add(k)
    order = _execution_order(model)
    convs = [(n, m, i) for i, (n, m) in enumerate(order) if isinstance(m, nn.Conv2d) and f"{n}.weight" not in filled]
    nodes = [n for n in model_proto.graph.node if n.op_type == "Conv" and n.input[1] not in filled]
    if len(nodes) != len(convs):
        raise CheckpointError(f"{where}: {len(nodes)} convolutions without a PyTorch name in the file, "
                              f"{len(convs)} in the model its config builds")
    for (name, conv, i), node in zip(convs, nodes):
        w = inits.get(node.input[1])
        if w is None or tuple(w.shape) != tuple(conv.weight.shape):
            raise CheckpointError(f"{where}: convolution {node.name or node.input[1]} does not fit {name} "
                                  f"({None if w is None else tuple(w.shape)} vs {tuple(conv.weight.shape)})")
        b = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        sd[f"{name}.weight"] = torch.from_numpy(w.copy())
        filled.add(f"{name}.weight")
        nxt = order[i + 1] if i + 1 < len(order) else None
        folded = nxt is not None and isinstance(nxt[1], nn.BatchNorm2d) and nxt[1].num_features == conv.out_channels
        if folded:
            bn_name, bn = nxt
            shift = torch.zeros(conv.out_channels) if b is None else torch.from_numpy(b.copy())
            if conv.bias is not None:
                sd[f"{name}.bias"], shift = shift, torch.zeros_like(shift)
                filled.add(f"{name}.bias")
            sd[f"{bn_name}.running_mean"] = torch.zeros(bn.num_features)
            sd[f"{bn_name}.running_var"] = torch.full((bn.num_features,), 1.0 - bn.eps)
            sd[f"{bn_name}.weight"] = torch.ones(bn.num_features)
            sd[f"{bn_name}.bias"] = shift
            filled.update(f"{bn_name}.{k}" for k in ("running_mean", "running_var", "weight", "bias"))
        elif conv.bias is not None:
            if b is None or tuple(b.shape) != tuple(conv.bias.shape):
                raise CheckpointError(f"{where}: convolution {node.name or node.input[1]} has no bias for {name}")
            sd[f"{name}.bias"] = torch.from_numpy(b.copy())
            filled.add(f"{name}.bias")
    params = {n for n, _ in model.named_parameters()}
    missing = sorted(k for k in params - filled if not k.startswith(TRAINING_ONLY_PREFIXES))
    if missing:
        raise CheckpointError(f"{where}: no weights in the file for {', '.join(missing[:6])}"
                              f"{' ...' if len(missing) > 6 else ''} (not an export of this architecture)")
    return sd


def checkpoint_from_onnx(path: str | Path) -> Checkpoint:
    """A training checkpoint (in memory) with the weights and config of the exported float32
    model at ``path``; :class:`CheckpointError` (one line naming the file) for an int8 variant,
    a file without facetrack's metadata, weights that do not fit, or a rebuilt model whose
    outputs differ from ONNX Runtime's beyond the export's parity tolerance."""
    import onnx

    from facetrack.engines import names
    from facetrack.engines.engine_cache import file_sha256
    from facetrack.train.export.to_onnx import check_parity
    from facetrack.train.models.registry import build_model, config_from_dict, config_to_dict
    from facetrack.train.export.quantize import QUANTIZATION

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: model file not found")
    try:
        proto = onnx.load(str(p))
    except Exception as e:  # noqa: BLE001 - protobuf errors of many kinds: one line
        raise CheckpointError(f"{p}: not a readable ONNX model ({type(e).__name__})") from None
    meta = _metadata(proto)
    if names.INT8_SOURCE in meta:
        raise CheckpointError(f"{p}: an int8 variant (quantised weights); warm-start from the float32 file it was made from "
                              f"({json.loads(meta.get(QUANTIZATION, '{}')).get('source', 'the .onnx beside it')})")
    if names.CONFIG not in meta:
        raise CheckpointError(f"{p}: no {names.CONFIG} metadata (not a model exported by facetrack)")
    try:
        cfg = config_from_dict(json.loads(meta[names.CONFIG]))
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{p}: its {names.CONFIG} does not describe a known model ({e})") from None
    model = build_model(cfg)
    model.load_state_dict(state_dict_from_onnx(model, proto, str(p)))
    model.eval()
    try:
        parity = check_parity(model, p)
    except RuntimeError as e:
        raise CheckpointError(f"{p}: the weights read back do not reproduce the file's outputs ({e})") from None
    try:
        training = json.loads(meta.get(names.TRAINING, "{}"))
    except ValueError:
        training = {}
    extra: dict[str, Any] = {"arch": cfg.arch, "step": training.get("step"), "init_from_onnx": {"path": str(p), "sha256": file_sha256(p),
                             "parity_max_abs": parity}, "onnx_training": training}
    if isinstance(training.get("data"), dict):
        extra["data"] = training["data"]  # its validation split, checked by the trainer like a checkpoint's
    return Checkpoint(p, model.state_dict(), config_to_dict(cfg), extra, verified=True)


def load_init(path: str | Path) -> Checkpoint:
    """What ``--init-from`` names: a training checkpoint, or an exported float32 ONNX model
    (:func:`checkpoint_from_onnx`)."""
    from facetrack.train.models.checkpoint import _kind_of_file, load_checkpoint

    p = Path(path)
    if p.is_file() and _kind_of_file(p) == "onnx":
        return checkpoint_from_onnx(p)
    return load_checkpoint(p, map_location="cpu")


def has_norms(model: Any) -> bool:
    """Whether ``model`` has batch norms (whose statistics :func:`recalibrate_norms` can set)."""
    from torch import nn

    return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def recalibrate_norms(model: Any, images: Sequence[np.ndarray] | np.ndarray) -> int:
    """Give every batch norm of ``model`` the mean and variance of its input over ``images``
    (``(N, 1, S, S)`` float32 crops), changing its scale and shift so that its eval-mode output
    is exactly what it was. A training step (batch statistics) then starts near the eval-mode
    function. Returns the number of norms set. Leaves the model in eval mode."""
    import torch
    from torch import nn

    if model.config.kind != "aan":
        raise ValueError("recalibrate_norms: only AAN has batch norms")
    x = torch.as_tensor(np.asarray(images, np.float32)).to(next(model.parameters()).device)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def grab(mod: Any, inputs: tuple[Any, ...], _out: Any) -> None:
        z = inputs[0].detach().double()
        stats[id(mod)] = (z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False))

    hooks = [m.register_forward_hook(grab) for m in norms]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for m in norms:
            if id(m) not in stats:
                continue
            mean, var = stats[id(m)]
            s_old = (m.running_var.double() + m.eps).sqrt()
            s_new = (var + m.eps).sqrt()
            w, b = m.weight.double(), m.bias.double()
            # w*(z - m_old)/s_old + b == w'*(z - m_new)/s_new + b' for every z
            m.bias.copy_((b + w * (mean - m.running_mean.double()) / s_old).to(m.bias.dtype))
            m.weight.copy_((w * s_new / s_old).to(m.weight.dtype))
            m.running_mean.copy_(mean.to(m.running_mean.dtype))
            m.running_var.copy_(var.to(m.running_var.dtype))
    return len(stats)


__all__ = ["load_init", "checkpoint_from_onnx", "NORM_CROPS", "state_dict_from_onnx", "recalibrate_norms", "has_norms", "TRAINING_ONLY_PREFIXES"]
