"""Engine file header and engine cache logic, with a fake builder and probe (runs everywhere)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from facetrack.engines import names
from facetrack.engines.engine_cache import (
    ENGINE_BYTES,
    MAGIC,
    BuildSpec,
    BuiltEngine,
    EngineFileError,
    Platform,
    cache_key,
    cached_engine_path,
    default_cache_dir,
    file_sha256,
    get_or_build,
    platform_mismatch,
    read_engine_file,
    read_engine_header,
    write_engine_file,
)

A100 = Platform("10.13.0.35", "NVIDIA A100-SXM4-40GB", "8.0")
ONNX_META = {names.KIND: "aan", names.ARCH: "aan", names.INPUT_SIZE: "112"}


class FakeBuilder:
    """Records its calls; the 'plan' encodes what it was asked for, so a test can tell builds apart."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[BuildSpec, Platform]] = []
        self.fail = fail

    def __call__(self, spec: BuildSpec, platform: Platform) -> BuiltEngine:
        self.calls.append((spec, platform))
        if self.fail:
            raise RuntimeError("builder exploded")
        plan = f"PLAN {spec.precision} {spec.max_faces} {platform.trt_version} {platform.compute_capability} #{len(self.calls)}"
        return BuiltEngine(plan.encode() * 50, dict(ONNX_META))


@pytest.fixture()
def onnx_file(tmp_path: Path) -> Path:
    p = tmp_path / "model.onnx"
    p.write_bytes(b"\x08\x07 not really onnx, the cache only hashes it " * 10)
    return p


# ---------------------------------------------------------------- header
def test_header_round_trip(tmp_path: Path) -> None:
    plan = bytes(range(256)) * 40  # every byte value, including the magic's and NULs
    meta = {names.KIND: "mdm", names.MEAN_SHAPE: json.dumps([[1.5, 2.25]] * 68), "ünïcode": "ж"}
    path = write_engine_file(tmp_path / "sub" / "m.engine", meta, plan)
    got_meta, got_plan = read_engine_file(path)
    assert got_plan == plan
    assert got_meta == {**meta, ENGINE_BYTES: str(len(plan))}
    assert read_engine_header(path) == got_meta
    assert path.read_bytes().startswith(MAGIC)
    assert [p.name for p in path.parent.iterdir()] == ["m.engine"]  # no temp file left


def test_header_rejects_non_string_values(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="strings"):
        write_engine_file(tmp_path / "m.engine", {"facetrack.kind": 3}, b"plan")  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b"ONNXxxxx" + b[8:], "bad magic"),
        (lambda b: b[:10], "truncated engine file"),
        (lambda b: b[:-5], "truncated or padded"),
        (lambda b: b + b"extra", "truncated or padded"),
        (lambda b: b[:12] + b"{" * 3 + b[15:], "corrupt engine header JSON"),
        (lambda b: b"", "bad magic"),
    ],
    ids=["magic", "short-header", "short-plan", "long-plan", "json", "empty"],
)
def test_corrupt_engine_files_name_the_file(tmp_path: Path, damage, message: str) -> None:
    path = write_engine_file(tmp_path / "m.engine", {"a": "b"}, b"P" * 100)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(EngineFileError, match=message) as exc:
        read_engine_file(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_engine_file(tmp_path: Path) -> None:
    with pytest.raises(EngineFileError, match="no such engine file"):
        read_engine_header(tmp_path / "nope.engine")


# ---------------------------------------------------------------- key
BASE = dict(onnx_sha256="ab" * 32, precision="fp16", max_faces=8, trt_version="10.13.0.35", compute_capability="8.6")


@pytest.mark.parametrize(
    "field, other",
    [("onnx_sha256", "cd" * 32), ("precision", "fp32"), ("max_faces", 1), ("trt_version", "10.12.0.36"),
     ("compute_capability", "8.9")],
)
def test_cache_key_changes_with_each_input(field: str, other) -> None:
    key = cache_key(**BASE)
    assert key == cache_key(**BASE)  # deterministic
    assert cache_key(**{**BASE, field: other}) != key


def test_cache_key_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="precision"):
        cache_key(**{**BASE, "precision": "int8"})
    with pytest.raises(ValueError, match="max_faces"):
        cache_key(**{**BASE, "max_faces": 0})


def test_platform_mismatch_says_what_differs() -> None:
    meta = {names.TRT_VERSION: "10.3.0", names.TRT_COMPUTE_CAPABILITY: "8.0", names.TRT_GPU: "A100"}
    assert platform_mismatch(meta, Platform("10.3.0", "A100", "8.0")) is None
    why = platform_mismatch(meta, Platform("10.5.0", "H100", "9.0"))
    assert "TensorRT 10.3.0 (this machine: 10.5.0)" in why and "compute capability 8.0" in why and "9.0" in why


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FACETRACK_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "facetrack" / "engines"


# ---------------------------------------------------------------- get_or_build
def test_builds_once_then_reuses(onnx_file: Path, tmp_path: Path) -> None:
    builder = FakeBuilder()
    cache = tmp_path / "cache"
    p1 = get_or_build(onnx_file, "fp16", 4, builder, lambda: A100, cache_dir=cache, workspace_mb=256)
    p2 = get_or_build(onnx_file, "fp16", 4, builder, lambda: A100, cache_dir=cache)
    assert p1 == p2 and p1.parent == cache and len(builder.calls) == 1
    spec, platform = builder.calls[0]
    assert (spec.precision, spec.max_faces, spec.workspace_mb, platform) == ("fp16", 4, 256, A100)
    assert spec.timing_cache is not None and spec.timing_cache.parent == cache and "sm80" in spec.timing_cache.name
    meta, plan = read_engine_file(p1)
    assert plan.startswith(b"PLAN fp16 4 10.13.0.35 8.0 #1")
    sha = file_sha256(onnx_file)
    assert meta[names.ONNX_SHA256] == sha
    assert meta[names.TRT_CACHE_KEY] == cache_key(sha, "fp16", 4, "10.13.0.35", "8.0")
    assert meta[names.TRT_GPU] == A100.gpu_name and meta[names.TRT_COMPUTE_CAPABILITY] == "8.0"
    assert json.loads(meta[names.TRT_PROFILE]) == [1, 1, 4]
    assert meta[names.KIND] == "aan"  # the builder's ONNX metadata is kept


def test_other_precision_or_profile_is_another_engine(onnx_file: Path, tmp_path: Path) -> None:
    builder = FakeBuilder()
    paths = {get_or_build(onnx_file, prec, n, builder, lambda: A100, cache_dir=tmp_path)
             for prec, n in [("fp16", 1), ("fp32", 1), ("fp16", 8), ("fp16", 1)]}
    assert len(paths) == 3 and len(builder.calls) == 3


@pytest.mark.parametrize(
    "new_platform, reason",
    [(Platform("10.14.1.48", A100.gpu_name, "8.0"), "TensorRT 10.13.0.35 (this machine: 10.14.1.48)"),
     (Platform("10.13.0.35", "NVIDIA H100", "9.0"), "compute capability 8.0")],
    ids=["other-tensorrt", "other-gpu"],
)
def test_stale_engine_is_rebuilt(onnx_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                 new_platform: Platform, reason: str) -> None:
    builder = FakeBuilder()
    old = get_or_build(onnx_file, "fp32", 1, builder, lambda: A100, cache_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="facetrack.engines.engine_cache"):
        new = get_or_build(onnx_file, "fp32", 1, builder, lambda: new_platform, cache_dir=tmp_path)
    assert new == old and len(builder.calls) == 2  # rebuilt in place
    assert builder.calls[1][1] == new_platform
    meta = read_engine_header(new)
    assert meta[names.TRT_VERSION] == new_platform.trt_version
    assert meta[names.TRT_COMPUTE_CAPABILITY] == new_platform.compute_capability
    assert any("stale engine" in r.getMessage() and reason in r.getMessage() for r in caplog.records)


def test_changed_onnx_content_builds_a_new_engine(onnx_file: Path, tmp_path: Path) -> None:
    builder = FakeBuilder()
    a = get_or_build(onnx_file, "fp32", 1, builder, lambda: A100, cache_dir=tmp_path)
    onnx_file.write_bytes(onnx_file.read_bytes() + b"retrained")
    b = get_or_build(onnx_file, "fp32", 1, builder, lambda: A100, cache_dir=tmp_path)
    assert a != b and len(builder.calls) == 2


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"garbage" + b[7:],
                                    lambda b: b[:12] + b"\xff\xfe" + b[14:]], ids=["truncated", "magic", "json"])
def test_corrupt_cached_engine_logs_and_rebuilds(onnx_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                 damage) -> None:
    builder = FakeBuilder()
    path = get_or_build(onnx_file, "fp16", 2, builder, lambda: A100, cache_dir=tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="facetrack.engines.engine_cache"):
        again = get_or_build(onnx_file, "fp16", 2, builder, lambda: A100, cache_dir=tmp_path)
    assert again == path and len(builder.calls) == 2
    read_engine_file(again)  # whole again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "rebuilding" in warnings[0]


def test_failed_build_leaves_previous_engine_and_no_temp_files(onnx_file: Path, tmp_path: Path) -> None:
    good = get_or_build(onnx_file, "fp32", 1, FakeBuilder(), lambda: A100, cache_dir=tmp_path)
    before = good.read_bytes()
    with pytest.raises(RuntimeError, match="builder exploded"):
        get_or_build(onnx_file, "fp32", 1, FakeBuilder(fail=True), lambda: Platform("11.0", "x", "9.0"), cache_dir=tmp_path)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.onnx", good.name])


def test_missing_onnx_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        get_or_build(tmp_path / "none.onnx", "fp32", 1, FakeBuilder(), lambda: A100, cache_dir=tmp_path)


def test_cached_name_is_platform_free(onnx_file: Path, tmp_path: Path) -> None:
    p = cached_engine_path(tmp_path, onnx_file, "0123456789abcdef" * 4, "fp16", 8)
    assert p.name == "model-0123456789ab-fp16-b8.engine"
