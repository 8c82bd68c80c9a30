"""The Qt binding itself: PySide6 6.12.0 on CPython 3.11 loses a reference to None on every
void call and aborts the app within minutes (facetrack/gui/compat.py)."""
from __future__ import annotations

import sys

import pytest

from facetrack.gui.compat import binding_problem, refcount_leak_per_call

pytestmark = pytest.mark.gui


def test_installed_pyside6_does_not_leak_references(qapp):
    leak = refcount_leak_per_call(200)
    assert leak < 0.5, binding_problem()
    assert binding_problem() == ""


def test_leak_measure_sees_a_leak(monkeypatch, qapp):
    """The measure itself can fail: a fake getrefcount that drops by one per call reads as 1.0."""
    counts = iter(range(10_000, 0, -40))
    monkeypatch.setattr(sys, "getrefcount", lambda obj: next(counts))
    assert refcount_leak_per_call(40) == pytest.approx(1.0)
