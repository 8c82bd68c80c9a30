"""The one hand-built ONNX stand-in for a facetrack model, shared by the tests (through the
``onnx_standin`` fixture of tests/conftest.py, or imported as ``tests.onnx_standin`` where a
module-level helper needs it): real ONNX files with facetrack's tensor names and metadata whose
outputs can be computed by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from facetrack.engines import names
from facetrack.tracker.geometry import template


def build_onnx_standin(path: Path, kind: str = "aan", *, size: int = 32, hidden: int = 8, landmarks: str = "shift",
                       confidence: float | str = "sigmoid", metadata: dict[str, str] | None = None,
                       io_names: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> Path:
    """A tiny real ONNX model with facetrack's tensor names and metadata, whose outputs are easy
    to compute in numpy (``m`` = mean of each face's image):

    - ``landmarks``: ``"shift"``: base + m; ``"identity"``: base; ``"nan"`` / ``"inf"`` /
      ``"huge"`` (1e30): that value everywhere. base = ``init_shape`` (mdm) or the template (aan).
    - ``confidence``: ``"sigmoid"``: sigmoid(m); ``"mean"``: m itself; a number (may lie
      outside [0, 1]); ``"nan"``.
    - ``hidden_out`` (mdm): tanh(hidden + m) for ``"shift"``, else ``hidden`` unchanged.
    - ``metadata``: replaces the good metadata (``{}``: none); ``io_names``: (inputs, outputs)
      of a graph of another shape (the first input is the image, outputs landmarks-like, confidence-like).
    """
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
    elif confidence == "mean":
        nodes.append(helper.make_node("Identity", ["m"], [outs[1]]))
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
