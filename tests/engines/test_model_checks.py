"""What a model file must pass before facetrack runs it (issue 34, items 7 and 8): sizes in its
metadata within sane ranges, its weights equal to the checksum its export embedded (every shipped
file passes), its tensors and one probe run those of a facetrack model. Each refusal is one
``ModelFileError`` line naming the file."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from facetrack.engines import names
from facetrack.engines.base import METADATA_RANGES, probe_backend
from facetrack.engines.errors import ModelFileError
from facetrack.engines.onnx_weights import WeightsFormatError, weights_sha256
from facetrack.engines.onnxrt import OnnxRuntimeBackend
from facetrack.engines.registry import open_backend

onnx = pytest.importorskip("onnx", reason="onnx (the [train] extra) edits the model files of these tests")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[2] / "facetrack" / "tracker" / "weights"
SHIPPED = sorted(WEIGHTS.glob("*.onnx"))


def _edit(src: Path, dst: Path, meta: dict[str, str] | None = None, fn=None) -> Path:
    m = onnx.load(str(src))
    if fn is not None:
        fn(m)
    for p in m.metadata_props:
        if meta and p.key in meta:
            p.value = meta[p.key]
    onnx.save(m, str(dst))
    return dst


def _one_line(e: pytest.ExceptionInfo, path: Path) -> str:
    text = str(e.value)
    assert "\n" not in text and str(path) in text, text
    return text


# --- the checksum ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_file_hashes_as_the_export_does_and_matches_its_checksum(path):
    from facetrack.train.export.to_onnx import weights_sha256 as export_hash

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert weights_sha256(path) == export_hash(model)
    if names.KIND in meta:  # the landmark models carry it (the detector has its own record)
        assert meta[names.CHECKSUM] == weights_sha256(path)
        with OnnxRuntimeBackend(path, int8=False, threads=1) as be:
            assert be.file == path


def test_the_hash_reads_every_tensor_type_raw_or_typed_as_onnx_does(tmp_path):
    from facetrack.train.export.to_onnx import weights_sha256 as export_hash

    rng = np.random.default_rng(0)
    values = [(TensorProto.FLOAT, rng.standard_normal(5).astype(np.float32)), (TensorProto.INT8, np.array([-128, -1, 0, 127], np.int8)),
              (TensorProto.UINT8, np.array([0, 255], np.uint8)), (TensorProto.INT32, np.array([-5, 2**31 - 1, -2**31], np.int32)),
              (TensorProto.INT64, np.array([-1, 2**62, -2**63], np.int64)), (TensorProto.DOUBLE, np.array([1.5, -2.25])),
              (TensorProto.FLOAT16, np.array([1.5, -2.0, 65504], np.float16)), (TensorProto.BOOL, np.array([True, False])),
              (TensorProto.INT16, np.array([-300, 7], np.int16)), (TensorProto.UINT16, np.array([65535, 1], np.uint16)),
              (TensorProto.UINT32, np.array([2**32 - 1, 0], np.uint32)), (TensorProto.UINT64, np.array([2**64 - 1, 3], np.uint64))]
    tensors = [helper.make_tensor(f"t{t}_{raw}", t, v.shape, v.tobytes() if raw else v.tolist(), raw=raw)
               for t, v in values for raw in (False, True)]
    tensors += [helper.make_tensor("scalar", TensorProto.FLOAT, [], [3.0]), helper.make_tensor("empty", TensorProto.FLOAT, [0], [])]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", 1, [1])],
                              [helper.make_tensor_value_info("y", 1, [1])], initializer=tensors)
    path = tmp_path / "typed.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert weights_sha256(path) == export_hash(onnx.load(str(path)))
    (tmp_path / "junk.onnx").write_bytes(b"\x0f\xff\xff")
    with pytest.raises(WeightsFormatError):
        weights_sha256(tmp_path / "junk.onnx")


def _flip_bytes(m, n: int = 2000) -> None:
    init = max(m.graph.initializer, key=lambda i: len(i.raw_data))
    b = bytearray(init.raw_data)
    for k in np.random.default_rng(0).choice(len(b), n, replace=False):
        b[k] ^= 0x40
    init.raw_data = bytes(b)


def test_altered_weights_are_refused_naming_the_file(tmp_path):
    """2,000 flipped weight bytes of the shipped mdm-rt: loaded and run before (landmarks 4.2 px
    off); refused now. A single flipped byte too."""
    bad = _edit(WEIGHTS / "mdm-rt.onnx", tmp_path / "flipped.onnx", fn=_flip_bytes)
    with pytest.raises(ModelFileError, match="weights do not match the checksum") as e:
        open_backend(bad, backend="onnxruntime")
    _one_line(e, bad)
    one = _edit(WEIGHTS / "aan.onnx", tmp_path / "one.onnx", fn=lambda m: _flip_bytes(m, 1))
    with pytest.raises(ModelFileError, match="weights do not match"):
        OnnxRuntimeBackend(one)


def test_a_damaged_int8_variant_gives_way_to_its_checked_float32_file(tmp_path, caplog):
    """The int8 file beside a model is chosen only when its own weights match its checksum: a
    damaged one is one warning and the float32 file runs."""
    import shutil

    f32 = shutil.copy(WEIGHTS / "mdm-rt.onnx", tmp_path / "mdm-rt.onnx")
    q = _edit(WEIGHTS / "mdm-rt.int8.onnx", tmp_path / "mdm-rt.int8.onnx", fn=_flip_bytes)
    with caplog.at_level(logging.WARNING):
        with open_backend(f32, backend="onnxruntime") as be:
            assert be.file == Path(f32)
    assert any(str(q) in r.getMessage() and "weights do not match" in r.getMessage() for r in caplog.records)
    shutil.copy(WEIGHTS / "mdm-rt.int8.onnx", q)
    with open_backend(f32, backend="onnxruntime") as be:
        assert be.file == q


# --- metadata ranges ------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, message", [
    (names.INPUT_SIZE, "60000", "input_size = 60000, expected at most 1024"),
    (names.INPUT_SIZE, "4", "input_size = 4, expected at least 8"),
    (names.INPUT_SIZE, "9" * 40, "is not an integer"),
    (names.HIDDEN_SIZE, "100000000", "hidden_size = 100000000, expected at most 8192"),
    (names.STEPS, "1000", "steps = 1000, expected at most 32"),
])
def test_metadata_out_of_range_is_refused_before_anything_is_allocated(tmp_path, onnx_standin, key, value, message):
    """A hostile input size (60000: 13.4 GiB a crop, the process was OOM-killed) is refused on
    load, whatever the graph declares (here the image's sides are dynamic)."""
    path = onnx_standin(tmp_path / "m.onnx", "mdm", size=112, hidden=16)

    def dynamic_sides(m):
        for i in m.graph.input:
            if i.name == names.IMAGE:
                for d in i.type.tensor_type.shape.dim[2:]:
                    d.ClearField("dim_value")
                    d.dim_param = "side"

    bad = _edit(path, tmp_path / "bad.onnx", {key: value}, dynamic_sides)
    with pytest.raises(ModelFileError, match=message) as e:
        open_backend(bad, backend="onnxruntime")
    _one_line(e, bad)
    assert METADATA_RANGES[names.INPUT_SIZE][1] < 60000


def test_the_landmarker_bounds_the_input_size_of_an_open_backend_too():
    from facetrack.tracker.landmarker import Landmarker

    class Open:
        metadata = {names.KIND: "aan", names.INPUT_SIZE: "60000"}

        def close(self):
            pass

    with pytest.raises(ValueError, match="expected 8 to 1024"):
        Landmarker(Open())


# --- tensors and the probe ------------------------------------------------------------------
def _wrong_channels(path: Path, channels: int | None) -> Path:
    """An MDM-like graph whose convolution needs 3 input channels (declared: ``channels``, or dynamic)."""
    f32, b, s = TensorProto.FLOAT, names.BATCH_AXIS, 32
    nodes = [helper.make_node("Conv", [names.IMAGE, "w"], ["c"]), helper.make_node("ReduceMean", ["c"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Sigmoid", ["m"], [names.CONFIDENCE]), helper.make_node("Reshape", ["m", "sh"], ["m11"]),
             helper.make_node("Add", [names.INIT_SHAPE, "m11"], [names.LANDMARKS]),
             helper.make_node("Identity", [names.HIDDEN], [names.HIDDEN_OUT])]
    inits = [numpy_helper.from_array(np.full((1, 3, 1, 1), 1 / 3, np.float32), "w"),
             numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "sh")]
    graph = helper.make_graph(nodes, "wc", [helper.make_tensor_value_info(names.IMAGE, f32, [b, channels, s, s]),
                                            helper.make_tensor_value_info(names.INIT_SHAPE, f32, [b, 68, 2]),
                                            helper.make_tensor_value_info(names.HIDDEN, f32, [b, 8])],
                              [helper.make_tensor_value_info(names.LANDMARKS, f32, [b, 68, 2]),
                               helper.make_tensor_value_info(names.CONFIDENCE, f32, [b]),
                               helper.make_tensor_value_info(names.HIDDEN_OUT, f32, [b, 8])], initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {names.FORMAT: "1", names.KIND: "mdm", names.ARCH: "mdm-rt", names.INPUT_SIZE: str(s),
                               names.N_POINTS: "68", names.HIDDEN_SIZE: "8", names.STEPS: "2"})
    onnx.save(m, str(path))
    return path


def _landmarks_34x4(m) -> None:
    for n in m.graph.node:
        n.output[:] = ["lm_raw" if o == names.LANDMARKS else o for o in n.output]
    m.graph.initializer.append(numpy_helper.from_array(np.array([-1, 34, 4], np.int64), "shape34"))
    m.graph.node.append(helper.make_node("Reshape", ["lm_raw", "shape34"], [names.LANDMARKS]))


def _undeclared(m) -> None:  # every output's shape left out of the graph: only the probe can tell
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")


@pytest.mark.parametrize("case, message", [
    ("nan_landmarks", "'landmarks' output on a probe crop is not finite"),
    ("inf_landmarks", "'landmarks' output on a probe crop is not finite"),
    ("huge_landmarks", "'landmarks' output on a probe crop is not finite"),
    ("nan_confidence", "'confidence' output on a probe crop is not finite"),
    ("three_channels_declared", r"tensor image\[faces, 3, 32, 32\] float32 should be \[faces, 1, 32, 32\] \(facetrack crops are grey"),
    ("three_channels_dynamic", "the model fails on a facetrack crop"),
    ("landmarks_34x4_declared", r"tensor landmarks\[faces, 34, 4\] float32 should be \[faces, 68, 2\]"),
    ("landmarks_34x4_undeclared", r"tensor landmarks\[\?, 34, 4\] float32 should be \[faces, 68, 2\]"),  # as ONNX Runtime infers it
])
def test_a_broken_model_is_refused_at_load_in_one_line(tmp_path, onnx_standin, case, message):
    """Before: each of these loaded, every fit failed quietly (or the turned view fitted the faces
    instead) and the CLI exited 0."""
    p = tmp_path / f"{case}.onnx"
    if case.endswith("_landmarks"):
        onnx_standin(p, "mdm", landmarks=case.split("_")[0], confidence=0.9)
    elif case == "nan_confidence":
        onnx_standin(p, "aan", landmarks="identity", confidence="nan")
    elif case.startswith("three_channels"):
        _wrong_channels(p, 3 if case.endswith("declared") else None)
    else:
        src = onnx_standin(tmp_path / "ident.onnx", "mdm", landmarks="identity", confidence=0.9)
        if case.endswith("_declared"):
            def fn(m):
                _landmarks_34x4(m)
                out = next(o for o in m.graph.output if o.name == names.LANDMARKS)
                out.type.tensor_type.shape.dim[1].dim_value, out.type.tensor_type.shape.dim[2].dim_value = 34, 4
        else:
            def fn(m):
                _landmarks_34x4(m)
                _undeclared(m)
        _edit(src, p, fn=fn)
    with pytest.raises(ModelFileError, match=message) as e:
        open_backend(p, backend="onnxruntime")
    _one_line(e, p)


def test_good_models_pass_the_probe_and_out_of_range_confidence_is_not_refused(tmp_path, onnx_standin):
    """The probe refuses only what can never fit: a constant confidence of 5 is clipped at run time."""
    for kind in ("aan", "mdm"):
        with open_backend(onnx_standin(tmp_path / f"{kind}.onnx", kind, confidence=5.0), backend="onnxruntime") as be:
            probe_backend(be)
    with open_backend(WEIGHTS / "mdm-rt.onnx", backend="onnxruntime") as be:
        probe_backend(be)


def test_probe_off_opens_a_broken_model_for_the_run_time_guards(tmp_path, onnx_standin):
    p = onnx_standin(tmp_path / "nan.onnx", "aan", landmarks="nan", confidence=0.9)
    with open_backend(p, backend="onnxruntime", probe=False) as be:
        assert np.isnan(be.infer({names.IMAGE: np.zeros((1, 1, 32, 32), np.float32)})[names.LANDMARKS]).all()


class _Shapes(__import__("facetrack.engines.base", fromlist=["Backend"]).Backend):
    """A backend whose outputs the test sets: declares nothing about their shapes, as a runtime
    that infers none would."""

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        from facetrack.engines.base import TensorSpec

        super().__init__(Path("shapes.onnx"))
        self._metadata = {names.FORMAT: "1", names.KIND: "mdm", names.ARCH: "mdm-rt", names.INPUT_SIZE: "32",
                          names.N_POINTS: "68", names.HIDDEN_SIZE: "8", names.STEPS: "2"}
        self._inputs = (TensorSpec(names.IMAGE, ("faces", 1, 32, 32)), TensorSpec(names.INIT_SHAPE, ("faces", 68, 2)),
                        TensorSpec(names.HIDDEN, ("faces", 8)))
        self._outputs = tuple(TensorSpec(n, ()) for n in names.MODEL_IO["mdm"].outputs)
        self.out = outputs

    def _infer(self, feed):
        return self.out


@pytest.mark.parametrize("name, shape", [(names.LANDMARKS, (1, 34, 4)), (names.LANDMARKS, (1, 136)), (names.HIDDEN_OUT, (1, 9)),
                                         (names.CONFIDENCE, (1, 2))])
def test_the_probe_refuses_outputs_of_the_wrong_shape(name, shape):
    """(1, 136) or (1, 34, 4) landmarks would reshape to 68 points without a word."""
    good = {names.LANDMARKS: np.zeros((1, 68, 2), np.float32), names.CONFIDENCE: np.zeros(1, np.float32),
            names.HIDDEN_OUT: np.zeros((1, 8), np.float32)}
    probe_backend(_Shapes(good))
    with pytest.raises(ModelFileError, match=rf"shapes.onnx: refused: on a probe crop its '{name}' output has shape"):
        probe_backend(_Shapes({**good, name: np.zeros(shape, np.float32)}))
    missing = dict(good)
    del missing[name]
    with pytest.raises(ModelFileError, match=f"gives no '{name}' output"):
        probe_backend(_Shapes(missing))
