"""TensorRT backend: a facetrack engine file (or an ONNX model, built and cached) on an NVIDIA GPU.

Engine files carry a JSON header (format and cache: :mod:`facetrack.engines.engine_cache`). Opening one:

1. read the header and check it as model metadata (kind, I/O names from :mod:`facetrack.engines.names`);
2. import tensorrt and pycuda (only here; a clear :class:`TensorRTUnavailableError` otherwise);
3. refuse an engine built for another TensorRT version or GPU compute capability
   (:class:`EngineMismatchError`, telling the user to rebuild), because TensorRT plans are not
   portable across either;
4. deserialise the plan; for each named I/O tensor allocate a page-locked host buffer and a
   device buffer sized for the profile's largest face batch, bind the device buffer with
   ``set_tensor_address``; one CUDA stream.

``infer`` sets the face batch with ``set_input_shape``, copies inputs host -> device, runs
``execute_async_v3`` and copies outputs back on the same stream, synchronises, and returns
copies of the host buffers. Feeds larger than the engine's largest batch run in chunks.
A ``.onnx`` path is first turned into a cached engine (``precision``, ``max_faces``).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from facetrack.engines import names
from facetrack.engines.base import Backend, TensorSpec, check_model_path, order_specs, verify_metadata
from facetrack.engines.build import TensorRTBuilder, TensorRTUnavailableError, probe_platform, require_tensorrt
from facetrack.engines.engine_cache import EngineFileError, Platform, get_or_build, platform_mismatch, read_engine_file
from facetrack.engines.errors import ModelFileError

log = logging.getLogger(__name__)

__all__ = ["TensorRTBackend", "EngineMismatchError", "TensorRTUnavailableError", "check_engine_header"]


class EngineMismatchError(ModelFileError):
    """An engine built for another TensorRT version or GPU; the message says to rebuild it."""


def check_engine_header(metadata: Mapping[str, str], path: str | os.PathLike, platform: Platform | None = None) -> None:
    """Check an engine header: facetrack model metadata, a known precision, and (given
    ``platform``) that it was built for this TensorRT version and GPU compute capability.

    Raises :class:`ModelFileError` / :class:`EngineMismatchError` with a one-line message naming ``path``.
    """
    verify_metadata(metadata, path)
    for key in (names.TRT_VERSION, names.TRT_COMPUTE_CAPABILITY, names.TRT_PRECISION, names.TRT_PROFILE):
        if key not in metadata:
            raise ModelFileError(f"{path}: engine header lacks {key!r}; rebuild it with `facetrack build-engine`")
    if platform is not None:
        why = platform_mismatch(metadata, platform)
        if why:
            raise EngineMismatchError(
                f"{path}: engine {why}; TensorRT engines only run where they were built: rebuild it with "
                "`facetrack build-engine MODEL.onnx` (or delete it from the engine cache)"
            )


class TensorRTBackend(Backend):
    """A facetrack model in TensorRT on CUDA device ``device``.

    ``path``: a ``.engine``/``.plan`` file written by ``facetrack build-engine``, or a ``.onnx``
    model (an engine is built into the cache, ``cache_dir``, at ``precision`` for up to
    ``max_faces`` faces, or reused). All tensors are float32 at the interface.
    """

    name = "tensorrt"
    suffixes = (".engine", ".plan", ".onnx")

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: int = 0,
        precision: str = "fp16",
        max_faces: int = 8,
        cache_dir: str | os.PathLike | None = None,
        threads: int | None = None,
    ) -> None:
        # ``threads``: the CPU budget every backend takes (facetrack.engines.registry); the GPU
        # runtime has no CPU threads to set, so it is accepted and unused.
        super().__init__(path)
        p = check_model_path(path, "TensorRT engine")
        self._buffers: list[Any] = []
        self._cuda_ctx: Any = None
        if p.suffix.lower() == ".onnx":
            # Needs TensorRT before anything else; the cache checks platform and content.
            p = get_or_build(p, precision, max_faces, TensorRTBuilder(), lambda: probe_platform(device),
                             cache_dir=cache_dir)
            log.info("%s: using engine %s", self.path.name, p)
        try:
            meta, plan = read_engine_file(p)
        except EngineFileError as e:
            raise ModelFileError(str(e)) from None
        check_engine_header(meta, p)
        try:
            trt, cuda = require_tensorrt()
        except TensorRTUnavailableError as e:  # say which file could not be opened, and for what it was built
            raise TensorRTUnavailableError(f"{e}; cannot open {p} (built for {meta.get(names.TRT_GPU, 'an unnamed GPU')}, "
                                           f"TensorRT {meta[names.TRT_VERSION]})") from None
        platform = probe_platform(device)
        check_engine_header(meta, p, platform)
        self._engine_path = p
        self._metadata = {k: v for k, v in meta.items() if k.startswith("facetrack.")}
        self._trt, self._cuda = trt, cuda
        self._gpu = platform.gpu_name

        # A retained primary context (shared with PyTorch / ORT CUDA in the same process),
        # pushed around every call so any thread may call infer.
        self._cuda_ctx = cuda.Device(device).retain_primary_context()
        self._cuda_ctx.push()
        try:
            self._open(p, plan)
        except BaseException:
            self._release()
            cuda.Context.pop()
            self._cuda_ctx.detach()
            self._cuda_ctx = None
            raise
        cuda.Context.pop()
        log.info("%s: %s model (%s), TensorRT %s %s on %s, max %d faces", p.name, self.arch, self.kind,
                 platform.trt_version, meta[names.TRT_PRECISION], self._gpu, self._max_faces)

    def _open(self, p: Path, plan: bytes) -> None:
        trt, cuda = self._trt, self._cuda
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise ModelFileError(f"{p}: TensorRT could not deserialise the engine (corrupt, or built by another "
                                 "TensorRT): rebuild it with `facetrack build-engine MODEL.onnx`")
        self._engine = engine
        ins: list[TensorSpec] = []
        outs: list[TensorSpec] = []
        dynamic: dict[str, bool] = {}
        max_faces = None
        for i in range(engine.num_io_tensors):
            tname = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(tname)))
            shape = tuple(int(d) for d in engine.get_tensor_shape(tname))
            dynamic[tname] = shape[0] < 0
            if is_input and shape[0] < 0:
                profile_max = int(engine.get_tensor_profile_shape(tname, 0)[2][0])
                max_faces = profile_max if max_faces is None else min(max_faces, profile_max)
            spec = TensorSpec(tname, (names.BATCH_AXIS if shape[0] < 0 else shape[0],) + shape[1:], dtype)
            (ins if is_input else outs).append(spec)
        verify_metadata(self._metadata, p, [s.name for s in ins], [s.name for s in outs])
        bad = [str(s) for s in ins + outs if s.dtype != np.float32]
        if bad:
            raise ModelFileError(f"{p}: facetrack engines have float32 I/O, this one has {', '.join(bad)}")
        io = names.MODEL_IO[self.kind]
        self._inputs = order_specs(ins, io.inputs)
        self._outputs = order_specs(outs, io.outputs)
        if max_faces is None:  # fully static engine
            max_faces = int(self._inputs[0].shape[0])
        self._max_faces = max_faces
        self._dynamic = dynamic

        self._context = engine.create_execution_context()
        if self._context is None:
            raise ModelFileError(f"{p}: TensorRT could not create an execution context (out of GPU memory?)")
        self._stream = cuda.Stream()
        self._host: dict[str, np.ndarray] = {}
        self._device_mem: dict[str, Any] = {}
        for spec in self._inputs + self._outputs:
            per_face = int(np.prod([int(d) for d in spec.shape[1:]], dtype=np.int64))
            host = cuda.pagelocked_empty(max_faces * per_face, spec.dtype)
            dev = cuda.mem_alloc(host.nbytes)
            self._buffers.append(dev)
            self._host[spec.name] = host
            self._device_mem[spec.name] = dev
            if not self._context.set_tensor_address(spec.name, int(dev)):
                raise ModelFileError(f"{p}: TensorRT refused the buffer address of {spec.name!r}")

    # ---- description -------------------------------------------------------------------
    @property
    def device(self) -> str:
        return f"TensorRT {self._metadata.get(names.TRT_PRECISION, '')} ({self._gpu})".replace("  ", " ")

    @property
    def max_faces(self) -> int:
        """Largest face batch one engine execution takes (larger feeds run in chunks)."""
        return self._max_faces

    @property
    def engine_path(self) -> Path:
        """The engine file in use (in the cache when opened from ``.onnx``)."""
        return self._engine_path

    @property
    def profile(self) -> tuple[int, int, int]:
        """``(min, opt, max)`` face batch the engine was built for."""
        return tuple(json.loads(self._metadata[names.TRT_PROFILE]))  # type: ignore[return-value]

    # ---- running -----------------------------------------------------------------------
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = int(feed[self._inputs[0].name].shape[0])
        step = self._max_faces
        self._cuda_ctx.push()
        try:
            if n <= step:
                return self._run_chunk(feed)
            parts = [self._run_chunk({k: v[i:i + step] for k, v in feed.items()})
                     for i in range(0, n, step)]
            return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
        finally:
            self._cuda.Context.pop()

    def _run_chunk(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, ctx, stream = self._cuda, self._context, self._stream
        for spec in self._inputs:
            arr = np.ascontiguousarray(feed[spec.name], dtype=spec.dtype)
            if self._dynamic[spec.name] and not ctx.set_input_shape(spec.name, tuple(arr.shape)):
                raise RuntimeError(f"{self._engine_path.name}: TensorRT rejected input shape {arr.shape} for {spec.name!r}")
            host = self._host[spec.name][: arr.size]
            host[...] = arr.reshape(-1)
            cuda.memcpy_htod_async(self._device_mem[spec.name], host, stream)
        if not ctx.execute_async_v3(stream.handle):
            raise RuntimeError(f"{self._engine_path.name}: TensorRT execution failed (see the TensorRT log)")
        shapes: dict[str, tuple[int, ...]] = {}
        for spec in self._outputs:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(spec.name))
            shapes[spec.name] = shape
            size = int(np.prod(shape, dtype=np.int64))
            cuda.memcpy_dtoh_async(self._host[spec.name][:size], self._device_mem[spec.name], stream)
        stream.synchronize()
        # Copies: the page-locked buffers are overwritten by the next call.
        return {name: self._host[name][: int(np.prod(s, dtype=np.int64))].reshape(s).copy()
                for name, s in shapes.items()}

    def _release(self) -> None:
        for dev in self._buffers:
            try:
                dev.free()
            except Exception:  # already freed with its context
                pass
        self._buffers = []
        for attr in ("_context", "_engine", "_runtime"):
            if hasattr(self, attr):
                delattr(self, attr)

    def _close(self) -> None:
        if self._cuda_ctx is None:
            return
        self._cuda_ctx.push()
        try:
            self._release()
        finally:
            self._cuda.Context.pop()
            self._cuda_ctx.detach()
            self._cuda_ctx = None
