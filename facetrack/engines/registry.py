"""Which backend opens which model file, and which runtime this machine should use.

Two tables, no if-chains: :data:`BACKENDS` (backend name -> lazily imported class and fixed
options) and :data:`SUFFIXES` (model file suffix -> backend that opens it). ``open_backend``
with ``backend="auto"`` uses the file's suffix; for an ``.onnx`` file it asks
:func:`pick_backend` for the fastest runtime present: TensorRT (tensorrt + pycuda + a CUDA
GPU) > ONNX Runtime CUDA (``CUDAExecutionProvider`` + a GPU) > ONNX Runtime CPU, and logs
the choice and the reason. The probes are injectable (:class:`Probes`) so tests can fake
any machine.

Backends outside ``engines`` join through :func:`register_backend`: the PyTorch backend runs
training checkpoints and so lives in ``facetrack.train`` (``engines`` imports neither ``train``
nor ``tracker``); the ``facetrack`` command registers it at start-up.
Every backend class takes ``(path, *, threads=None, **its own options)``: ``threads`` is the
caller's CPU budget, which a runtime without CPU threads (TensorRT) accepts and ignores.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from facetrack.engines.base import Backend, probe_backend
from facetrack.engines.errors import BackendUnavailableError, ModelFileError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendEntry:
    """A runtime: where its class lives (imported only when used), the short label the GUI
    shows, fixed constructor options, and the model file suffixes it reads."""

    module: str
    cls: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    suffixes: tuple[str, ...] = (".onnx",)

    def load(self) -> type[Backend]:
        return getattr(importlib.import_module(self.module), self.cls)


BACKENDS: dict[str, BackendEntry] = {
    "tensorrt": BackendEntry("facetrack.engines.tensorrt_backend", "TensorRTBackend", "TensorRT",
                             suffixes=(".engine", ".plan", ".onnx")),
    "onnxruntime-cuda": BackendEntry("facetrack.engines.onnxrt", "OnnxRuntimeBackend", "ONNX Runtime CUDA", {"device": "cuda"}),
    "onnxruntime": BackendEntry("facetrack.engines.onnxrt", "OnnxRuntimeBackend", "ONNX Runtime CPU", {"device": "cpu"}),
}

#: model file suffix -> backend that reads it. ``.onnx`` files may also go to ``tensorrt``
#: (engine built and cached from the ONNX) or ``onnxruntime-cuda`` by :func:`pick_backend`.
SUFFIXES: dict[str, str] = {
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
}

#: suffixes of training checkpoints, read by the PyTorch backend once it is registered
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def register_backend(name: str, entry: BackendEntry) -> None:
    """Add (or replace) backend ``name``; files with ``entry.suffixes`` other than ``.onnx``
    open in it by default. Called by the composition root for backends that live above
    ``engines`` (``facetrack.train.export.torch_backend.register``)."""
    BACKENDS[name] = entry
    for suffix in entry.suffixes:
        if suffix != ".onnx":
            SUFFIXES[suffix] = name

#: backends that can run an ``.onnx`` file, fastest first: the order ``pick_backend`` tries.
PREFERENCE: tuple[str, ...] = ("tensorrt", "onnxruntime-cuda", "onnxruntime")


# ---- probes ------------------------------------------------------------------------------
def _importable(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (cheap, no CUDA init)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cuda_gpu_count() -> int:
    """Number of CUDA GPUs the driver reports (``cuDeviceGetCount`` through ``libcuda``);
    0 without a driver. Needs neither pycuda nor torch."""
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
        except OSError:
            continue
        try:
            if cuda.cuInit(0) != 0:
                return 0
            n = ctypes.c_int(0)
            return n.value if cuda.cuDeviceGetCount(ctypes.byref(n)) == 0 else 0
        except AttributeError:
            return 0
    return 0


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


@dataclass(frozen=True)
class Probes:
    """What :func:`pick_backend` asks about the machine; replace any callable in tests."""

    importable: Callable[[str], bool] = _importable
    gpu_count: Callable[[], int] = cuda_gpu_count
    ort_providers: Callable[[], list[str]] = _ort_providers


@dataclass(frozen=True)
class BackendChoice:
    """The runtime picked for this machine: registry ``name``, GUI ``label`` and why."""

    name: str
    label: str
    reason: str


def _diagnose(probes: Probes) -> dict[str, tuple[bool, str]]:
    """backend name -> (usable, why), for the ``.onnx`` runtimes plus torch."""
    gpus = probes.gpu_count()
    gpu_text = f"{gpus} CUDA GPU(s)" if gpus else "no CUDA GPU"
    providers = probes.ort_providers()
    trt_missing = [m for m in ("tensorrt", "pycuda") if not probes.importable(m)]
    out: dict[str, tuple[bool, str]] = {}
    if trt_missing:
        out["tensorrt"] = (False, f"{' and '.join(trt_missing)} not installed")
    else:
        out["tensorrt"] = (gpus > 0, f"tensorrt and pycuda installed, {gpu_text}")
    if "CUDAExecutionProvider" not in providers:
        out["onnxruntime-cuda"] = (False, "onnxruntime has no CUDAExecutionProvider")
    else:
        out["onnxruntime-cuda"] = (gpus > 0, f"CUDAExecutionProvider present, {gpu_text}")
    out["onnxruntime"] = ("CPUExecutionProvider" in providers, "onnxruntime installed" if providers else "onnxruntime not installed")
    torch_ok = probes.importable("torch")
    out["torch"] = (torch_ok, "torch installed" if torch_ok else "torch not installed")
    return out


def available_backends(probes: Probes | None = None) -> dict[str, str]:
    """Backends usable here -> short reason, in preference order (TensorRT first)."""
    diag = _diagnose(probes or Probes())
    return {name: why for name, (ok, why) in diag.items() if ok}


def pick_backend(probes: Probes | None = None) -> BackendChoice:
    """The fastest runtime for ``.onnx`` models on this machine (order :data:`PREFERENCE`);
    logs the choice and why the faster ones were passed over.

    Raises :class:`BackendUnavailableError` if not even ONNX Runtime CPU is usable.
    """
    diag = _diagnose(probes or Probes())
    passed: list[str] = []
    for name in PREFERENCE:
        ok, why = diag[name]
        if ok:
            label = BACKENDS[name].label
            reason = why + (f" (not {'; not '.join(passed)})" if passed else "")
            log.info("runtime: %s: %s", label, reason)
            return BackendChoice(name, label, reason)
        passed.append(f"{BACKENDS[name].label}: {why}")
    raise BackendUnavailableError("no runtime for .onnx models: " + "; ".join(passed))


def backend_for_suffix(path: str | os.PathLike) -> str:
    """The backend name that reads ``path`` by its suffix; :class:`ModelFileError` if none."""
    suffix = Path(path).suffix.lower()
    try:
        return SUFFIXES[suffix]
    except KeyError:
        if suffix in CHECKPOINT_SUFFIXES:
            raise _torch_not_registered(path) from None
        raise ModelFileError(f"{path}: unknown model file type '{suffix}' (known: {', '.join(sorted(SUFFIXES))})") from None


def _torch_not_registered(path: str | os.PathLike) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"{path}: training checkpoints need the PyTorch backend, which is not registered in this process "
        f"(the facetrack command registers it; in Python call facetrack.train.export.torch_backend.register())")


def _accepts(name: str, suffix: str) -> bool:
    """Whether backend ``name`` reads ``suffix`` files (from its entry, without importing it)."""
    return suffix in BACKENDS[name].suffixes


def open_backend(path: str | os.PathLike, backend: str = "auto", probes: Probes | None = None, probe: bool = True,
                 **options: Any) -> Backend:
    """Open ``path`` in a runtime and (``probe``) run it once on a probe crop
    (:func:`facetrack.engines.base.probe_backend`: a model that fails there, or gives outputs of
    the wrong shape or NaN, is refused in one line).

    ``backend``: ``"auto"`` (by suffix; for ``.onnx`` the runtime of :func:`pick_backend`, among
    those that read ``.onnx``), or a name of :data:`BACKENDS`: ``"onnxruntime"``,
    ``"onnxruntime-cuda"``, ``"torch"``, ``"tensorrt"``. ``options`` go to the backend class
    (e.g. ``threads=2``). Raises :class:`ModelFileError` for an unusable file and
    :class:`BackendUnavailableError` when the requested runtime is missing; an explicitly
    named runtime is never swapped for another.
    """
    suffix = Path(path).suffix.lower()
    if backend == "auto":
        name = backend_for_suffix(path)
        if suffix == ".onnx":
            choice = pick_backend(probes)
            if choice.name != name and not _accepts(choice.name, suffix):
                log.info("runtime: %s does not read %s files; using %s", choice.label, suffix, BACKENDS[name].label)
            else:
                name = choice.name
    else:
        name = backend
        if name == "torch" and name not in BACKENDS:
            raise _torch_not_registered(path)
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (choose from auto, {', '.join(BACKENDS)})")
    entry = BACKENDS[name]
    try:
        cls = entry.load()
    except ImportError as e:
        raise BackendUnavailableError(f"{path}: backend {name!r} is not available here ({e})") from None
    opened = cls(path, **{**entry.options, **options})
    if probe and isinstance(opened, Backend):  # (a stand-in class a test puts in the table is taken as it is)
        try:
            probe_backend(opened)
        except BaseException:
            opened.close()
            raise
    return opened
