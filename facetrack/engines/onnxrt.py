"""ONNX Runtime backend: the CPU default everywhere, CUDA when asked for and present.

The model's facetrack metadata is read from the ONNX ``metadata_props``
(``InferenceSession.get_modelmeta().custom_metadata_map``), so no side file is needed.
On the CPU, a model ``NAME.onnx`` runs as ``NAME.int8.onnx`` when that file lies beside it and
was made from this very file (its ``facetrack.int8.source_sha256``; made by
:mod:`facetrack.train.export.quantize`): int8 weights in the matrix products, about a third less CPU per
call for mdm-rt; a stale one is ignored with a warning.
``onnxruntime`` is imported when a session is made, not when this module is imported.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Mapping

from typing import TYPE_CHECKING, Any

import numpy as np

from facetrack.engines import names
from facetrack.engines.engine_cache import file_sha256
from facetrack.engines.base import (Backend, TensorSpec, check_model_path, looks_like_text, order_specs, verify_metadata,
                                    verify_specs)
from facetrack.engines.errors import BackendUnavailableError, ModelFileError
from facetrack.engines.onnx_weights import WeightsFormatError, weights_sha256

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

#: ONNX Runtime's session option for intra-op threads that busy-wait for work ("0": they sleep)
ALLOW_SPINNING = "session.intra_op.allow_spinning"

_ORT_DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16), "tensor(double)": np.dtype(np.float64),
               "tensor(int64)": np.dtype(np.int64), "tensor(int32)": np.dtype(np.int32)}


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def default_threads() -> int:
    """Intra-op threads for the CPU provider: 1.

    Chosen by CPU time, not wall time: the tracker runs beside decoding, drawing and the GUI,
    usually on a loaded machine. mdm-rt, batch 1, 2 shared cores (load 7): 1 thread 4.95 ms
    CPU per call; 2 threads 9.31 ms (ONNX Runtime's idle threads spin); 2 threads with
    spinning off 4.83 ms (``/work/runs/cpu/ort_threads.py``, docs/DETECTORS.md). More threads
    can be asked for (``threads=``); they never spin.
    """
    return 1


def cuda_provider_available() -> bool:
    """Whether this ONNX Runtime build lists the CUDA execution provider (``onnxruntime-gpu``);
    says nothing about a GPU being present."""
    return CUDA_PROVIDER in _ort().get_available_providers()


def _spec(arg: "onnxruntime.NodeArg") -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or None) for d in (arg.shape or ()))
    return TensorSpec(arg.name, shape, _ORT_DTYPES.get(arg.type, np.dtype(object)))


def verify_weights(path: str | os.PathLike, metadata: Mapping[str, str]) -> None:
    """Check the file's weights against the checksum its export embedded (``names.CHECKSUM``,
    sha256 over the initializers: :mod:`facetrack.engines.onnx_weights`). A file without one (an
    export older than the checksum, a hand-built model) passes with a log line. Raises
    :class:`ModelFileError` naming the file when they differ (a damaged or altered file) or
    cannot be read."""
    stored = metadata.get(names.CHECKSUM)
    if not stored:
        log.info("%s: no %s in the file; its weights are not checked", Path(path).name, names.CHECKSUM)
        return
    try:
        actual = weights_sha256(path)
    except (WeightsFormatError, OSError) as e:
        raise ModelFileError(f"{path}: weights cannot be checked against {names.CHECKSUM} ({e})") from None
    if actual != stored.strip().lower():
        raise ModelFileError(f"{path}: weights do not match the checksum stored in the file ({names.CHECKSUM} "
                             f"{stored[:12]}..., the weights hash to {actual[:12]}...): the file is damaged or was altered; "
                             f"export or download it again")


def int8_path(path: str | os.PathLike) -> Path:
    """Where the int8 variant of ``NAME.onnx`` lies: ``NAME.int8.onnx`` beside it."""
    p = Path(path)
    return p.with_name(p.stem + ".int8.onnx")


def int8_variant(path: str | os.PathLike) -> Path | None:
    """:func:`int8_path` of ``path`` if that file exists (whether it is current is checked on load)."""
    if Path(path).name.endswith(".int8.onnx"):
        return None
    q = int8_path(path)
    return q if q.is_file() else None


class OnnxRuntimeBackend(Backend):
    """A facetrack ``.onnx`` model in an ``onnxruntime.InferenceSession``.

    ``device``: ``"cpu"`` or ``"cuda"`` (raises :class:`BackendUnavailableError` when the CUDA
    provider is missing or fails to load: no silent fallback to the CPU).
    ``threads``: intra-op threads on the CPU (default :func:`default_threads`); they sleep
    when idle instead of spinning. ``int8``: on the CPU, run the file's int8 variant when there
    is one made from it (:func:`int8_variant`; ``self.file`` says which file runs).
    Raises :class:`ModelFileError` naming the file for a missing, empty, text or non-ONNX file,
    or an ONNX model that is not a facetrack model.
    """

    name = "onnxruntime"
    suffixes = (".onnx",)

    def __init__(self, path: str | os.PathLike, *, device: Literal["cpu", "cuda"] = "cpu", threads: int | None = None,
                 int8: bool = True) -> None:
        super().__init__(path)
        p = check_model_path(path, "ONNX model")
        if looks_like_text(p):
            raise ModelFileError(f"{p}: a text file, not an ONNX model")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
        ort = _ort()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads) if threads else default_threads()
        opts.inter_op_num_threads = 1
        # spinning threads doubled the CPU time per frame for the same work (see default_threads)
        opts.add_session_config_entry(ALLOW_SPINNING, "0")
        opts.log_severity_level = 4  # fatal only: ORT prints its errors on stderr besides raising them, and they are raised
        if device == "cuda":
            if not cuda_provider_available():
                raise BackendUnavailableError(
                    f"{p}: ONNX Runtime CUDA asked for, but this onnxruntime has no {CUDA_PROVIDER} (install onnxruntime-gpu)"
                )
            providers = [CUDA_PROVIDER, CPU_PROVIDER]
        else:
            providers = [CPU_PROVIDER]

        def session(f: Path) -> Any:
            try:
                return ort.InferenceSession(str(f), sess_options=opts, providers=providers)
            except Exception as e:  # ORT raises its own pybind exception types (InvalidProtobuf, Fail, ...)
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ModelFileError(f"{f}: not a loadable ONNX model ({first})") from None

        #: the file that runs: ``path``, or its int8 variant on the CPU
        self.file = Path(p)
        self._session = None
        q = int8_variant(p)
        if device == "cpu" and int8 and q is not None:
            try:
                s = session(q)
            except ModelFileError as e:  # a broken variant must not stop the model it stands in for
                log.warning("%s; running the float32 model", e)
            else:
                q_meta = s.get_modelmeta().custom_metadata_map
                made_from = q_meta.get(names.INT8_SOURCE)
                if made_from == file_sha256(p):
                    try:
                        verify_weights(q, q_meta)
                    except ModelFileError as e:  # as a broken variant: the float32 file, checked itself, runs
                        log.warning("%s; running the float32 model", e)
                    else:
                        self._session, self.file = s, q
                else:
                    log.warning("%s: not made from %s as it is now (re-run facetrack.train.export.quantize); running the float32 model", q, p.name)
        if self._session is None:
            self._session = session(p)
        if device == "cuda" and CUDA_PROVIDER not in self._session.get_providers():
            raise BackendUnavailableError(f"{p}: ONNX Runtime could not start {CUDA_PROVIDER} (no GPU or CUDA libraries)")
        self._device = device
        meta = self._session.get_modelmeta().custom_metadata_map
        ins = [_spec(a) for a in self._session.get_inputs()]
        outs = [_spec(a) for a in self._session.get_outputs()]
        verify_metadata(meta, p, [s.name for s in ins], [s.name for s in outs])
        if self.file == Path(p):  # the int8 variant was checked before it was chosen
            verify_weights(p, meta)
        self._metadata = {k: v for k, v in meta.items() if k.startswith("facetrack.")}
        io = names.MODEL_IO[self._metadata[names.KIND]]
        self._inputs = order_specs(ins, io.inputs)
        self._outputs = order_specs(outs, io.outputs)
        verify_specs(self.file, self._metadata, self._inputs, self._outputs)
        bad = [str(s) for s in self._inputs + self._outputs if s.dtype != np.float32]
        if bad:
            raise ModelFileError(f"{p}: facetrack tensors are float32, the file has {', '.join(bad)}")
        image = self._inputs[0]
        size = self.input_size
        if any(isinstance(d, int) and d != size for d in image.shape[2:]):
            raise ModelFileError(f"{p}: input {image} does not match metadata input_size {size}")
        self._output_names = [s.name for s in self._outputs]
        log.info("%s: %s model (%s), %s, %d thread(s)", self.file.name, self.arch, self.kind, self.device, opts.intra_op_num_threads)

    @property
    def device(self) -> str:
        return "ONNX Runtime CUDA" if self._device == "cuda" else "ONNX Runtime CPU"

    @property
    def providers(self) -> list[str]:
        """The session's execution providers, in priority order."""
        return list(self._session.get_providers())

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._session.run(self._output_names, dict(feed))
        return dict(zip(self._output_names, results))

    def _close(self) -> None:
        self._session = None  # type: ignore[assignment]
