"""The Qt platform check that runs before ``QApplication`` (which would abort the process)."""
from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from facetrack.gui.platform import GUI_PACKAGES, platform_problem

REPO = Path(__file__).resolve().parents[2]


def test_no_display_is_one_line_that_names_the_offscreen_platform():
    msg = platform_problem({}, plugin_dir=Path("/nonexistent"))
    assert msg.startswith("no display (DISPLAY is not set)") and "QT_QPA_PLATFORM=offscreen" in msg
    assert "QT_QPA_PLATFORM=xcb" in platform_problem({"QT_QPA_PLATFORM": "xcb"}, plugin_dir=Path("/nonexistent"))


def test_offscreen_needs_nothing(tmp_path):
    (tmp_path / "libqoffscreen.so").write_bytes(b"")
    real = ctypes.CDLL
    try:
        ctypes.CDLL = lambda path: None  # the stand-in file is no library
        assert platform_problem({"QT_QPA_PLATFORM": "offscreen"}, plugin_dir=tmp_path) == ""
    finally:
        ctypes.CDLL = real


def test_a_missing_system_library_names_its_package(tmp_path, monkeypatch):
    (tmp_path / "libqxcb.so").write_bytes(b"")

    def fails(path):
        raise OSError("libxcb-cursor.so.0: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(ctypes, "CDLL", fails)
    msg = platform_problem({"DISPLAY": ":0"}, plugin_dir=tmp_path)
    assert "libxcb-cursor.so.0 is missing: install libxcb-cursor0" in msg and "QT_QPA_PLATFORM=offscreen" in msg
    assert " ".join(GUI_PACKAGES) in msg and "\n" not in msg


def test_an_unknown_platform_lists_the_real_ones(tmp_path):
    for name in ("xcb", "offscreen"):
        (tmp_path / f"libq{name}.so").write_bytes(b"")
    msg = platform_problem({"QT_QPA_PLATFORM": "foo"}, plugin_dir=tmp_path)
    assert msg == "Qt platform 'foo' does not exist here (QT_QPA_PLATFORM; choose from offscreen, xcb)"


def test_the_readme_lists_the_same_system_packages():
    readme = (REPO / "README.md").read_text()
    missing = [p for p in GUI_PACKAGES if p not in readme]
    assert not missing, f"README does not list {missing}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt platform plugins are checked on Linux")
def test_gui_without_a_display_exits_2_with_one_line_instead_of_aborting():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(Path.home())}
    r = subprocess.run([sys.executable, "-m", "facetrack.cli.main", "gui"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("facetrack gui: no display")
