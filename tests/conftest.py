"""Shared test fixtures: the real data in ../shared/data, Qt offscreen."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Without a display a QApplication aborts the whole test process: set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACETRACK_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` (or ``$FACETRACK_DATA``); the tests need the real data."""
    if not (DATA / "images68").is_dir():
        pytest.fail(f"real data not found at {DATA}: clone beside ../shared or set FACETRACK_DATA")
    return DATA


@pytest.fixture(scope="session")
def onnx_standin():
    """:func:`tests.onnx_standin.build_onnx_standin`: ``onnx_standin(path, kind, **options) -> path``
    (the one hand-built facetrack ONNX model of the tests; needs the ``onnx`` package)."""
    pytest.importorskip("onnx", reason="onnx (the [train] extra) builds the stand-in models")
    from tests.onnx_standin import build_onnx_standin

    return build_onnx_standin


@pytest.fixture(autouse=True)
def _backend_registry_restored():
    """Each test leaves the backend registry as it found it: ``facetrack.cli.main`` registers the
    PyTorch backend in-process, and a later test may check how a checkpoint fails without it."""
    from facetrack.engines import registry

    backends, suffixes = dict(registry.BACKENDS), dict(registry.SUFFIXES)
    yield
    registry.BACKENDS.clear()
    registry.BACKENDS.update(backends)
    registry.SUFFIXES.clear()
    registry.SUFFIXES.update(suffixes)
