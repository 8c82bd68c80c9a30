"""``tracker`` and ``engines`` import with torch, tensorrt, pycuda, PySide6, onnx and matplotlib
unavailable: heavy libraries are imported only inside the functions that need them."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = ("torch", "tensorrt", "pycuda", "PySide6", "onnx", "matplotlib")
ALWAYS = ("facetrack", "facetrack.tracker", "facetrack.tracker.geometry", "facetrack.tracker.io", "facetrack.tracker.metrics", "facetrack.tracker.markup", "facetrack.tracker.draw", "facetrack.cli",
          "facetrack.engines", "facetrack.engines.registry", "facetrack.engines.onnxrt", "facetrack.engines.base", "facetrack.engines.errors", "facetrack.engines.names",
          "facetrack.engines.torch_backend")
#: checked once they exist (other modules are still being written)
WHEN_PRESENT = ("facetrack.tracker.tracker", "facetrack.tracker.landmarker", "facetrack.tracker.detect", "facetrack.tracker.models", "facetrack.tracker.output", "facetrack.tracker.video",
                "facetrack.tracker.smoothing", "facetrack.tracker.plots", "facetrack.tracker.eval300vw", "facetrack.tracker.track_cli",
                "facetrack.engines.tensorrt_backend", "facetrack.engines.engine_cache", "facetrack.engines.build", "facetrack.engines.torch_cuda")


def _exists(module: str) -> bool:
    return (REPO / (module.replace(".", "/") + ".py")).exists() or (REPO / module.replace(".", "/") / "__init__.py").exists()


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
    modules = list(ALWAYS) + [m for m in WHEN_PRESENT if _exists(m)]
    r = _run(modules)
    assert r.returncode == 0 and r.stdout.startswith("OK []"), r.stdout + r.stderr


def test_the_blocker_really_blocks():
    """The check can fail: a module that imports a blocked library is reported."""
    assert importlib.util.find_spec("json") is not None
    r = _run(["json", "facetrack.tracker.geometry"], forbidden=("json",))
    assert r.returncode == 1 and "FAIL json" in r.stdout
    r = _run(["facetrack.tracker.geometry"], forbidden=("numpy",))
    assert r.returncode == 1 and "FAIL facetrack.tracker.geometry" in r.stdout and "numpy" in r.stdout
