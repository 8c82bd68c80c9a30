"""Every module of ``facetrack.tracker``, ``.io``, ``.eval`` and ``.engines`` (and the ``facetrack``
command) imports with torch, tensorrt, pycuda, PySide6, onnx and matplotlib unavailable: heavy
libraries are imported only inside the functions that need them."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = ("torch", "tensorrt", "pycuda", "PySide6", "onnx", "matplotlib")
#: the light modules outside the two runtime packages
EXTRA = ("facetrack", "facetrack.api", "facetrack.cli.main", "facetrack.cli.track", "facetrack.train.export.torch_backend")


def runtime_modules() -> list[str]:
    """Every module of ``facetrack.tracker``, ``.io``, ``.eval`` and ``.engines``, found on disk: a module
    that is added later is checked too, and one that stops importing fails the test (no skip)."""
    out = []
    for pkg in ("tracker", "io", "eval", "engines"):
        for f in sorted((REPO / "facetrack" / pkg).rglob("*.py")):
            parts = f.relative_to(REPO).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


SCRIPT = textwrap.dedent("""
    import importlib, importlib.abc, sys
    FORBIDDEN = {forbidden!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ImportError(f"blocked import of {{name}} (made unimportable by the test)")
            return None

    sys.meta_path.insert(0, Block())
    for m in {modules!r}:
        try:
            importlib.import_module(m)
        except ImportError as e:
            print(f"FAIL {{m}}: {{e}}")
            sys.exit(1)
    loaded = sorted(k for k in sys.modules if k.split(".")[0] in FORBIDDEN)
    print("OK", loaded)
""")


def _run(modules: list[str], forbidden=FORBIDDEN) -> subprocess.CompletedProcess:
    code = SCRIPT.format(forbidden=set(forbidden), modules=modules)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_runtime_packages_import_without_heavy_libraries():
    modules = runtime_modules() + list(EXTRA)
    assert "facetrack.tracker.tracker" in modules and "facetrack.engines.registry" in modules and len(modules) > 20
    r = _run(modules)
    assert r.returncode == 0 and r.stdout.startswith("OK []"), r.stdout + r.stderr


def test_the_blocker_really_blocks():
    """The check can fail: a module that imports a blocked library is reported."""
    assert importlib.util.find_spec("json") is not None
    r = _run(["json", "facetrack.tracker.geometry"], forbidden=("json",))
    assert r.returncode == 1 and "FAIL json" in r.stdout
    r = _run(["facetrack.tracker.geometry"], forbidden=("numpy",))
    assert r.returncode == 1 and "FAIL facetrack.tracker.geometry" in r.stdout and "numpy" in r.stdout
