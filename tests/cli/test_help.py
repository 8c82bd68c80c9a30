"""The ``facetrack`` dispatcher's top-level help, through a real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ["train", "export", "eval-300vw", "gui", "build-engine"]


def _run(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_help_exits_0_and_lists_the_subcommands() -> None:
    r = _run("-m", "facetrack.cli.main", "--help")
    assert r.returncode == 0, r.stderr
    listed = [ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith("  ") and ln.split()]
    for name in SUBCOMMANDS:
        assert name in listed, f"{name} missing from:\n{r.stdout}"
    assert "usage: facetrack" in r.stdout
    assert r.stderr == ""
    assert _run("-m", "facetrack.cli.main", "-h").stdout == r.stdout


def test_no_arguments_without_a_display_prints_help_and_fails() -> None:
    r = _run("-m", "facetrack.cli.main")
    assert r.returncode == 2
    assert "subcommands:" in r.stdout and "eval-300vw" in r.stdout


def test_help_loads_no_heavy_library() -> None:
    code = ("import sys\nfrom facetrack.cli.main import main\nrc = main(['--help'])\n"
            "heavy = sorted(m for m in ('torch', 'tensorrt', 'pycuda', 'PySide6', 'onnx', 'matplotlib') if m in sys.modules)\n"
            "print('HEAVY', heavy)\nsys.exit(rc)\n")
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout


def test_version_prints_the_package_version() -> None:
    from facetrack import __version__

    for flag in ("--version", "-V"):
        r = _run("-m", "facetrack.cli.main", flag)
        assert r.returncode == 0 and r.stdout == f"facetrack {__version__}\n" and r.stderr == ""


def test_track_help_shows_the_real_usage_lines() -> None:
    """The usage of the default job names its inputs, not argparse's generated ``facetrack [-h] ...``."""
    r = _run("-m", "facetrack.cli.main", "track", "--help")
    assert r.returncode == 0, r.stderr
    usage = r.stdout.split("\n\n")[0]
    assert usage.startswith("usage: facetrack VIDEO|IMAGE|FOLDER [--out CSV] [options]")
    assert "--out-dir DIR [--jobs N] [--shard I/N]" in usage and "--camera N|/dev/videoN" in usage
    assert "[-h]" not in usage
