"""Whether Qt can open a window here, checked before the application object exists.

Without a usable platform plugin Qt aborts the process (``qt.qpa.plugin: Could not load the Qt
platform plugin "xcb"`` and SIGABRT) when ``QApplication`` is created: no ``DISPLAY``, or
a system library of the ``xcb`` plugin missing (``libxcb-cursor0`` since Qt 6.5). This module
finds that out first, without importing Qt's modules, and says what to install instead.
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path
from typing import Mapping

#: shared library the xcb plugin needs -> the Debian/Ubuntu package that ships it
LIB_PACKAGES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}
#: every system package the app's window needs on Debian/Ubuntu (the README lists the same)
GUI_PACKAGES: tuple[str, ...] = tuple(sorted(set(LIB_PACKAGES.values())))
HEADLESS = "or set QT_QPA_PLATFORM=offscreen to run without a window"


def _plugin_dir() -> Path | None:
    try:
        import PySide6  # the package only: its Qt modules stay unloaded
    except ImportError:
        return None
    return Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms"


def platform_problem(env: Mapping[str, str] | None = None, plugin_dir: Path | None = None) -> str:
    """``""`` when Qt can start its platform here, else one line saying why and what to do."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return ""
    name = env.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0]
    if not name:
        if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
            return f"no display (DISPLAY is not set): run it in a desktop session, {HEADLESS}"
        name = "xcb" if env.get("DISPLAY") else "wayland"
    if name == "xcb" and not env.get("DISPLAY"):
        return f"no X display (DISPLAY is not set) for QT_QPA_PLATFORM=xcb: {HEADLESS}"
    plugin_dir = plugin_dir or _plugin_dir()
    if plugin_dir is None:
        return ""
    plugin = plugin_dir / f"libq{name}.so"
    if not plugin.is_file():
        known = sorted(p.name[4:-3] for p in plugin_dir.glob("libq*.so"))
        return f"Qt platform '{name}' does not exist here (QT_QPA_PLATFORM; choose from {', '.join(known)})"
    try:
        ctypes.CDLL(str(plugin))
    except OSError as e:
        m = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", str(e))
        lib = m.group(1) if m else str(e)
        pkg = LIB_PACKAGES.get(lib, "")
        what = f"install {pkg} (apt-get install {pkg})" if pkg else f"install the package that provides {lib}"
        return (f"Qt's {name} platform cannot load: {lib} is missing: {what}; the app's system packages: "
                f"{' '.join(GUI_PACKAGES)}; {HEADLESS}")
    return ""
