"""Model registry: configurations by name, construction, and JSON-able config round trips.

``ARCHS``: ``mdm`` (faithful MDM, ~80 M weights), ``mdm-rt`` (the same algorithm, a few
million weights, real time on a CPU) and ``aan`` (Attentional Alignment Network, ~1 M weights).
Checkpoints store ``config_to_dict(config)``; ``build_model(config_from_dict(d))`` rebuilds.
:func:`with_overrides` varies a named configuration field by field (``facetrack train mdm-rt
--config hidden_size=256 conv_channels=16,32``): the result is stored, exported and run like the
named ones, since every reader takes the whole config from the checkpoint or the ONNX metadata.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Sequence, Union

from torch import nn

from facetrack.train.models.aan import AAN, AANConfig
from facetrack.train.models.mdm import MDM, MDMConfig

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


class ConfigOverrideError(ValueError):
    """A ``--config KEY=VALUE`` item that names no field of the configuration or gives a bad value
    (the message is one line naming the item)."""


#: Fields a ``--config`` item may not change: the architecture is the positional argument, and
#: the tracker needs 68 points.
FIXED_FIELDS = ("arch", "n_points")
#: Numeric fields for which 0 means something (``reduce_channels=0``: no 1x1 reduction;
#: ``patch_reference_diagonal=0``: ``patch_px`` in crop px); every other number must be > 0.
ZERO_ALLOWED = ("reduce_channels", "patch_reference_diagonal")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse_value(name: str, hint: Any, text: str) -> Any:
    """``text`` as a value of the field type ``hint`` (int, float, bool, str or a tuple of ints)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        parts = [t.strip() for t in text.split(",")]
        n = len(args) if Ellipsis not in args else len(parts)
        if len(parts) != n:
            raise ConfigOverrideError(f"{name} takes {n} comma-separated values, got {text!r}")
        return tuple(_parse_value(name, args[0], t) for t in parts)
    if hint is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigOverrideError(f"{name} takes true or false, got {text!r}")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigOverrideError(f"{name} takes an integer, got {text!r}") from None
    if hint is float:
        try:
            v = float(text)
        except ValueError:
            raise ConfigOverrideError(f"{name} takes a number, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise ConfigOverrideError(f"{name} takes a finite number, got {text!r}")
        return v
    return text


def parse_overrides(config: ModelConfig, items: Sequence[str]) -> dict[str, Any]:
    """``["hidden_size=256", "conv_channels=16,32"]`` -> ``{"hidden_size": 256, "conv_channels": (16, 32)}``,
    typed by ``config``'s dataclass fields. Raises :class:`ConfigOverrideError` for an item
    without ``=``, a repeated, unknown or fixed field, a value of the wrong type or count, or a
    number out of range (<= 0; < 0 for :data:`ZERO_ALLOWED`)."""
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigOverrideError(f"{item!r}: expected KEY=VALUE")
        if key not in names:
            allowed = ", ".join(n for n in names if n not in FIXED_FIELDS)
            raise ConfigOverrideError(f"{item!r}: {config.arch} has no field {key!r} (fields: {allowed})")
        if key in FIXED_FIELDS:
            raise ConfigOverrideError(f"{item!r}: {key} cannot be changed by --config")
        if key in out:
            raise ConfigOverrideError(f"{item!r}: {key} given twice")
        try:
            value = _parse_value(key, hints[key], text.strip())
        except ConfigOverrideError as e:
            raise ConfigOverrideError(f"{item!r}: {e}") from None
        numbers = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, (int, float)) and not isinstance(v, bool) and (v < 0 or (v == 0 and key not in ZERO_ALLOWED)) for v in numbers):
            raise ConfigOverrideError(f"{item!r}: {key} must be {'>= 0' if key in ZERO_ALLOWED else '> 0'}")
        out[key] = value
    return out


def with_overrides(config: ModelConfig, items: Sequence[str]) -> ModelConfig:
    """``config`` with the ``KEY=VALUE`` items of :func:`parse_overrides` applied, checked by the
    config class itself too (e.g. ``patch_samples`` too small for MDM's two pools). No items:
    ``config`` unchanged. Raises :class:`ConfigOverrideError`, one line."""
    values = parse_overrides(config, items)
    if not values:
        return config
    try:
        return dataclasses.replace(config, **values)
    except ValueError as e:
        raise ConfigOverrideError(f"{' '.join(items)}: {str(e).splitlines()[0]}") from None


def overrides_of(config: ModelConfig) -> dict[str, Any]:
    """The fields in which ``config`` differs from its architecture's named configuration
    (JSON-able values; empty for a named configuration)."""
    base = config_to_dict(config_for(config.arch))
    return {k: v for k, v in config_to_dict(config).items() if base.get(k) != v}
