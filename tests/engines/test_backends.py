"""Backends on real ONNX files: the tests' hand-built facetrack stand-in (``onnx_standin`` of
tests/conftest.py: the names and metadata of facetrack/engines/names.py, outputs computable in
numpy) and mdm-rt / aan exports by facetrack.train.export.to_onnx. Feed validation and metadata
verification errors, table-driven."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facetrack.engines import names
from facetrack.engines.base import TensorSpec, verify_metadata
from facetrack.engines.errors import FeedError, ModelFileError
from facetrack.engines.onnxrt import OnnxRuntimeBackend
from facetrack.engines.registry import open_backend
from facetrack.tracker.geometry import template

S, H = 32, 8


def good_metadata(kind: str) -> dict[str, str]:
    return {
        names.FORMAT: names.FORMAT_VERSION,
        names.KIND: kind,
        names.ARCH: "mdm-rt" if kind == "mdm" else "aan",
        names.INPUT_SIZE: str(S),
        names.N_POINTS: "68",
        names.HIDDEN_SIZE: str(H) if kind == "mdm" else "0",
        names.STEPS: "2" if kind == "mdm" else "0",
        names.MEAN_SHAPE: json.dumps(template(S).tolist()),
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, onnx_standin) -> dict[str, Path]:
    """The stand-in of each kind: landmarks = base + mean(image), confidence = sigmoid(mean)."""
    d = tmp_path_factory.mktemp("tiny")
    return {k: onnx_standin(d / f"{k}.onnx", k, size=S, hidden=H) for k in ("aan", "mdm")}


def feed_for(backend, n: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {names.IMAGE: (n, 1, S, S), names.INIT_SHAPE: (n, 68, 2), names.HIDDEN: (n, H)}
    return {s.name: rng.random(shapes[s.name], dtype=np.float32) for s in backend.inputs}


# ---- the tiny model through ONNX Runtime -------------------------------------------------
@pytest.mark.parametrize("kind", ["aan", "mdm"])
def test_onnxrt_runs_tiny_model_and_matches_numpy(tiny, kind):
    with OnnxRuntimeBackend(tiny[kind], threads=1) as be:
        assert be.kind == kind and be.input_size == S and be.device == "ONNX Runtime CPU"
        assert [s.name for s in be.inputs] == list(names.MODEL_IO[kind].inputs)
        assert [s.name for s in be.outputs] == list(names.MODEL_IO[kind].outputs)
        assert be.inputs[0] == TensorSpec(names.IMAGE, (names.BATCH_AXIS, 1, S, S), np.dtype(np.float32))
        assert be.metadata[names.ARCH] == ("aan" if kind == "aan" else "mdm-rt")
        np.testing.assert_allclose(be.mean_shape, template(S), atol=1e-4)
        feed = feed_for(be, n=3)
        out = be.infer(feed)
        m = feed[names.IMAGE].mean(axis=(1, 2, 3))
        init = feed[names.INIT_SHAPE] if kind == "mdm" else np.broadcast_to(template(S), (3, 68, 2))
        np.testing.assert_allclose(out[names.LANDMARKS], init + m[:, None, None], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out[names.CONFIDENCE], 1 / (1 + np.exp(-m)), rtol=1e-5)
        assert out[names.LANDMARKS].dtype == np.float32 and out[names.CONFIDENCE].shape == (3,)
        if kind == "mdm":
            np.testing.assert_allclose(out[names.HIDDEN_OUT], np.tanh(feed[names.HIDDEN] + m[:, None]), rtol=1e-5, atol=1e-6)
    assert be.closed
    with pytest.raises(RuntimeError, match="closed"):
        be.infer(feed)


def test_open_backend_auto_uses_onnxruntime_for_onnx(tiny):
    with open_backend(tiny["aan"]) as be:
        assert isinstance(be, OnnxRuntimeBackend)


# ---- feed validation -------------------------------------------------------------------
def _bad_feeds():
    n = 2
    ok = {names.IMAGE: np.zeros((n, 1, S, S), np.float32), names.INIT_SHAPE: np.zeros((n, 68, 2), np.float32),
          names.HIDDEN: np.zeros((n, H), np.float32)}

    def with_(**kw):
        f = dict(ok)
        for k, v in kw.items():
            if v is None:
                f.pop(k)
            else:
                f[k] = v
        return f

    return [
        ("missing", with_(hidden=None), r"missing \['hidden'\]"),
        ("extra", with_(bogus=np.zeros(1, np.float32)), r"unexpected \['bogus'\]"),
        ("float64", with_(image=np.zeros((n, 1, S, S))), r"'image'.*dtype float64"),
        ("uint8", with_(image=np.zeros((n, 1, S, S), np.uint8)), r"'image'.*dtype uint8"),
        ("rank", with_(image=np.zeros((1, S, S), np.float32)), r"'image'.*rank 3"),
        ("size", with_(image=np.zeros((n, 1, S + 1, S), np.float32)), r"'image'.*axis 2 must be 32"),
        ("points", with_(init_shape=np.zeros((n, 49, 2), np.float32)), r"'init_shape'.*axis 1 must be 68"),
        ("batch", with_(hidden=np.zeros((n + 1, H), np.float32)), r"'hidden'.*'faces'.*3 but 'image' has 2"),
        ("strided", with_(image=np.zeros((n, 1, S, 2 * S), np.float32)[..., ::2]), r"'image'.*not C-contiguous"),
        ("list", with_(image=np.zeros((n, 1, S, S), np.float32).tolist()), r"'image'.*numpy array"),
    ]


@pytest.mark.parametrize("case,feed,message", _bad_feeds(), ids=[c[0] for c in _bad_feeds()])
def test_feed_validation_names_the_tensor(tiny, case, feed, message):
    with OnnxRuntimeBackend(tiny["mdm"], threads=1) as be:
        with pytest.raises(FeedError, match=message):
            be.infer(feed)


# ---- bad model files -----------------------------------------------------------------------
def _write(kind, standin):
    def tiny_model(path: Path, kind: str, metadata: dict[str, str] | None = None, io_names: tuple | None = None) -> Path:
        return standin(path, kind, size=S, hidden=H, metadata=metadata, io_names=io_names)

    def make(d: Path) -> Path:
        if kind == "missing":
            return d / "nope.onnx"
        if kind == "dir":
            (d / "dir.onnx").mkdir()
            return d / "dir.onnx"
        if kind == "empty":
            (d / "empty.onnx").write_bytes(b"")
            return d / "empty.onnx"
        if kind == "text":
            (d / "text.onnx").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
            return d / "text.onnx"
        if kind == "garbage":
            (d / "garbage.onnx").write_bytes(bytes(range(256)) * 4)
            return d / "garbage.onnx"
        if kind == "no-metadata":
            return tiny_model(d / "plain.onnx", "aan", metadata={})
        if kind == "wrong-io":
            return tiny_model(d / "other.onnx", "aan", metadata=good_metadata("aan"), io_names=(("input",), ("output", "score")))
        if kind == "kind-mismatch":  # an aan graph labelled mdm
            return tiny_model(d / "mislabelled.onnx", "aan", metadata=good_metadata("mdm"))
        if kind == "missing-key":
            meta = good_metadata("aan")
            del meta[names.INPUT_SIZE]
            return tiny_model(d / "nosize.onnx", "aan", metadata=meta)
        raise AssertionError(kind)

    return make


@pytest.mark.parametrize("kind,message", [
    ("missing", "no such ONNX model file"),
    ("dir", "is a directory"),
    ("empty", "empty file"),
    ("text", "a text file, not an ONNX model"),
    ("garbage", "not a loadable ONNX model"),
    ("no-metadata", "no facetrack metadata"),
    ("wrong-io", r"aan model must have inputs \['image'\]"),
    ("kind-mismatch", r"mdm model must have inputs"),
    ("missing-key", "lacks required key.*facetrack.input_size"),
])
def test_bad_model_files_raise_model_file_error_naming_the_file(tmp_path, onnx_standin, kind, message):
    path = _write(kind, onnx_standin)(tmp_path)
    with pytest.raises(ModelFileError, match=message) as info:
        OnnxRuntimeBackend(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


# ---- metadata verification table ----------------------------------------------------------------
def _meta(kind="aan", **changes):
    m = good_metadata(kind)
    for k, v in changes.items():
        key = getattr(names, k)
        if v is None:
            m.pop(key)
        else:
            m[key] = v
    return m


@pytest.mark.parametrize("metadata,message", [
    ({}, "no facetrack metadata"),
    ({"producer": "pytorch"}, "no facetrack metadata"),
    (_meta(KIND=None), "lacks required key.*facetrack.kind"),
    (_meta(STEPS=None, HIDDEN_SIZE=None), "facetrack.hidden_size, facetrack.steps"),
    (_meta(FORMAT="2"), "format version '2'"),
    (_meta(KIND="pfld"), "unknown model kind 'pfld'"),
    (_meta(ARCH="mdm"), "arch 'mdm' is not a 'aan' model"),
    (_meta(N_POINTS="98"), "98 points, facetrack needs 68"),
    (_meta(INPUT_SIZE="large"), "input_size = 'large' is not an integer"),
    (_meta("mdm", HIDDEN_SIZE="0"), "hidden_size = 0, expected at least 1"),
], ids=["empty", "foreign", "no-kind", "two-missing", "format", "kind", "arch", "points", "size", "hidden"])
def test_verify_metadata_errors(metadata, message):
    with pytest.raises(ModelFileError, match=message) as info:
        verify_metadata(metadata, "models/x.onnx")
    assert str(info.value).startswith("models/x.onnx: ")


def test_verify_metadata_accepts_good_and_checks_io_names():
    verify_metadata(_meta("mdm"), "m.onnx", names.MODEL_IO["mdm"].inputs, names.MODEL_IO["mdm"].outputs)
    verify_metadata(_meta("aan"), "a.onnx", ["image"], ["confidence", "landmarks"])  # order is free: backends reorder
    with pytest.raises(ModelFileError, match="outputs"):
        verify_metadata(_meta("aan"), "a.onnx", ["image"], ["landmarks"])


# ---- real exports (facetrack.train.export.to_onnx): a missing module fails here, it never skips -----------------------
def _image_dependent(model):
    """``model`` made to behave like a trained one, whose landmarks depend on the image: a fresh
    model's barely do (5e-4 px between two random images for aan, 2e-3 px for mdm-rt: its
    update layer starts near zero), below any useful tolerance. Zero or near-zero weight tensors
    are redrawn (std 0.05) and the BatchNorm statistics are measured on random images; the
    landmarks then move by about 1.8 px (aan) and 0.08 px (mdm-rt) between two images."""
    import torch

    from facetrack.train.export.torch_cuda import random_feed

    with torch.no_grad():
        for q in model.parameters():
            if q.abs().max() == 0 or (q.dim() >= 2 and q.std() < 0.01):
                q.normal_(0.0, 0.05)
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()
                mod.momentum = None  # a plain average over the batches below
        cfg = model.config
        feed = random_feed(cfg.kind, cfg.input_size, getattr(cfg, "hidden_size", 0), 16, seed=5)
        model.train()
        for _ in range(3):
            model(*[torch.from_numpy(feed[n]) for n in names.MODEL_IO[cfg.kind].inputs])
    return model.eval()


#: largest allowed |ONNX Runtime - PyTorch| on landmarks (crop px) in the export parity test;
#: the test also checks that the image moves the landmarks by at least 100 times this.
PARITY_PX = 1e-4


@pytest.mark.parametrize("arch", ["aan", "mdm-rt"])
def test_exported_model_runs_in_onnxrt_and_matches_torch(tmp_path, arch):
    import torch

    from facetrack.train.export.to_onnx import export_onnx
    from facetrack.train.models.registry import build_model

    torch.manual_seed(0)
    model = _image_dependent(build_model(arch).eval())
    path = tmp_path / f"{arch}.onnx"
    export_onnx(model, path)
    with OnnxRuntimeBackend(path, threads=2) as be:
        assert be.arch == arch
        s = be.input_size
        rng = np.random.default_rng(1)
        feed = {names.IMAGE: rng.random((2, 1, s, s), dtype=np.float32)}
        feed[names.IMAGE][1] = 1.0 - feed[names.IMAGE][0]  # two different images, same statistics
        if be.kind == "mdm":
            feed[names.INIT_SHAPE] = np.ascontiguousarray(np.broadcast_to(template(s), (2, 68, 2)), dtype=np.float32)
            feed[names.HIDDEN] = np.zeros((2, be.hidden_size), np.float32)
        out = {k: v.copy() for k, v in be.infer(feed).items()}
    assert out[names.LANDMARKS].shape == (2, 68, 2) and np.isfinite(out[names.LANDMARKS]).all()
    assert ((out[names.CONFIDENCE] >= 0) & (out[names.CONFIDENCE] <= 1)).all()
    with torch.inference_mode():
        ref = [t.numpy() for t in model(*[torch.from_numpy(feed[n]) for n in names.MODEL_IO[be.kind].inputs])]
    signal = float(np.abs(ref[0][0] - ref[0][1]).max())
    assert signal > 100 * PARITY_PX, f"the image hardly moves the landmarks ({signal:.2e} px): the check would be blind"
    np.testing.assert_allclose(out[names.LANDMARKS], ref[0], rtol=0, atol=PARITY_PX)
    np.testing.assert_allclose(out[names.CONFIDENCE], ref[1].reshape(-1), rtol=0, atol=1e-4)


@pytest.fixture()
def torch_registered():
    """The composition root's registration of the torch backend (facetrack.cli.main does the same)."""
    from facetrack.engines import registry
    from facetrack.train.export.torch_backend import register

    saved = dict(registry.BACKENDS), dict(registry.SUFFIXES)
    register()
    yield
    registry.BACKENDS.clear(), registry.BACKENDS.update(saved[0])
    registry.SUFFIXES.clear(), registry.SUFFIXES.update(saved[1])


def _save(path: Path, model, **meta) -> Path:
    from facetrack.train.models.checkpoint import save_checkpoint
    from facetrack.train.models.registry import config_to_dict

    return save_checkpoint(path, model.state_dict(), config_to_dict(model.config), **meta)


def test_torch_backend_runs_a_checkpoint_like_its_onnx(tmp_path, torch_registered):
    import torch

    from facetrack.train.export.to_onnx import export_onnx
    from facetrack.train.models.registry import build_model

    torch.manual_seed(0)
    model = _image_dependent(build_model("aan").eval())
    ckpt = _save(tmp_path / "aan.pt", model, step=0)
    onnx_path = export_onnx(ckpt, tmp_path / "aan.onnx")
    x = np.random.default_rng(2).random((1, 1, model.config.input_size, model.config.input_size), dtype=np.float32)
    with open_backend(ckpt) as be, OnnxRuntimeBackend(onnx_path) as ref:
        assert be.name == "torch" and be.kind == "aan" and be.device == "PyTorch CPU"
        verify_metadata(be.metadata, ckpt)
        # the same metadata the export wrote, bar the ONNX weights checksum and the version stamp
        drop = {names.CHECKSUM}
        assert {k: v for k, v in be.metadata.items() if k not in drop} == {k: v for k, v in ref.metadata.items() if k not in drop}
        out = {k: v.copy() for k, v in be.infer({names.IMAGE: x}).items()}
        want = ref.infer({names.IMAGE: x})
    np.testing.assert_allclose(out[names.LANDMARKS], want[names.LANDMARKS], rtol=0, atol=1e-4)


def test_a_checkpoint_without_the_torch_backend_registered_says_how(tmp_path):
    from facetrack.engines import registry
    from facetrack.engines.errors import BackendUnavailableError

    if "torch" in registry.BACKENDS:
        pytest.fail("another test left the torch backend registered")
    path = tmp_path / "m.pt"
    path.write_bytes(b"PK\x03\x04")
    for backend in ("auto", "torch"):
        with pytest.raises(BackendUnavailableError, match=r"facetrack.train.export.torch_backend.register\(\)"):
            open_backend(path, backend=backend)


@pytest.mark.parametrize("content,message", [
    (b"", "empty file"),
    (b"not a checkpoint\n", "a text file, not a PyTorch checkpoint"),
    (bytes(range(255, 0, -1)), "not a readable training checkpoint"),
])
def test_torch_backend_bad_files(tmp_path, torch_registered, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message) as info:
        open_backend(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_torch_backend_rejects_a_foreign_or_damaged_checkpoint(tmp_path, torch_registered):
    import torch

    from facetrack.train.models.registry import build_model

    path = tmp_path / "foreign.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ModelFileError, match="not a facetrack training checkpoint"):
        open_backend(path)
    model = build_model("aan")
    damaged = _save(tmp_path / "damaged.pt", model)
    ck = torch.load(damaged, weights_only=True)
    next(iter(ck["state_dict"].values())).add_(1.0)
    torch.save(ck, damaged)
    with pytest.raises(ModelFileError, match="do not match the stored checksum"):
        open_backend(damaged)
