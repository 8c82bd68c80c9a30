"""The runtime interface every facetrack backend implements (ONNX Runtime, PyTorch, TensorRT).

A :class:`Backend` is opened on one model file, declares its input and output tensors
(:class:`TensorSpec`, in the order of :data:`facetrack.engines.names.MODEL_IO`) and the metadata
embedded in the file (``dict[str, str]``, keys of :mod:`facetrack.engines.names`), and is a context
manager. The public :meth:`Backend.infer` checks a feed against the declared inputs and then
calls the subclass's private ``_infer`` (the Polygraphy runner pattern); arrays it returns
may be buffers the backend reuses, so callers copy what they keep.

Only numpy is imported here; runtimes are imported by the subclasses' modules.
"""
from __future__ import annotations

import abc
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Mapping

import numpy as np

from facetrack.engines import names
from facetrack.engines.errors import FeedError, ModelFileError

#: Training configurations (``metadata[ARCH]``) and the model kind (``metadata[KIND]``) each exports.
ARCH_KIND: dict[str, str] = {"mdm": "mdm", "mdm-rt": "mdm", "aan": "aan"}

#: Sane ranges (inclusive) of the sizes a model file declares in its metadata, checked before
#: anything is allocated for it: the crop side ``S`` (shipped: 112; a crop of 1024 px is 4 MiB
#: per face, 60000 would be 13.4 GiB), MDM's recurrent width ``H`` (512) and steps ``T`` (4).
#: AAN declares 0 for both.
METADATA_RANGES: dict[str, tuple[int, int]] = {names.INPUT_SIZE: (8, 1024), names.HIDDEN_SIZE: (1, 8192), names.STEPS: (1, 32)}

Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: ``name`` (from :mod:`facetrack.engines.names`), ``shape`` with an
    ``int`` for a fixed dimension and ``None`` or a symbolic name (e.g. ``"faces"``) for a
    dynamic one, and numpy ``dtype`` (float32 for every facetrack tensor)."""

    name: str
    shape: tuple[Dim, ...]
    dtype: np.dtype = np.dtype(np.float32)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}[{dims}] {np.dtype(self.dtype).name}"


def verify_metadata(
    metadata: Mapping[str, str],
    path: str | os.PathLike,
    inputs: tuple[str, ...] | list[str] | None = None,
    outputs: tuple[str, ...] | list[str] | None = None,
) -> None:
    """Check that ``metadata`` (and, if given, the graph's input/output names) describe a
    facetrack model this version can run.

    Checks: every key of :data:`facetrack.engines.names.REQUIRED_KEYS`; the format version; a known
    kind and an arch of that kind; 68 points; an input size (and for ``mdm`` a hidden size and
    steps; ``aan``: 0) within :data:`METADATA_RANGES`; the I/O names are exactly
    ``MODEL_IO[kind]`` (any order).
    Raises :class:`ModelFileError` whose one-line message names ``path`` and the problem.
    """
    p = str(path)
    facetrack_keys = [k for k in metadata if k.startswith("facetrack.")]
    if not facetrack_keys:
        raise ModelFileError(f"{p}: no facetrack metadata in the model file (not a facetrack model; export one with `facetrack export`)")
    missing = [k for k in names.REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ModelFileError(f"{p}: model metadata lacks required key(s) {', '.join(missing)}")
    if metadata[names.FORMAT] != names.FORMAT_VERSION:
        raise ModelFileError(
            f"{p}: model format version {metadata[names.FORMAT]!r}, this facetrack reads version {names.FORMAT_VERSION!r}"
        )
    kind = metadata[names.KIND]
    if kind not in names.MODEL_IO:
        raise ModelFileError(f"{p}: unknown model kind {kind!r} (known: {', '.join(sorted(names.MODEL_IO))})")
    arch = metadata[names.ARCH]
    if ARCH_KIND.get(arch) != kind:
        raise ModelFileError(f"{p}: arch {arch!r} is not a {kind!r} model (known archs: {', '.join(sorted(ARCH_KIND))})")

    def _int(key: str, minimum: int, maximum: int | None = None) -> int:
        text = metadata[key]
        if len(text) > 20:
            raise ModelFileError(f"{p}: metadata {key} = {text[:20]!r}... is not an integer")
        try:
            value = int(text)
        except ValueError:
            raise ModelFileError(f"{p}: metadata {key} = {text!r} is not an integer") from None
        if value < minimum:
            raise ModelFileError(f"{p}: metadata {key} = {value}, expected at least {minimum}")
        if maximum is not None and value > maximum:
            raise ModelFileError(f"{p}: metadata {key} = {value}, expected at most {maximum} (refused: a model this large "
                                 f"is not a facetrack model, and would exhaust memory)")
        return value

    n_points = _int(names.N_POINTS, 0)
    if n_points != 68:
        raise ModelFileError(f"{p}: model predicts {n_points} points, facetrack needs 68")
    _int(names.INPUT_SIZE, *METADATA_RANGES[names.INPUT_SIZE])
    for key in (names.HIDDEN_SIZE, names.STEPS):
        if kind == "mdm":
            _int(key, *METADATA_RANGES[key])
        elif _int(key, 0) != 0:
            raise ModelFileError(f"{p}: metadata {key} = {metadata[key]}, an aan model has 0")
    io = names.MODEL_IO[kind]
    for what, got, want in (("inputs", inputs, io.inputs), ("outputs", outputs, io.outputs)):
        if got is not None and sorted(got) != sorted(want):
            raise ModelFileError(f"{p}: {kind} model must have {what} {list(want)}, the file has {list(got)}")


def verify_specs(path: str | os.PathLike, metadata: Mapping[str, str], inputs: tuple[TensorSpec, ...],
                 outputs: tuple[TensorSpec, ...]) -> None:
    """Check the tensors a model file declares (in ``MODEL_IO`` order) against its metadata:
    ``image`` is ``(N, 1, S, S)`` (one grey channel), ``init_shape`` and ``landmarks``
    ``(N, 68, 2)``, ``hidden`` and ``hidden_out`` ``(N, H)``, ``confidence`` ``(N,)``. Only what
    the file fixes is checked (a dynamic dimension passes; the probe of :func:`probe_backend`
    runs the model once to see what it does). Raises :class:`ModelFileError` naming ``path``."""
    s = int(metadata[names.INPUT_SIZE])
    h = int(metadata.get(names.HIDDEN_SIZE, "0") or 0)
    want = {names.IMAGE: (None, 1, s, s), names.INIT_SHAPE: (None, 68, 2), names.HIDDEN: (None, h),
            names.LANDMARKS: (None, 68, 2), names.CONFIDENCE: (None,), names.HIDDEN_OUT: (None, h)}
    for spec in (*inputs, *outputs):
        shape = want.get(spec.name)
        if shape is None or not spec.shape:  # no shape declared: the probe decides
            continue
        expected = "[" + ", ".join("faces" if d is None else str(d) for d in shape) + "]"
        if spec.rank != len(shape):
            raise ModelFileError(f"{path}: tensor {spec} should be {expected} (rank {len(shape)})")
        for axis, (got, need) in enumerate(zip(spec.shape[1:], shape[1:]), 1):
            if isinstance(got, int) and got >= 0 and got != need:
                what = " (facetrack crops are grey: one channel)" if spec.name == names.IMAGE and axis == 1 else ""
                raise ModelFileError(f"{path}: tensor {spec} should be {expected}{what}")


#: Largest |value| of a landmark, in crop pixels, the probe accepts (as the landmarker does:
#: beyond it no fit is usable)
PROBE_LIMIT = 1e7


def probe_feed(inputs: tuple[TensorSpec, ...], metadata: Mapping[str, str]) -> dict[str, np.ndarray]:
    """A one-face feed for a probe run: a grey crop with a soft bright disc on a gradient (not
    a flat image, which some normalisations divide by its zero spread), MDM's starting shape a
    ring of 68 points in the crop's middle (or the file's mean shape) and a zero recurrent state."""
    s = int(metadata[names.INPUT_SIZE])
    h = int(metadata.get(names.HIDDEN_SIZE, "0") or 0)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / max(s - 1, 1)
    disc = np.exp(-((xx - 0.5) ** 2 + (yy - 0.45) ** 2) / 0.05)
    image = (0.25 + 0.25 * xx + 0.4 * disc).astype(np.float32)[None, None]
    try:
        shape = np.asarray(json.loads(metadata.get(names.MEAN_SHAPE) or "null"), np.float32).reshape(68, 2)
    except (ValueError, TypeError):
        shape = None
    if shape is None or not np.isfinite(shape).all():
        t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
        shape = (s / 2 + s / 4 * np.stack([np.cos(t), np.sin(t)], 1)).astype(np.float32)
    feed = {names.IMAGE: np.ascontiguousarray(image), names.INIT_SHAPE: np.ascontiguousarray(shape[None]),
            names.HIDDEN: np.zeros((1, h), np.float32)}
    return {spec.name: feed[spec.name] for spec in inputs if spec.name in feed}


def probe_backend(backend: "Backend") -> None:
    """Run ``backend`` once on :func:`probe_feed` and refuse (:class:`ModelFileError`, one line
    naming the file) a model that fails to run on a facetrack crop (wrong input channels or
    sizes), returns outputs of the wrong shape (``landmarks`` must be ``(1, 68, 2)``,
    ``confidence`` one value, ``hidden_out`` ``(1, H)``), or non-finite numbers (NaN, infinity,
    landmarks beyond :data:`PROBE_LIMIT`): such a model can never give a fit, and would
    otherwise run with every face failing quietly. Costs one model call (about 1 ms for the
    shipped aan, 5 ms for mdm-rt, on the CPU)."""
    path = getattr(backend, "file", None) or backend.path
    meta = backend.metadata
    h = int(meta.get(names.HIDDEN_SIZE, "0") or 0)
    feed = probe_feed(backend.inputs, meta)
    try:
        out = backend.infer(feed)
    except Exception as e:  # noqa: BLE001 - every runtime raises its own types; the model is refused in one line
        text = str(e).strip().splitlines()
        first = text[-1] if text else type(e).__name__
        raise ModelFileError(f"{path}: refused: the model fails on a facetrack crop {tuple(feed[names.IMAGE].shape)} "
                             f"({first[:300]})") from None
    want = {names.LANDMARKS: (1, 68, 2), names.CONFIDENCE: (1,), names.HIDDEN_OUT: (1, h)}
    for name in names.MODEL_IO[backend.kind].outputs:
        arr = out.get(name)
        if arr is None:
            raise ModelFileError(f"{path}: refused: the model gives no '{name}' output")
        arr = np.asarray(arr)
        ok = arr.shape == want[name] or (name == names.CONFIDENCE and arr.size == 1)
        if not ok:
            raise ModelFileError(f"{path}: refused: on a probe crop its '{name}' output has shape {tuple(arr.shape)}, "
                                 f"expected {want[name]}")
        with np.errstate(invalid="ignore"):
            finite = bool(np.isfinite(arr).all()) and (name != names.LANDMARKS or bool(np.abs(arr).max() < PROBE_LIMIT))
        if not finite:
            raise ModelFileError(f"{path}: refused: its '{name}' output on a probe crop is not finite (NaN, infinite or "
                                 f"beyond {PROBE_LIMIT:g}): the model cannot fit any face")


def order_specs(specs: list[TensorSpec] | tuple[TensorSpec, ...], order: tuple[str, ...]) -> tuple[TensorSpec, ...]:
    """``specs`` reordered to ``order`` (names of :data:`facetrack.engines.names.MODEL_IO`)."""
    by_name = {s.name: s for s in specs}
    return tuple(by_name[n] for n in order)


class Backend(abc.ABC):
    """One model file loaded into one runtime.

    Subclasses set ``self._inputs``, ``self._outputs`` (tuples of :class:`TensorSpec` in
    ``MODEL_IO`` order) and ``self._metadata`` in ``__init__`` after calling
    ``super().__init__(path)`` and :func:`verify_metadata`, and implement ``_infer`` and
    ``_close``.
    """

    #: registry name ("onnxruntime", "torch", "tensorrt")
    name: ClassVar[str] = "backend"
    #: model file suffixes this class opens
    suffixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()
        self._metadata: dict[str, str] = {}
        self._closed = False

    # ---- description ----------------------------------------------------------------
    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """Input tensors in ``MODEL_IO[kind].inputs`` order."""
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Output tensors in ``MODEL_IO[kind].outputs`` order."""
        return self._outputs

    @property
    def metadata(self) -> dict[str, str]:
        """The model file's facetrack metadata (a copy): keys of :mod:`facetrack.engines.names`, string values."""
        return dict(self._metadata)

    @property
    def kind(self) -> str:
        """``"mdm"`` or ``"aan"``: selects the tensors of :data:`facetrack.engines.names.MODEL_IO`."""
        return self._metadata[names.KIND]

    @property
    def arch(self) -> str:
        """Training configuration name: ``"mdm"``, ``"mdm-rt"`` or ``"aan"``."""
        return self._metadata[names.ARCH]

    @property
    def input_size(self) -> int:
        """Crop side ``S`` in pixels."""
        return int(self._metadata[names.INPUT_SIZE])

    @property
    def hidden_size(self) -> int:
        """MDM recurrent state width ``H`` (0 for AAN)."""
        return int(self._metadata[names.HIDDEN_SIZE])

    @property
    def steps(self) -> int:
        """MDM cascade steps ``T`` (0 for AAN)."""
        return int(self._metadata[names.STEPS])

    @property
    def mean_shape(self) -> np.ndarray | None:
        """The template the model was trained with, ``(68, 2)`` float32 crop px, or ``None``."""
        text = self._metadata.get(names.MEAN_SHAPE)
        if not text:
            return None
        return np.asarray(json.loads(text), dtype=np.float32).reshape(-1, 2)

    @property
    def device(self) -> str:
        """Short label of where it runs, e.g. ``"ONNX Runtime CPU"`` (for logs and the GUI)."""
        return self.name

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self._inputs))
        return f"{type(self).__name__}({str(self.path)!r}, kind={self._metadata.get(names.KIND)}, inputs=[{ins}])"

    # ---- running ----------------------------------------------------------------------
    def check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`FeedError` naming the tensor unless ``feed`` holds exactly the
        declared inputs, each a C-contiguous float32 ``np.ndarray`` of the declared rank,
        matching fixed dimensions, with equal sizes for dynamic dimensions of the same name."""
        expected = [s.name for s in self._inputs]
        missing = [n for n in expected if n not in feed]
        extra = [n for n in feed if n not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if extra:
                parts.append(f"unexpected {extra}")
            raise FeedError(f"{self.path.name}: feed {' and '.join(parts)}; the model takes {expected}")
        symbolic: dict[str, tuple[str, int]] = {}
        for spec in self._inputs:
            arr = feed[spec.name]
            if not isinstance(arr, np.ndarray):
                raise FeedError(f"input '{spec.name}': expected a numpy array, got {type(arr).__name__}")
            if arr.dtype != spec.dtype:
                raise FeedError(f"input '{spec.name}': dtype {arr.dtype}, expected {np.dtype(spec.dtype).name}")
            if arr.ndim != spec.rank:
                raise FeedError(f"input '{spec.name}': shape {arr.shape} has rank {arr.ndim}, expected {spec}")
            for axis, (got, want) in enumerate(zip(arr.shape, spec.shape)):
                if isinstance(want, int) and want >= 0 and got != want:
                    raise FeedError(f"input '{spec.name}': shape {arr.shape}, expected {spec} (axis {axis} must be {want})")
                if isinstance(want, str) and want:
                    first = symbolic.setdefault(want, (spec.name, got))
                    if first[1] != got:
                        raise FeedError(
                            f"input '{spec.name}': axis {axis} ('{want}') is {got} but '{first[0]}' has {first[1]}"
                        )
            if not arr.flags.c_contiguous:
                raise FeedError(f"input '{spec.name}': array is not C-contiguous (use np.ascontiguousarray)")
            if arr.size == 0:
                raise FeedError(f"input '{spec.name}': empty array of shape {arr.shape}")

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feed`` (input name -> float32 array, shapes of :attr:`inputs`).

        Returns output name -> float32 array for every output in :attr:`outputs` order.
        The arrays may be reused by the next call: copy what you keep.
        Raises :class:`FeedError` for a feed that does not match, ``RuntimeError`` after close.
        """
        if self._closed:
            raise RuntimeError(f"{self.path.name}: backend is closed")
        self.check_feed(feed)
        return self._infer(feed)

    @abc.abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a checked feed; return every output by name."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release runtime resources (sessions, GPU buffers)."""

    def close(self) -> None:
        """Release the runtime's resources; idempotent. ``infer`` afterwards raises."""
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def check_model_path(path: str | os.PathLike, what: str = "model") -> Path:
    """Common file checks before a runtime sees ``path``: it exists, is a file, is not empty.
    Raises :class:`ModelFileError` naming the file."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such {what} file")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, not a {what} file")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{p}: empty file, not a {what}")
    return p


def looks_like_text(path: Path, n: int = 512) -> bool:
    """True if the first ``n`` bytes decode as UTF-8 text without control characters
    (a serialized protobuf or engine virtually always has some)."""
    with open(path, "rb") as f:
        head = f.read(n)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character may be cut at the end of the sample
        try:
            text = head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)
