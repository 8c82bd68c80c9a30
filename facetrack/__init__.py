"""facetrack: real-time 68-point facial landmark tracking (MDM and AAN).

Packages, in the direction of their imports (docs/ARCHITECTURE.md):
``facetrack.gui -> facetrack.tracker -> facetrack.engines``; ``facetrack.train -> facetrack.tracker,
facetrack.engines``; ``facetrack.cli.main`` and ``facetrack.bench`` sit on top and may import any of them.
Importing ``facetrack`` loads nothing heavy.
"""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("facetrack")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
