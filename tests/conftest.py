"""Shared test fixtures: the real data in ../shared/data, Qt offscreen."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Without a display a QApplication aborts the whole test process: set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACETRACK_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` (or ``$FACETRACK_DATA``); the tests need the real data."""
    if not (DATA / "images68").is_dir():
        pytest.fail(f"real data not found at {DATA}: clone beside ../shared or set FACETRACK_DATA")
    return DATA


# --- the one hand-built ONNX stand-in for a facetrack model --------------------------------------
def build_onnx_standin(path: Path, kind: str = "aan", *, size: int = 32, hidden: int = 8, landmarks: str = "shift",
                       confidence: float | str = "sigmoid", metadata: dict[str, str] | None = None,
                       io_names: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> Path:
    """A tiny real ONNX model with facetrack's tensor names and metadata, whose outputs are easy
    to compute in numpy (``m`` = mean of each face's image):

    - ``landmarks``: ``"shift"``: base + m; ``"identity"``: base; ``"nan"`` / ``"inf"`` /
      ``"huge"`` (1e30): that value everywhere. base = ``init_shape`` (mdm) or the template (aan).
    - ``confidence``: ``"sigmoid"``: sigmoid(m); a number (may lie outside [0, 1]); ``"nan"``.
    - ``hidden_out`` (mdm): tanh(hidden + m) for ``"shift"``, else ``hidden`` unchanged.
    - ``metadata``: replaces the good metadata (``{}``: none); ``io_names``: (inputs, outputs)
      of a graph of another shape (the first input is the image, outputs landmarks-like, confidence-like).
    """
    import json

    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from facetrack.engines import names
    from facetrack.tracker.geometry import template

    f32, b = TensorProto.FLOAT, names.BATCH_AXIS
    ins = io_names[0] if io_names else names.MODEL_IO[kind].inputs
    outs = io_names[1] if io_names else names.MODEL_IO[kind].outputs
    shapes = {names.IMAGE: [b, 1, size, size], names.INIT_SHAPE: [b, 68, 2], names.HIDDEN: [b, hidden],
              names.LANDMARKS: [b, 68, 2], names.CONFIDENCE: [b], names.HIDDEN_OUT: [b, hidden]}
    tmpl = np.asarray(template(size), np.float32)
    inits = [helper.make_tensor("tmpl", f32, [1, 68, 2], tmpl.ravel().tolist()),
             helper.make_tensor("zero", f32, [], [0.0]),
             helper.make_tensor("shape_n11", TensorProto.INT64, [3], [-1, 1, 1]),
             helper.make_tensor("shape_n1", TensorProto.INT64, [2], [-1, 1])]
    nodes = [helper.make_node("ReduceMean", [ins[0]], ["m"], axes=[1, 2, 3], keepdims=0),  # (N,)
             helper.make_node("Reshape", ["m", "shape_n11"], ["m11"]),
             helper.make_node("Mul", ["m11", "zero"], ["z11"])]  # zeros (N, 1, 1): carries the batch axis
    if confidence == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["m"], [outs[1]]))
    else:
        inits.append(helper.make_tensor("conf", f32, [], [float(confidence)]))
        nodes += [helper.make_node("Mul", ["m", "zero"], ["mz"]), helper.make_node("Add", ["mz", "conf"], [outs[1]])]
    mdm = kind == "mdm" and not io_names
    base = ins[1] if mdm else "tmpl"
    if landmarks == "shift":
        nodes.append(helper.make_node("Add", [base, "m11"], [outs[0]]))
    elif landmarks == "identity":
        nodes.append(helper.make_node("Add", [base, "z11"], [outs[0]]))
    else:
        fill = {"nan": float("nan"), "inf": float("inf"), "huge": 1e30}[landmarks]
        inits.append(helper.make_tensor("fill", f32, [], [fill]))
        nodes += [helper.make_node("Add", [base, "z11"], ["b0"]), helper.make_node("Mul", ["b0", "zero"], ["b00"]),
                  helper.make_node("Add", ["b00", "fill"], [outs[0]])]
    if mdm:
        if landmarks == "shift":
            nodes += [helper.make_node("Reshape", ["m", "shape_n1"], ["m1"]),
                      helper.make_node("Add", [ins[2], "m1"], ["hs"]), helper.make_node("Tanh", ["hs"], [outs[2]])]
        else:
            nodes.append(helper.make_node("Identity", [ins[2]], [outs[2]]))
    graph = helper.make_graph(nodes, f"standin_{kind}_{landmarks}",
                              [helper.make_tensor_value_info(n, f32, shapes.get(n, [b, 1, size, size])) for n in ins],
                              [helper.make_tensor_value_info(n, f32, shapes.get(n, [b])) for n in outs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    good = {names.FORMAT: names.FORMAT_VERSION, names.KIND: kind, names.ARCH: "mdm-rt" if kind == "mdm" else "aan",
            names.INPUT_SIZE: str(size), names.N_POINTS: "68", names.HIDDEN_SIZE: str(hidden) if kind == "mdm" else "0",
            names.STEPS: "2" if kind == "mdm" else "0", names.MEAN_SHAPE: json.dumps(tmpl.tolist())}
    helper.set_model_props(model, good if metadata is None else metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def onnx_standin():
    """:func:`build_onnx_standin`: ``onnx_standin(path, kind, **options) -> path`` (the one
    hand-built facetrack ONNX model of the tests; needs the ``onnx`` package)."""
    pytest.importorskip("onnx", reason="onnx (the [train] extra) builds the stand-in models")
    return build_onnx_standin
