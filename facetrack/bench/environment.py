"""Where the benchmarks find what is not part of facetrack: the shared data and the peers'
interpreter. Options first, then environment variables; nothing is guessed from where the
package is installed, and a missing one is one clear line.

- data: ``--data DIR`` or ``$FACETRACK_DATA`` (the folder with ``videos_unlabelled/`` and
  ``images68/``; the tests use the same variable);
- peers: ``--peers-python PATH`` or ``$FACETRACK_PEERS_PYTHON``, an interpreter with dlib and
  MediaPipe, made by the command in ``facetrack/bench/README.md`` (:data:`PEERS_VENV_COMMAND`).
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "FACETRACK_DATA"
PEERS_ENV = "FACETRACK_PEERS_PYTHON"
#: the peers' pinned packages (MediaPipe 0.10.21 pins numpy<2: never beside facetrack)
PEERS_PACKAGES = ("mediapipe==0.10.21", "dlib-bin==20.0.1", "face_recognition_models",
                  "opencv-contrib-python==4.11.0.86", "numpy<2")
PEERS_VENV_COMMAND = ("python -m venv ~/facetrack-peers && ~/facetrack-peers/bin/pip install "
                      + " ".join(f"'{p}'" if "<" in p else p for p in PEERS_PACKAGES))


class SetupError(ValueError):
    """A benchmark input that is missing; the message says which and how to give it."""


def data_dir(option: str | os.PathLike | None) -> Path:
    """The shared data folder from ``--data`` or ``$FACETRACK_DATA``; :class:`SetupError` if
    neither is given or the folder does not exist."""
    value = option if option is not None else os.environ.get(DATA_ENV)
    if not value:
        raise SetupError(f"no data folder: pass --data DIR or set {DATA_ENV} (the shared data with videos_unlabelled/ and images68/)")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise SetupError(f"{path}: no such data folder ({'--data' if option is not None else '$' + DATA_ENV})")
    return path


def peers_python(option: str | os.PathLike | None) -> Path | None:
    """The peers' interpreter from ``--peers-python`` or ``$FACETRACK_PEERS_PYTHON``; ``None``
    when neither is given (the peers are then reported as not installed)."""
    value = option if option is not None else os.environ.get(PEERS_ENV)
    return Path(value).expanduser() if value else None


def peers_missing_line(path: Path | None) -> str:
    """Why the peers cannot run, with the command that makes their environment."""
    where = f"{path}: no such interpreter" if path is not None else f"no peers interpreter (--peers-python or ${PEERS_ENV})"
    return f"{where}; make one with: {PEERS_VENV_COMMAND}"
