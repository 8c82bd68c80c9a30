"""The ``facetrack`` dispatcher's top-level help, through a real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["train", "export", "eval-300vw", "gui", "build-engine"]


def _run(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_help_exits_0_and_lists_the_subcommands() -> None:
    r = _run("-m", "facetrack.cli", "--help")
    assert r.returncode == 0, r.stderr
    listed = [ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith("  ") and ln.split()]
    for name in SUBCOMMANDS:
        assert name in listed, f"{name} missing from:\n{r.stdout}"
    assert "usage: facetrack" in r.stdout
    assert r.stderr == ""
    assert _run("-m", "facetrack.cli", "-h").stdout == r.stdout


def test_no_arguments_without_a_display_prints_help_and_fails() -> None:
    r = _run("-m", "facetrack.cli")
    assert r.returncode == 2
    assert "subcommands:" in r.stdout and "eval-300vw" in r.stdout


def test_help_loads_no_heavy_library() -> None:
    code = ("import sys\nfrom facetrack.cli import main\nrc = main(['--help'])\n"
            "heavy = sorted(m for m in ('torch', 'tensorrt', 'pycuda', 'PySide6', 'onnx', 'matplotlib') if m in sys.modules)\n"
            "print('HEAVY', heavy)\nsys.exit(rc)\n")
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
