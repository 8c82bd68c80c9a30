"""Training checkpoints: one place to save and load them.

A checkpoint is a ``torch.save``'d dict, read back with ``torch.load(weights_only=True)``
(tensors, numbers, strings, lists and dicts only; no pickled code):

- ``state_dict``: the model's weights;
- ``config``: the model configuration as JSON-able values (:func:`facetrack.train.models.registry.config_to_dict`);
- ``arch``: ``"mdm"``, ``"mdm-rt"`` or ``"aan"``;
- ``weights_sha256``: :func:`weights_sha256` of ``state_dict``, verified on every load;
- ``format``: :data:`FORMAT`;
- anything else the writer records (``step``, ``metrics``, ``optimizer``, ``rng``, ``command``,
  ``data``, ``split``, ``schedule``, ``ema``...), kept as it is.

Checkpoints written before this module existed (by the trainer of commit 1d2eaef and earlier)
have the same keys but no ``weights_sha256`` and no ``format``: they load, and a log line says
that their weights could not be verified.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: Version of the layout above (absent in checkpoints written before it: treated as 1).
FORMAT = 2
#: Keys every checkpoint has.
REQUIRED = ("state_dict", "config")


class CheckpointError(ValueError):
    """A file that is not a usable training checkpoint; the message is one line naming the file."""


def weights_sha256(state_dict: Mapping[str, Any]) -> str:
    """SHA-256 over the weights: every tensor's name, dtype, shape and bytes, in name order.

    Independent of the device and of how ``torch.save`` laid out the file, so the same weights
    give the same digest after a save/load round trip.
    """
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}={t!r};".encode())
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``meta``: every key of the file except ``state_dict`` and ``config``;
    ``verified``: the stored weights checksum was present and matched."""

    path: Path
    state_dict: dict[str, Any]
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    verified: bool = False

    @property
    def arch(self) -> str:
        return str(self.meta.get("arch") or self.config.get("arch", ""))

    @property
    def step(self) -> int | None:
        s = self.meta.get("step")
        return None if s is None else int(s)

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint as the dict that was on disk."""
        return {"state_dict": self.state_dict, "config": self.config, **self.meta}

    def build_model(self) -> Any:
        """The model of this checkpoint with its weights, in eval mode."""
        from facetrack.train.models.registry import build_model, config_from_dict

        try:
            model = build_model(config_from_dict(self.config))
            model.load_state_dict(self.state_dict)
        except (ValueError, RuntimeError, TypeError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{self.path}: checkpoint does not match its config ({first[:200]})") from None
        return model.eval()


def save_checkpoint(path: str | os.PathLike, state_dict: Mapping[str, Any], config: Mapping[str, Any], **meta: Any) -> Path:
    """Write a checkpoint atomically (a temporary file renamed over ``path``, so a killed run
    never leaves a torn file) with the weights checksum. ``meta``: further keys to store
    (``arch`` defaults to ``config["arch"]``). Returns ``path``."""
    import torch

    path = Path(path)
    sd = dict(state_dict)
    ck = {"state_dict": sd, "config": dict(config), "arch": meta.pop("arch", None) or config.get("arch"),
          "format": FORMAT, "weights_sha256": weights_sha256(sd), **meta}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ck, tmp)
    os.replace(tmp, path)
    return path


def _kind_of_file(path: Path) -> str:
    """``"zip"`` (torch.save), ``"pickle"`` (legacy torch.save), ``"onnx"``, ``"text"`` or ``"other"``."""
    with path.open("rb") as fh:
        head = fh.read(64)
    if head.startswith(b"PK"):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    # An ONNX ModelProto starts with field 1 (ir_version, varint): byte 0x08.
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and (b"pytorch" in head.lower() or b"onnx" in head.lower())):
        return "onnx"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "other"


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", verify: bool = True) -> Checkpoint:
    """Read a checkpoint (``weights_only=True``) and verify its weights checksum.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (one line
    naming the file) for an ONNX export, a file that is not a checkpoint, a checkpoint without
    ``state_dict`` / ``config``, or weights that do not match their stored checksum. A
    checkpoint without a checksum (written before :data:`FORMAT` 2) loads with a log line.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    kind = _kind_of_file(p)
    if kind == "onnx":
        raise CheckpointError(f"{p}: an ONNX export, not a training checkpoint (give the run's .pt file, e.g. RUN_DIR/best.pt)")
    if kind == "text":
        raise CheckpointError(f"{p}: a text file, not a training checkpoint")
    try:
        ck = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - zip, pickle and weights-only errors of many kinds: one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: not a readable training checkpoint ({type(e).__name__}: {first[:160]})") from None
    if not isinstance(ck, dict) or any(k not in ck for k in REQUIRED):
        raise CheckpointError(f"{p}: not a facetrack training checkpoint (expected a dict with keys {', '.join(REQUIRED)})")
    if not isinstance(ck["config"], dict) or not isinstance(ck["state_dict"], dict):
        raise CheckpointError(f"{p}: 'config' and 'state_dict' must be dicts")
    stored = ck.get("weights_sha256")
    verified = False
    if stored is None:
        log.info("%s: no weights checksum (written before checkpoint format %d): loaded unverified", p, FORMAT)
    elif verify:
        actual = weights_sha256(ck["state_dict"])
        if actual != stored:
            raise CheckpointError(f"{p}: weights do not match the stored checksum (sha256 {actual[:12]}... != {str(stored)[:12]}...): the file is damaged")
        verified = True
    meta = {k: v for k, v in ck.items() if k not in REQUIRED}
    return Checkpoint(p, ck["state_dict"], ck["config"], meta, verified)


def slim_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a checkpoint without the optimiser state and the raw weights beside the moving
    average (``optimizer``, ``train_state_dict``): what ``--init-from``, ``ship`` and the
    measurements read, at about a quarter of the size (mdm-rt: 23.2 -> 5.8 MB; files sent to
    or fetched from a lent GPU machine travel under a size limit). ``--resume`` needs the full file."""
    import torch

    ck = load_checkpoint(src)
    meta = {k: v for k, v in ck.meta.items() if k not in ("optimizer", "train_state_dict")}
    out = Path(dst)
    torch.save({"state_dict": ck.state_dict, "config": ck.config, **meta}, out)
    return out


__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint", "slim_checkpoint", "weights_sha256"]
