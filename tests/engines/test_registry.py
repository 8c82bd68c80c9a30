"""The registry: suffix table, explicit backend names, and the runtime picker's order with
faked machine probes (TensorRT + GPU > ONNX Runtime CUDA > ONNX Runtime CPU)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from facetrack.engines import registry
from facetrack.engines.errors import BackendUnavailableError, ModelFileError
from facetrack.engines.registry import BACKENDS, SUFFIXES, Probes, available_backends, backend_for_suffix, open_backend, pick_backend


@pytest.fixture()
def aan_onnx(tmp_path, onnx_standin) -> Path:
    return onnx_standin(tmp_path / "aan.onnx", "aan")


def fake(modules=(), gpus=0, providers=("CPUExecutionProvider",)) -> Probes:
    mods = set(modules)
    return Probes(importable=lambda m: m in mods, gpu_count=lambda: gpus, ort_providers=lambda: list(providers))


CUDA_ORT = ("CUDAExecutionProvider", "CPUExecutionProvider")


@pytest.mark.parametrize("probes,expected", [
    (fake(("tensorrt", "pycuda"), 1, CUDA_ORT), "tensorrt"),
    (fake(("tensorrt", "pycuda"), 1), "tensorrt"),
    (fake(("tensorrt", "pycuda"), 0, CUDA_ORT), "onnxruntime"),  # libraries but no GPU
    (fake(("tensorrt",), 1, CUDA_ORT), "onnxruntime-cuda"),  # no pycuda
    (fake(("pycuda",), 2, CUDA_ORT), "onnxruntime-cuda"),  # no tensorrt
    (fake((), 1, CUDA_ORT), "onnxruntime-cuda"),
    (fake((), 0, CUDA_ORT), "onnxruntime"),  # onnxruntime-gpu on a machine without a GPU
    (fake((), 1), "onnxruntime"),  # a GPU but CPU-only onnxruntime
    (fake(), "onnxruntime"),
], ids=["all", "trt-no-ort-cuda", "no-gpu", "no-pycuda", "no-trt", "ort-cuda", "ort-gpu-no-gpu", "gpu-cpu-ort", "cpu"])
def test_pick_backend_order(probes, expected, caplog):
    with caplog.at_level(logging.INFO, logger="facetrack.engines.registry"):
        choice = pick_backend(probes)
    assert choice.name == expected
    assert choice.label == {"tensorrt": "TensorRT", "onnxruntime-cuda": "ONNX Runtime CUDA", "onnxruntime": "ONNX Runtime CPU"}[expected]
    assert choice.label in caplog.text and choice.reason in caplog.text


def test_pick_backend_explains_what_was_passed_over():
    choice = pick_backend(fake(("tensorrt",), 0))
    assert "pycuda not installed" in choice.reason and "no CUDAExecutionProvider" in choice.reason


def test_pick_backend_without_onnxruntime_raises():
    with pytest.raises(BackendUnavailableError, match="no runtime"):
        pick_backend(fake(providers=()))


def test_available_backends_in_preference_order():
    avail = available_backends(fake(("tensorrt", "pycuda", "torch"), 1, CUDA_ORT))
    assert list(avail) == ["tensorrt", "onnxruntime-cuda", "onnxruntime", "torch"]
    assert list(available_backends(fake())) == ["onnxruntime"]


def test_available_backends_on_this_machine_has_onnxruntime_cpu():
    assert "onnxruntime" in available_backends()
    assert pick_backend().name in BACKENDS


@pytest.mark.parametrize("name,expected", [
    ("models/aan.onnx", "onnxruntime"), ("x/MDM-RT.ONNX", "onnxruntime"), ("cache/mdm.engine", "tensorrt"),
    ("cache/mdm.plan", "tensorrt"),
])
def test_suffix_table(name, expected):
    assert backend_for_suffix(name) == expected


def test_registering_a_backend_from_above_adds_its_suffixes(monkeypatch):
    """The torch backend lives in facetrack.train and joins through register_backend."""
    from facetrack.train.export.torch_backend import register

    monkeypatch.setattr(registry, "BACKENDS", dict(BACKENDS))
    monkeypatch.setattr(registry, "SUFFIXES", dict(SUFFIXES))
    with pytest.raises(BackendUnavailableError, match="not registered"):
        registry.backend_for_suffix("runs/last.pt")
    register()
    assert registry.backend_for_suffix("runs/last.pt") == "torch" and registry.backend_for_suffix("a.pth") == "torch"
    assert registry.BACKENDS["torch"].module == "facetrack.train.export.torch_backend"
    assert registry.backend_for_suffix("m.onnx") == "onnxruntime"  # .onnx stays with the picker


def test_suffix_table_is_a_table_of_known_backends():
    assert set(SUFFIXES.values()) <= set(BACKENDS)
    assert BACKENDS["tensorrt"].module == "facetrack.engines.tensorrt_backend" and BACKENDS["tensorrt"].cls == "TensorRTBackend"


@pytest.mark.parametrize("name", ["model.tflite", "weights", "model.onnx.data"])
def test_unknown_suffix_is_a_model_file_error(name):
    with pytest.raises(ModelFileError, match="unknown model file type"):
        open_backend(name)


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="unknown backend 'openvino'"):
        open_backend("x.onnx", backend="openvino")


def test_explicit_backend_is_never_swapped(aan_onnx, monkeypatch):
    """Asking for ONNX Runtime CUDA where it is missing fails instead of running on the CPU."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    path = aan_onnx
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
        open_backend(path, backend="onnxruntime-cuda")


def test_auto_on_onnx_follows_the_picker(aan_onnx, monkeypatch):
    path = aan_onnx
    opened = []

    class FakeTRT:
        suffixes = (".engine", ".plan", ".onnx")

        def __init__(self, p, **kw):
            opened.append((p, kw))

    monkeypatch.setattr(registry.BackendEntry, "load", lambda self: FakeTRT if self.cls == "TensorRTBackend" else
                        __import__("facetrack.engines.onnxrt", fromlist=["x"]).OnnxRuntimeBackend)
    be = open_backend(path, probes=fake(("tensorrt", "pycuda"), 1))
    assert isinstance(be, FakeTRT) and opened == [(path, {})]
    with open_backend(path, probes=fake(), threads=1) as be2:
        assert be2.device == "ONNX Runtime CPU"


def test_every_backend_takes_the_cpu_budget_and_a_misspelt_option_is_an_error(aan_onnx, monkeypatch):
    """``threads`` (the tracker's CPU budget) is part of every backend's signature (TensorRT
    accepts and ignores it); an option no backend has fails in the class's own signature."""
    import inspect

    from facetrack.engines.onnxrt import OnnxRuntimeBackend
    from facetrack.engines.tensorrt_backend import TensorRTBackend
    from facetrack.train.export.torch_backend import TorchBackend

    for cls in (OnnxRuntimeBackend, TensorRTBackend, TorchBackend):
        param = inspect.signature(cls.__init__).parameters.get("threads")
        assert param is not None and param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None, cls
    with pytest.raises(TypeError, match="precison"):
        open_backend(aan_onnx, backend="onnxruntime", precison="fp32")
    with open_backend(aan_onnx, backend="onnxruntime", threads=1) as be:
        assert be.device == "ONNX Runtime CPU"
