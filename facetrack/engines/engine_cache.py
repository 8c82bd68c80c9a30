"""TensorRT engine files and the engine cache.

**Engine file format** (``.engine``): one self-describing file, no sidecar, so an engine
cannot be separated from the facts needed to check it::

    b"FTRTENG1"            8 bytes, magic
    uint32 little-endian   length L of the JSON header in bytes
    L bytes                JSON object, str -> str: the model's ONNX metadata (keys of
                           facetrack/engines/names.py) plus the ``facetrack.trt.*`` keys, the ONNX file's
                           sha256 and ``facetrack.trt.engine_bytes`` (the plan's length, which
                           detects a truncated file)
    the rest               TensorRT's serialised plan (``build_serialized_network`` bytes)

A prepended header was chosen over a sidecar JSON so that copying, caching or renaming a
single file always keeps metadata and plan together; ``trtexec --loadEngine`` cannot read the
file directly (``facetrack build-engine`` does not target trtexec).

**Cache**: ``get_or_build`` keeps one engine per (ONNX content, precision, max faces) in the
cache directory (``$FACETRACK_CACHE`` or ``~/.cache/facetrack/engines``) and rebuilds it where it
is missing, corrupt, or stale: the cache key (sha256 over ONNX sha256, precision, max faces,
TensorRT version, GPU compute capability) stored in its header differs from this machine's.
The builder and the platform probe are injected (small protocols below), so this logic is
tested with fakes on machines without TensorRT. Writes are atomic (temporary file + rename).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from facetrack.engines import names

log = logging.getLogger(__name__)

MAGIC = b"FTRTENG1"
_LEN = struct.Struct("<I")
#: Header key (not ONNX metadata, so kept here): byte length of the plan after the header.
ENGINE_BYTES = "facetrack.trt.engine_bytes"
PRECISIONS = ("fp32", "fp16")
ENGINE_SUFFIX = ".engine"


class EngineFileError(ValueError):
    """An engine file is missing, corrupt or does not match; the message names the file."""


@dataclass(frozen=True)
class Platform:
    """What a TensorRT engine is specific to.

    ``trt_version``: ``tensorrt.__version__``; ``gpu_name``: the device's name;
    ``compute_capability``: ``"major.minor"`` (e.g. ``"8.6"``).
    """

    trt_version: str
    gpu_name: str
    compute_capability: str


@dataclass(frozen=True)
class BuildSpec:
    """What to build: ``onnx_path`` at ``precision`` (``"fp32"``/``"fp16"``) for up to ``max_faces``.

    ``timing_cache``: TensorRT timing-cache file to read and update (``None``: none);
    ``workspace_mb``: builder workspace limit in MiB (``None``: TensorRT's default).
    """

    onnx_path: Path
    precision: str = "fp32"
    max_faces: int = 1
    workspace_mb: int | None = None
    timing_cache: Path | None = None


@dataclass(frozen=True)
class BuiltEngine:
    """A builder's result: the serialised plan and metadata to store (ONNX metadata, build notes)."""

    plan: bytes
    metadata: dict[str, str] = field(default_factory=dict)


class EngineBuilder(Protocol):
    """Builds a plan for ``spec`` on ``platform`` (``facetrack.engines.build.TensorRTBuilder`` for real)."""

    def __call__(self, spec: BuildSpec, platform: Platform) -> BuiltEngine: ...


PlatformProbe = Callable[[], Platform]
"""Returns this machine's :class:`Platform` (``facetrack.engines.build.probe_platform`` for real)."""


# --------------------------------------------------------------------------- file format
def write_engine_file(path: str | Path, metadata: dict[str, str], plan: bytes) -> Path:
    """Write ``magic + len + JSON(metadata) + plan`` to ``path`` atomically; returns the path.

    ``metadata`` values must be strings; ``ENGINE_BYTES`` is added. A temporary file in the
    same directory is renamed over ``path``, so readers never see a half-written engine.
    """
    p = Path(path)
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"{p}: engine metadata keys and values must be strings: {bad}")
    meta = dict(metadata)
    meta[ENGINE_BYTES] = str(len(plan))
    header = json.dumps(meta, sort_keys=True).encode("utf-8")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(_LEN.pack(len(header)))
            f.write(header)
            f.write(plan)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _read(path: Path, with_plan: bool) -> tuple[dict[str, str], bytes]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(len(MAGIC))
            if magic != MAGIC:
                raise EngineFileError(
                    f"{path}: not a facetrack engine file (bad magic {magic[:8]!r}); "
                    "rebuild it with `facetrack build-engine MODEL.onnx`"
                )
            raw_len = f.read(_LEN.size)
            if len(raw_len) != _LEN.size:
                raise EngineFileError(f"{path}: truncated engine file (no header length)")
            (n,) = _LEN.unpack(raw_len)
            raw = f.read(n)
            if len(raw) != n:
                raise EngineFileError(f"{path}: truncated engine file (header {len(raw)} of {n} bytes)")
            try:
                meta = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise EngineFileError(f"{path}: corrupt engine header JSON ({e})") from None
            if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
                raise EngineFileError(f"{path}: engine header is not a JSON object of strings")
            try:
                plan_len = int(meta[ENGINE_BYTES])
            except (KeyError, ValueError):
                raise EngineFileError(f"{path}: engine header lacks a valid {ENGINE_BYTES!r}") from None
            have = size - len(MAGIC) - _LEN.size - n
            if have != plan_len:
                raise EngineFileError(
                    f"{path}: truncated or padded engine file (plan has {have} bytes, header says {plan_len})"
                )
            plan = f.read() if with_plan else b""
    except FileNotFoundError:
        raise EngineFileError(f"{path}: no such engine file") from None
    except IsADirectoryError:
        raise EngineFileError(f"{path}: is a directory, not an engine file") from None
    return meta, plan


def read_engine_header(path: str | Path) -> dict[str, str]:
    """The JSON header of an engine file (checked for magic, JSON and length; plan not read)."""
    return _read(Path(path), with_plan=False)[0]


def read_engine_file(path: str | Path) -> tuple[dict[str, str], bytes]:
    """``(metadata, plan)`` of an engine file; :class:`EngineFileError` naming it if corrupt."""
    return _read(Path(path), with_plan=True)


# --------------------------------------------------------------------------- keys
def file_sha256(path: str | os.PathLike, limit: int | None = None) -> str:
    """Hex sha256 of a file's bytes, of its first ``limit`` bytes when given. The one file hash
    of facetrack: engine cache keys, int8 variants' sources, run records, benchmark records."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def check_build_args(precision: str, max_faces: int) -> None:
    """:class:`ValueError` for a precision outside ``PRECISIONS`` or ``max_faces < 1``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if int(max_faces) != max_faces or max_faces < 1:
        raise ValueError(f"max_faces must be a positive integer, not {max_faces!r}")


def cache_key(onnx_sha256: str, precision: str, max_faces: int, trt_version: str, compute_capability: str) -> str:
    """Hex sha256 over the five facts a built engine depends on (GPU name deliberately excluded:
    engines are portable between GPUs of one compute capability)."""
    check_build_args(precision, max_faces)
    facts = {
        "onnx_sha256": onnx_sha256,
        "precision": precision,
        "max_faces": int(max_faces),
        "trt_version": trt_version,
        "compute_capability": compute_capability,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()


def profile_for(max_faces: int) -> tuple[int, int, int]:
    """``(min, opt, max)`` of the face axis: ``(1, 1, max_faces)`` (batch 1 is the tracking case)."""
    return (1, 1, int(max_faces))


def engine_metadata(
    built: BuiltEngine, spec: BuildSpec, platform: Platform, onnx_sha256: str
) -> dict[str, str]:
    """The header of an engine: the builder's metadata plus the facts the cache checks."""
    meta = dict(built.metadata)
    meta.update(
        {
            names.ONNX_SHA256: onnx_sha256,
            names.TRT_VERSION: platform.trt_version,
            names.TRT_GPU: platform.gpu_name,
            names.TRT_COMPUTE_CAPABILITY: platform.compute_capability,
            names.TRT_PRECISION: spec.precision,
            names.TRT_PROFILE: json.dumps(list(profile_for(spec.max_faces))),
            names.TRT_CACHE_KEY: cache_key(
                onnx_sha256, spec.precision, spec.max_faces, platform.trt_version, platform.compute_capability
            ),
        }
    )
    return meta


def platform_mismatch(metadata: dict[str, str], platform: Platform) -> str | None:
    """Why an engine with header ``metadata`` cannot run on ``platform``, or ``None`` if it can."""
    built_v = metadata.get(names.TRT_VERSION)
    built_cc = metadata.get(names.TRT_COMPUTE_CAPABILITY)
    problems = []
    if built_v != platform.trt_version:
        problems.append(f"TensorRT {built_v} (this machine: {platform.trt_version})")
    if built_cc != platform.compute_capability:
        problems.append(
            f"compute capability {built_cc} / {metadata.get(names.TRT_GPU, '?')} "
            f"(this machine: {platform.compute_capability} / {platform.gpu_name})"
        )
    return "built for " + " and ".join(problems) if problems else None


def default_cache_dir() -> Path:
    """``$FACETRACK_CACHE`` if set (used as the engine directory itself), else ``~/.cache/facetrack/engines``."""
    env = os.environ.get("FACETRACK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facetrack" / "engines"


def cached_engine_path(cache_dir: Path, onnx_path: Path, onnx_sha256: str, precision: str, max_faces: int) -> Path:
    """Where the engine of one (ONNX content, precision, max faces) lives in the cache.

    Platform facts are not in the name: after a TensorRT upgrade or a GPU swap the same path is
    found, seen to be stale from its header, and rebuilt in place.
    """
    return cache_dir / f"{onnx_path.stem}-{onnx_sha256[:12]}-{precision}-b{int(max_faces)}{ENGINE_SUFFIX}"


def timing_cache_path(cache_dir: Path, platform: Platform) -> Path:
    """The TensorRT timing-cache file shared by all builds for one TensorRT version and GPU kind."""
    cc = platform.compute_capability.replace(".", "")
    return cache_dir / f"timing-trt{platform.trt_version}-sm{cc}.cache"


def build_engine_file(
    spec: BuildSpec, out_path: str | Path, builder: EngineBuilder, platform: Platform, onnx_sha256: str | None = None
) -> Path:
    """Build ``spec`` with ``builder`` and write the engine file (header + plan) atomically to ``out_path``."""
    check_build_args(spec.precision, spec.max_faces)
    sha = onnx_sha256 or file_sha256(spec.onnx_path)
    built = builder(spec, platform)
    if not built.plan:
        raise EngineFileError(f"{spec.onnx_path}: the builder returned an empty engine")
    return write_engine_file(out_path, engine_metadata(built, spec, platform, sha), built.plan)


def get_or_build(
    onnx_path: str | Path,
    precision: str,
    max_faces: int,
    builder: EngineBuilder,
    probe: PlatformProbe,
    *,
    cache_dir: str | Path | None = None,
    workspace_mb: int | None = None,
) -> Path:
    """Path of an up-to-date engine for ``onnx_path`` in the cache, building it if needed.

    Rebuilds when the cached file is missing, corrupt (bad magic, truncated, bad JSON: logged
    as a warning) or stale (its stored cache key differs: another ONNX file content, TensorRT
    version or GPU compute capability; logged with the reason).
    """
    onnx = Path(onnx_path)
    check_build_args(precision, max_faces)
    if not onnx.is_file():
        raise FileNotFoundError(f"{onnx}: no such ONNX file")
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    platform = probe()
    sha = file_sha256(onnx)
    key = cache_key(sha, precision, max_faces, platform.trt_version, platform.compute_capability)
    path = cached_engine_path(cdir, onnx, sha, precision, max_faces)
    if path.exists():
        try:
            meta = read_engine_header(path)
        except EngineFileError as e:
            log.warning("%s; rebuilding", e)
        else:
            if meta.get(names.TRT_CACHE_KEY) == key:
                log.debug("%s: cached engine is up to date", path)
                return path
            why = platform_mismatch(meta, platform) or "its cache key differs (ONNX content, precision or profile)"
            log.info("%s: stale engine, %s; rebuilding", path, why)
    else:
        log.info("%s: no cached engine; building (%s, max %d faces)", path, precision, max_faces)
    spec = BuildSpec(onnx, precision, int(max_faces), workspace_mb, timing_cache_path(cdir, platform))
    return build_engine_file(spec, path, builder, platform, sha)
