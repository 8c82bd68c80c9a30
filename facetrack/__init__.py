"""facetrack: real-time 68-point facial landmark tracking (MDM and AAN).

    import facetrack
    with facetrack.FaceTracker(mode="video") as tracker:
        for result in tracker.track("video.mp4"):        # or tracker.process(frame, timestamp)
            for face in result.faces:                      # .face_id .landmarks (68, 2) .confidence .success .box .state
                ...

:class:`FaceTracker` and :class:`Result` (:mod:`facetrack.api`), :func:`open_source` (any
input by name: :mod:`facetrack.io.sources`), :func:`annotate` (the drawer of the CLI's overlay,
:mod:`facetrack.tracker.draw`), :class:`FaceState`, :func:`preset` (the defaults per input kind).
Importing ``facetrack`` loads nothing heavy: each name is imported when first used.
Packages and their import directions: docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import Any

try:
    __version__ = _metadata.version("facetrack")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

#: public name -> the module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "FaceTracker": "facetrack.api",
    "Result": "facetrack.api",
    "header": "facetrack.api",
    "FaceState": "facetrack.tracker.results",
    "FaceResult": "facetrack.tracker.results",
    "open_source": "facetrack.io.sources",
    "annotate": "facetrack.tracker.draw",
    "preset": "facetrack.tracker.presets",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'facetrack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
