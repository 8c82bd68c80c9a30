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
    kind and an arch of that kind; 68 points; a positive integer input size (and hidden size /
    steps for ``mdm``); the I/O names are exactly ``MODEL_IO[kind]`` (any order).
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

    def _int(key: str, minimum: int) -> int:
        try:
            value = int(metadata[key])
        except ValueError:
            raise ModelFileError(f"{p}: metadata {key} = {metadata[key]!r} is not an integer") from None
        if value < minimum:
            raise ModelFileError(f"{p}: metadata {key} = {value}, expected at least {minimum}")
        return value

    n_points = _int(names.N_POINTS, 0)
    if n_points != 68:
        raise ModelFileError(f"{p}: model predicts {n_points} points, facetrack needs 68")
    _int(names.INPUT_SIZE, 8)
    _int(names.HIDDEN_SIZE, 1 if kind == "mdm" else 0)
    _int(names.STEPS, 1 if kind == "mdm" else 0)
    io = names.MODEL_IO[kind]
    for what, got, want in (("inputs", inputs, io.inputs), ("outputs", outputs, io.outputs)):
        if got is not None and sorted(got) != sorted(want):
            raise ModelFileError(f"{p}: {kind} model must have {what} {list(want)}, the file has {list(got)}")


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
