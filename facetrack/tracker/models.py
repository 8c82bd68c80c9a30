"""The model choice: the shipped models, how a ``--model`` value is parsed, and how a parsed
choice becomes model files and one fitting chain.

Shipped weights live in the package folder ``facetrack/tracker/weights/`` (package data, found through
:mod:`importlib.resources`): ``mdm-rt.onnx`` (name ``"mdm-rt"``, alias ``"mdm"``) and
``aan.onnx`` (``"aan"``), and their turned-face variants (:data:`TURNED`). Any other value is
taken as a path to a model file.
The weights are trained on 300-W data: iBUG's non-commercial research terms apply.

A choice (:class:`ModelChoice`, from :func:`parse_model`) is one model or a cascade written
``A+B`` (``aan+mdm``: AAN fits a new face from its box, MDM refines from AAN's shape; on a
tracked face the two take turns, and each fit is averaged with the other's last one: see
:class:`facetrack.tracker.tracker.Tracker`). The tracker, ``eval-300vw``, ``train.ship``, the benchmark and the GUI all parse
``--model`` here and fit new faces through :class:`FitChain`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

#: Shipped model name -> file name in ``facetrack/tracker/weights/``. The ``-turned`` models are
#: the same architectures trained on with synthetic head turns (:mod:`facetrack.train.data.profile`):
#: the tracker's view for the turned faces the others reject (:data:`TURNED`).
SHIPPED: dict[str, str] = {"mdm-rt": "mdm-rt.onnx", "mdm": "mdm-rt.onnx", "aan": "aan.onnx",
                           "mdm-rt-turned": "mdm-rt-turned.onnx", "mdm-turned": "mdm-rt-turned.onnx",
                           "aan-turned": "aan-turned.onnx"}

#: The model choice the tracker falls back on for new faces its ``--model`` rejects, and that
#: then tracks them (``TrackerConfig.turned_model``; the CLI's ``--turned-model auto``).
TURNED = "aan-turned+mdm-turned"


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


#: The choices offered by name (the GUI's list, the benchmark's methods); ``"mdm"`` is an alias
#: of ``"mdm-rt"`` and any model file path (or ``A+B`` of names and paths) is a choice too.
CHOICES: tuple[str, ...] = ("mdm-rt", "aan", "aan+mdm")


@dataclass(frozen=True)
class ModelChoice:
    """A parsed ``--model`` value. ``stages``: shipped names or file paths, in fitting order:
    ``stages[0]`` fits a new face from its box, each further stage refits from the previous
    stage's landmarks; the last stage is the tracking model (its confidence decides when a
    tracked face is lost; the stages take turns fitting tracked faces)."""

    stages: tuple[str, ...]

    @property
    def track(self) -> str:
        """The tracking model (the last stage): its confidence decides when a tracked face is
        lost, and it refits new faces and looks for lost ones."""
        return self.stages[-1]

    @property
    def label(self) -> str:
        """Short name for reports: shipped names as they are, paths by their file stems
        (``/x/aan.onnx+/x/mdm-rt.onnx`` -> ``aan+mdm-rt``)."""
        return "+".join(s if s in SHIPPED else Path(s).stem for s in self.stages)

    def __str__(self) -> str:
        return "+".join(self.stages)

    def paths(self) -> dict[str, Path]:
        """Stage -> model file (:func:`resolve_model`; raises :class:`ModelNotFoundError`)."""
        return {s: resolve_model(s) for s in dict.fromkeys(self.stages)}


def parse_model(value: "str | os.PathLike | ModelChoice") -> ModelChoice:
    """``"mdm"``, ``"mdm-rt"``, ``"aan"``, ``"aan+mdm"``, a model file path, or ``A+B`` of those
    -> :class:`ModelChoice`. A value that names an existing file is never split at ``+``."""
    if isinstance(value, ModelChoice):
        return value
    text = str(value)
    if not text.strip():
        raise ModelNotFoundError("empty model name (choose from " + ", ".join(CHOICES) + ", or give a model file)")
    if "+" in text and text not in SHIPPED and not Path(text).expanduser().exists():
        stages = tuple(t for t in text.split("+") if t)
    else:
        stages = (text,)
    return ModelChoice(stages)


class Fitter(Protocol):
    """What a chain stage offers (:class:`facetrack.tracker.landmarker.Landmarker`)."""

    def fit_boxes(self, gray: np.ndarray, boxes: Sequence[np.ndarray], timings: Any = None) -> list: ...

    def fit_shapes(self, gray: np.ndarray, shapes: Sequence[np.ndarray], timings: Any = None) -> list: ...


class FitChain:
    """The fitting of new faces for one :class:`ModelChoice`: ``stages[0].fit_boxes`` from
    landmark-equivalent (calibrated) boxes, then each further stage ``fit_shapes`` from the
    valid fits of the one before (invalid fits pass through unchanged). One model call per stage
    for all faces."""

    def __init__(self, stages: Sequence[Fitter]) -> None:
        if not stages:
            raise ValueError("a fitting chain needs at least one model")
        self.stages: tuple[Fitter, ...] = tuple(stages)

    @property
    def track(self) -> Fitter:
        """The last stage: the tracking model (see :attr:`ModelChoice.track`)."""
        return self.stages[-1]

    def fit_boxes(self, gray: np.ndarray, boxes: Sequence[np.ndarray], timings: Any = None) -> list:
        """The last stage's fit of each face."""
        return [staged[-1] for staged in self.fit_boxes_staged(gray, boxes, timings)]

    def fit_boxes_staged(self, gray: np.ndarray, boxes: Sequence[np.ndarray], timings: Any = None) -> list[tuple]:
        """Every stage's fit of each face, first stage first: a stage after an invalid fit
        repeats it."""
        fits = list(self.stages[0].fit_boxes(gray, boxes, timings))
        staged = [[f] for f in fits]
        for stage in self.stages[1:]:
            good = [i for i, f in enumerate(fits) if f.valid]
            for i, f in zip(good, stage.fit_shapes(gray, [fits[i].landmarks for i in good], timings)):
                fits[i] = f
            for i, f in enumerate(fits):
                staged[i].append(f)
        return [tuple(s) for s in staged]

    def fit_box(self, gray: np.ndarray, box: np.ndarray, timings: Any = None, *, calibration: Any) -> Any:
        """One face from ``box`` of the source whose ``calibration`` is given (as
        :meth:`facetrack.tracker.landmarker.Landmarker.fit_box`)."""
        return self.fit_boxes(gray, [calibration(box)], timings)[0]


def open_landmarkers(choice: ModelChoice, backend: str = "auto", threads: int | None = None,
                     given: Mapping[str, Any] | None = None, flip: bool = False) -> tuple[dict[str, Any], list[Any]]:
    """Stage -> landmarker for every stage of ``choice``: ``given`` ones as they are, the rest
    opened from :meth:`ModelChoice.paths` (one per distinct file; ``flip``: test-time mirroring,
    see :class:`facetrack.tracker.landmarker.Landmarker`). Returns ``(by stage, opened)``;
    the caller closes the opened ones."""
    from facetrack.tracker.landmarker import Landmarker

    out: dict[str, Any] = dict(given or {})
    opened: list[Any] = []
    by_path: dict[Path, Any] = {}
    for stage in dict.fromkeys(choice.stages):
        if stage in out:
            continue
        path = resolve_model(stage)
        if path not in by_path:
            by_path[path] = Landmarker(path, backend=backend, threads=threads, flip=flip)
            opened.append(by_path[path])
        out[stage] = by_path[path]
    return out, opened


def open_chain(model: "str | os.PathLike | ModelChoice", backend: str = "auto", threads: int | None = None,
               flip: bool = False) -> FitChain:
    """The :class:`FitChain` of a ``--model`` value, its landmarkers opened (close them with
    :func:`close_chain`)."""
    choice = parse_model(model)
    lms, _ = open_landmarkers(choice, backend, threads, flip=flip)
    return FitChain([lms[s] for s in choice.stages])


def close_chain(chain: FitChain) -> None:
    """Close every distinct landmarker of ``chain``."""
    for lm in {id(s): s for s in chain.stages}.values():
        lm.close()
