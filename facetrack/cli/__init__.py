"""The command line: the ``facetrack`` dispatcher (:mod:`facetrack.cli.main`) and one module per
subcommand. It sits on top of every other package and nothing below imports it."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # lazy, so that ``python -m facetrack.cli.main`` does not find its module already imported
    if name == "main":
        from facetrack.cli.main import main

        return main
    raise AttributeError(f"module 'facetrack.cli' has no attribute {name!r}")
