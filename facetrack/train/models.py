"""Model registry: configurations by name, construction, and JSON-able config round trips.

``ARCHS``: ``mdm`` (faithful MDM, ~80 M weights), ``mdm-rt`` (the same algorithm, a few
million weights, real time on a CPU) and ``aan`` (Attentional Alignment Network, ~1 M weights).
Checkpoints store ``config_to_dict(config)``; ``build_model(config_from_dict(d))`` rebuilds.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Union

from torch import nn

from facetrack.train.aan import AAN, AANConfig
from facetrack.train.mdm import MDM, MDMConfig

ARCHS: tuple[str, ...] = ("mdm", "mdm-rt", "aan")

ModelConfig = Union[MDMConfig, AANConfig]

_CONFIGS: dict[str, ModelConfig] = {
    "mdm": MDMConfig(arch="mdm"),
    # Same algorithm, fast: a 30-crop-px patch sampled at 14x14, 8/16-channel convs, a 1x1 conv
    # to 8 channels -> 2x2x8 = 32 features per patch; the paper's 512 recurrent units (1.45 M
    # weights, ~1.4 M multiply-adds per step: the convolutions and the sampler dominate the time).
    "mdm-rt": MDMConfig(
        arch="mdm-rt",
        patch_px=30.0,
        patch_samples=14,
        conv_channels=(8, 16),
        reduce_channels=8,
        hidden_size=512,
        patch_reference_diagonal=0.0,
    ),
    "aan": AANConfig(arch="aan"),
}

_CLASSES: dict[str, tuple[type, type[nn.Module]]] = {
    "mdm": (MDMConfig, MDM),
    "mdm-rt": (MDMConfig, MDM),
    "aan": (AANConfig, AAN),
}


def _check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ValueError(f"unknown model architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    return arch


def config_for(arch: str) -> ModelConfig:
    """The default configuration of ``arch`` (a frozen dataclass; use ``dataclasses.replace`` to vary)."""
    return _CONFIGS[_check_arch(arch)]


def build_model(arch_or_config: str | ModelConfig) -> nn.Module:
    """A freshly initialised model from an architecture name or a config."""
    cfg = config_for(arch_or_config) if isinstance(arch_or_config, str) else arch_or_config
    _, cls = _CLASSES[_check_arch(cfg.arch)]
    return cls(cfg)


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """JSON-able dict of a config (tuples become lists); the arch name is inside."""
    d = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


#: Config fields added after checkpoints were written, with the value that reproduces the model
#: of a checkpoint that lacks them (the new default may differ: the paper reading).
LEGACY_VALUES: dict[str, Any] = {"patch_reference_diagonal": 0.0, "attention": "relu-sigmoid"}


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Inverse of :func:`config_to_dict`. Unknown keys are an error (a newer checkpoint); a key
    missing from an older checkpoint takes its :data:`LEGACY_VALUES` value (the model as it was
    trained), else the field default."""
    if "arch" not in d:
        raise ValueError("model config has no 'arch' key")
    cfg_cls, _ = _CLASSES[_check_arch(d["arch"])]
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(d) - fields
    if unknown:
        raise ValueError(f"model config for {d['arch']!r} has unknown keys {sorted(unknown)}")
    values = {k: v for k, v in LEGACY_VALUES.items() if k in fields and k not in d}
    values.update({k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    return cfg_cls(**values)
