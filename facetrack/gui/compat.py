"""Checks of the Qt binding the app runs on.

PySide6 6.12.0 on CPython < 3.12 drops a reference to ``None`` on every call of a method that
returns nothing (``QLabel.setText``, ``QTimer.start`` ...) and to ``True`` on every
``Signal.emit``; once the count reaches zero the interpreter aborts ("Fatal Python error:
none_dealloc" / "bool_dealloc"), within minutes in a live view. 6.11.3 does not; on
CPython >= 3.12 ``None``/``True`` are immortal and the bug is harmless.
"""
from __future__ import annotations

import sys


def refcount_leak_per_call(calls: int = 40) -> float:
    """References to ``None`` lost per void Qt call (0.0 on a sound binding; 1.0 with the bug).

    Measured with ``QObject.setObjectName``, which needs no application object.
    """
    from PySide6.QtCore import QObject

    obj = QObject()
    before = sys.getrefcount(None)
    for _ in range(calls):
        obj.setObjectName("x")
    return max(0.0, (before - sys.getrefcount(None)) / calls)


def binding_problem() -> str:
    """A one-line warning when the installed PySide6 has the leak, else ``""``."""
    if refcount_leak_per_call() < 0.5:
        return ""
    import PySide6

    return (f"PySide6 {PySide6.__version__} on Python {sys.version_info.major}.{sys.version_info.minor} leaks "
            f"references (the app will abort after a while): install PySide6-Essentials 6.11.3 "
            f"(pip install 'PySide6-Essentials<6.12') or use Python >= 3.12")
