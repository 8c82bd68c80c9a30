"""``facetrack build-engine``: build a TensorRT engine from an exported facetrack ONNX model.

``facetrack build-engine model.onnx [--fp16] [--max-faces N] [--out PATH] [--workspace MB] [--cache-dir DIR]``

* The ONNX file is parsed by TensorRT's ONNX parser; parser errors are reported one per line.
* Face (batch) axis: an optimisation profile ``min 1, opt 1, max N`` (``N = --max-faces``);
  with ``N = 1`` the batch is fixed at 1.
* Precision ``fp32`` builds with TF32 switched off (true FP32, for parity with ONNX Runtime).
  ``--fp16``: on TensorRT >= 10.12 (where weak typing is deprecated) a *strongly typed* network
  is built from a float16 copy of the model made here with the ``onnx`` package
  (:func:`convert_to_fp16`): weights and all internal float tensors become float16 while the
  graph's inputs and outputs stay float32 behind ``Cast`` nodes, so the runtime feed is the
  same float32 crop for every precision. On older TensorRT the float32 model is built with
  ``BuilderFlag.FP16``.
* A timing cache (``timing-trt<version>-sm<cc>.cache``) in the cache directory makes rebuilds fast.
* The engine file holds its metadata in a JSON header (format: :mod:`facetrack.engines.engine_cache`).
  Without ``--out`` the engine goes to the engine cache (reused if up to date) and its path is printed.

Nothing here imports tensorrt, pycuda or onnx at module level.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from facetrack.engines import names
from facetrack.engines.errors import BackendUnavailableError
from facetrack.engines.engine_cache import (
    BuildSpec,
    BuiltEngine,
    EngineFileError,
    Platform,
    build_engine_file,
    default_cache_dir,
    get_or_build,
    profile_for,
    timing_cache_path,
)

log = logging.getLogger(__name__)

TRT_HELP = "pip install facetrack[trt]"
#: First TensorRT version whose weakly typed networks (BuilderFlag.FP16) are deprecated.
STRONG_TYPING_FROM = (10, 12)


class TensorRTUnavailableError(BackendUnavailableError):
    """tensorrt / pycuda missing or no NVIDIA GPU; the message says which."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build a model; the message names the file and the errors."""


def require_tensorrt() -> tuple[Any, Any]:
    """Import and initialise ``(tensorrt, pycuda.driver)``; :class:`TensorRTUnavailableError` if impossible.

    The message always reads "TensorRT backend needs the tensorrt and pycuda packages
    (pip install facetrack[trt]) and an NVIDIA GPU: <what is missing>".
    """
    missing: list[str] = []
    trt = cuda = None
    try:
        import tensorrt as trt  # noqa: F811
    except ImportError as e:  # includes a broken install (missing libnvinfer)
        missing.append(f"cannot import tensorrt ({e})")
    try:
        import pycuda.driver as cuda  # noqa: F811
    except ImportError as e:
        missing.append(f"cannot import pycuda ({e})")
    if cuda is not None and not missing:
        try:
            cuda.init()
            if cuda.Device.count() < 1:
                missing.append("no CUDA device found")
        except Exception as e:  # pycuda raises its own LogicError/RuntimeError without a driver
            missing.append(f"CUDA driver unusable ({e})")
    if missing:
        raise TensorRTUnavailableError(
            f"TensorRT backend needs the tensorrt and pycuda packages ({TRT_HELP}) and an NVIDIA GPU: "
            + "; ".join(missing)
        )
    return trt, cuda


def probe_platform(device: int = 0) -> Platform:
    """This machine's TensorRT version, GPU name and compute capability (needs tensorrt + pycuda + GPU)."""
    trt, cuda = require_tensorrt()
    dev = cuda.Device(device)
    major, minor = dev.compute_capability()
    return Platform(trt_version=str(trt.__version__), gpu_name=str(dev.name()), compute_capability=f"{major}.{minor}")


def trt_version_tuple(version: str) -> tuple[int, ...]:
    """``"10.12.0.36"`` -> ``(10, 12, 0, 36)``; non-numeric parts end the tuple."""
    out: list[int] = []
    for part in version.split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file (with the ``onnx`` package, else ONNX Runtime)."""
    p = Path(path)
    try:
        import onnx
    except ImportError:
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        except Exception as e:
            raise EngineBuildError(f"{p}: not a loadable ONNX model ({e})") from None
        return dict(sess.get_modelmeta().custom_metadata_map)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise EngineBuildError(f"{p}: not a loadable ONNX model ({e})") from None
    return {prop.key: prop.value for prop in model.metadata_props}


# --------------------------------------------------------------------------- FP16 conversion
#: (op_type, input index) slots whose float tensors must stay float32 by the ONNX spec.
_FLOAT32_SLOTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def convert_to_fp16(model: Any) -> Any:
    """A float16 copy of a float32 ONNX ``ModelProto`` with float32 graph inputs and outputs.

    Float32 initializers, ``Constant`` values, ``ConstantOfShape`` values, ``Cast(to=FLOAT)``
    and ``dtype`` attributes become float16, except tensors that feed a slot the ONNX spec
    keeps float32 (Resize roi/scales). Each float32 graph input ``x`` gets a ``Cast`` to
    float16 (consumers read ``x__fp16``); each float32 output ``y`` is produced as ``y__fp16``
    and cast back to ``y``. Shapes are re-inferred. Control-flow subgraphs are not supported
    (:class:`EngineBuildError`): facetrack's exports unroll MDM's steps.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    for node in g.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise EngineBuildError(f"FP16 conversion: control-flow node {node.op_type} {node.name!r} is not supported")

    keep32: set[str] = set()
    for node in g.node:
        for i, name in enumerate(node.input):
            if (node.op_type, i) in _FLOAT32_SLOTS and name:
                keep32.add(name)

    def half_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
        arr = numpy_helper.to_array(t)
        big = np.abs(arr[np.isfinite(arr)]).max(initial=0.0)
        if big > 65504.0:
            log.warning("FP16 conversion: tensor %r has values up to %.3g, beyond float16; they saturate", t.name, big)
        return numpy_helper.from_array(np.clip(arr, -65504.0, 65504.0).astype(np.float16), t.name)

    for i, init in enumerate(g.initializer):
        if init.data_type == FLOAT and init.name not in keep32:
            g.initializer[i].CopyFrom(half_tensor(init))

    for node in g.node:
        out_kept = any(o in keep32 for o in node.output)
        for attr in node.attribute:
            if node.op_type in ("Constant", "ConstantOfShape") and attr.name == "value" and attr.t.data_type == FLOAT:
                if not out_kept:
                    attr.t.CopyFrom(half_tensor(attr.t))
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT and not out_kept:
                attr.i = HALF
            elif attr.name == "dtype" and attr.type == onnx.AttributeProto.INT and attr.i == FLOAT:
                attr.i = HALF
        if node.op_type == "ConstantOfShape" and not any(a.name == "value" for a in node.attribute):
            # The spec's default value is a float32 zero.
            node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16))))

    init_names = {t.name for t in g.initializer}
    new_nodes: list[onnx.NodeProto] = []
    for inp in g.input:
        if inp.name in init_names or inp.type.tensor_type.elem_type != FLOAT:
            continue
        cast_name = inp.name + "__fp16"
        for node in g.node:
            for i, name in enumerate(node.input):
                if name == inp.name:
                    node.input[i] = cast_name
        new_nodes.append(helper.make_node("Cast", [inp.name], [cast_name], name=f"{inp.name}_to_fp16", to=HALF))
    tail: list[onnx.NodeProto] = []
    for out in g.output:
        if out.type.tensor_type.elem_type != FLOAT:
            continue
        inner = out.name + "__fp16"
        for node in g.node:
            for i, name in enumerate(node.output):
                if name == out.name:
                    node.output[i] = inner
            for i, name in enumerate(node.input):  # an output also read inside the graph
                if name == out.name:
                    node.input[i] = inner
        tail.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_to_fp32", to=FLOAT))
    nodes = new_nodes + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    except Exception as e:
        raise EngineBuildError(f"FP16 conversion produced an inconsistent graph ({e})") from None
    return m


# --------------------------------------------------------------------------- TensorRT builder
class TensorRTBuilder:
    """The real :class:`facetrack.engines.engine_cache.EngineBuilder`: ONNX -> serialised TensorRT plan."""

    def __call__(self, spec: BuildSpec, platform: Platform) -> BuiltEngine:
        trt, _cuda = require_tensorrt()
        onnx_path = Path(spec.onnx_path)
        metadata = read_onnx_metadata(onnx_path)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)

        strongly_typed = spec.precision == "fp16" and trt_version_tuple(platform.trt_version) >= STRONG_TYPING_FROM
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if strongly_typed:
            import onnx

            model_bytes = convert_to_fp16(onnx.load(str(onnx_path))).SerializeToString()
        else:
            model_bytes = onnx_path.read_bytes()
        # ``path`` lets the parser resolve external weight files beside the model.
        if not parser.parse(model_bytes, str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(errors))

        config = builder.create_builder_config()
        if spec.workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_mb) << 20)
        if spec.precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)
        elif not strongly_typed:
            config.set_flag(trt.BuilderFlag.FP16)

        profile_shapes = self._add_profile(trt, builder, network, config, spec.max_faces, onnx_path)

        timing_bytes = b""
        if spec.timing_cache is not None and Path(spec.timing_cache).is_file():
            timing_bytes = Path(spec.timing_cache).read_bytes()
        timing = config.create_timing_cache(timing_bytes)
        config.set_timing_cache(timing, True)  # ignore_mismatch: a stale cache only costs time

        log.info("%s: building a %s TensorRT engine (max %d faces)%s", onnx_path, spec.precision, spec.max_faces,
                 ", strongly typed" if strongly_typed else "")
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise EngineBuildError(f"{onnx_path}: TensorRT could not build an engine (see the TensorRT log above)")
        if spec.timing_cache is not None:
            _write_atomic(Path(spec.timing_cache), bytes(config.get_timing_cache().serialize()))

        build_notes = {
            "fp16_mode": ("strongly-typed fp16 ONNX" if strongly_typed else "BuilderFlag.FP16")
            if spec.precision == "fp16" else "none (TF32 off)",
            "workspace_mb": spec.workspace_mb,
            "input_profiles": profile_shapes,
        }
        metadata[names.TRT_BUILD] = json.dumps(build_notes, sort_keys=True)
        return BuiltEngine(plan=bytes(plan), metadata=metadata)

    @staticmethod
    def _add_profile(trt: Any, builder: Any, network: Any, config: Any, max_faces: int, onnx_path: Path) -> dict:
        """One optimisation profile over the face axis (axis 0) of every input; returns the shapes used."""
        lo, opt, hi = profile_for(max_faces)
        shapes: dict[str, list[list[int]]] = {}
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = list(tensor.shape)
            if any(d < 0 for d in shape[1:]):
                raise EngineBuildError(f"{onnx_path}: input {tensor.name!r} has dynamic non-batch dims {shape}")
            if shape[0] >= 0:
                if hi > shape[0]:
                    raise EngineBuildError(
                        f"{onnx_path}: input {tensor.name!r} has a fixed batch of {shape[0]}; "
                        f"re-export with a dynamic '{names.BATCH_AXIS}' axis for --max-faces {hi}"
                    )
                continue
            mins, opts, maxs = ([b] + shape[1:] for b in (lo, opt, hi))
            profile.set_shape(tensor.name, mins, opts, maxs)
            shapes[tensor.name] = [mins, opts, maxs]
        if shapes:
            config.add_optimization_profile(profile)
        return shapes


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(data)
    tmp.replace(path)


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facetrack build-engine``."""
    parser.add_argument("onnx", type=Path, help="exported facetrack ONNX model")
    parser.add_argument("--fp16", action="store_true", help="build at FP16 precision (default FP32, TF32 off)")
    parser.add_argument("--max-faces", type=int, default=1, metavar="N",
                        help="largest face batch the engine accepts (profile min 1, opt 1, max N; default 1)")
    parser.add_argument("--out", type=Path, default=None, metavar="PATH",
                        help="write the engine here (default: the engine cache, reused when up to date)")
    parser.add_argument("--workspace", type=int, default=None, metavar="MB", help="builder workspace limit in MiB")
    parser.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help="engine and timing cache directory (default $FACETRACK_CACHE or ~/.cache/facetrack/engines)")


def run(args: argparse.Namespace) -> int:
    """Build the engine; prints its path. Exit 0 on success, 2 for bad arguments, 1 when it cannot build."""
    prog = "facetrack build-engine"
    onnx_path: Path = args.onnx
    if not onnx_path.is_file():
        print(f"{prog}: {onnx_path}: no such ONNX file", file=sys.stderr)
        return 2
    if args.max_faces < 1:
        print(f"{prog}: --max-faces must be at least 1, not {args.max_faces}", file=sys.stderr)
        return 2
    if args.workspace is not None and args.workspace < 1:
        print(f"{prog}: --workspace must be a positive number of MiB, not {args.workspace}", file=sys.stderr)
        return 2
    precision = "fp16" if args.fp16 else "fp32"
    cache_dir = args.cache_dir or default_cache_dir()
    try:
        platform = probe_platform()
        builder = TensorRTBuilder()
        if args.out is None:
            path = get_or_build(onnx_path, precision, args.max_faces, builder, lambda: platform,
                                cache_dir=cache_dir, workspace_mb=args.workspace)
        else:
            spec = BuildSpec(onnx_path, precision, args.max_faces, args.workspace, timing_cache_path(cache_dir, platform))
            path = build_engine_file(spec, args.out, builder, platform)
    except (TensorRTUnavailableError, EngineBuildError, EngineFileError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0
