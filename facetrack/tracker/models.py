"""The models shipped with facetrack and how a ``--model`` value becomes a file.

Shipped weights live in the package folder ``facetrack/tracker/weights/`` (package data, found through
:mod:`importlib.resources`): ``mdm-rt.onnx`` (name ``"mdm-rt"``, alias ``"mdm"``) and
``aan.onnx`` (``"aan"``). Any other value is taken as a path to a model file.
The weights are trained on 300-W data: iBUG's non-commercial research terms apply.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: Shipped model name -> file name in ``facetrack/tracker/weights/``.
SHIPPED: dict[str, str] = {"mdm-rt": "mdm-rt.onnx", "mdm": "mdm-rt.onnx", "aan": "aan.onnx"}


class ModelNotFoundError(FileNotFoundError):
    """A model name or path that names no usable file; the message names it and why."""


def weights_dir() -> Path:
    """The folder holding the shipped weights (it may not exist in a source checkout)."""
    return Path(str(resources.files("facetrack.tracker") / "weights"))


def shipped_path(name: str) -> Path:
    """Path of a shipped model by name (``"mdm"``, ``"mdm-rt"``, ``"aan"``); not checked."""
    try:
        return weights_dir() / SHIPPED[name]
    except KeyError:
        raise ModelNotFoundError(f"{name}: not a shipped model (choose from {', '.join(sorted(SHIPPED))})") from None


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A shipped model name or a path -> an existing model file.

    Raises :class:`ModelNotFoundError` (one line naming the file) when a shipped file is
    missing from the installation, or a path does not exist or is a directory.
    """
    key = str(name_or_path)
    if key in SHIPPED:
        path = shipped_path(key)
        if not path.is_file():
            raise ModelNotFoundError(f"{path}: shipped model '{key}' is missing from this installation "
                                     f"(train and export it, or pass --model PATH)")
        return path
    path = Path(key).expanduser()
    if path.is_dir():
        raise ModelNotFoundError(f"{path}: is a directory, not a model file")
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such model file (shipped models: {', '.join(sorted(SHIPPED))})")
    return path


def available() -> dict[str, Path]:
    """Shipped model names whose files are present -> their paths."""
    return {name: shipped_path(name) for name in SHIPPED if shipped_path(name).is_file()}
