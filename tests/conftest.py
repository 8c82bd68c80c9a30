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
