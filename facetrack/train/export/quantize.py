"""int8 weights for the CPU: the shipped model's matrix products with 8-bit weights.

    python -m facetrack.train.export.quantize MODEL.onnx [--data ../shared/data --checkpoint CKPT.pt]

Where mdm-rt's CPU time goes (``docs/DETECTORS.md``): GridSample a third, and the recurrent
layer's matrix product about a quarter, most of it reading 5.5 MB of float32 weights per step.
ONNX Runtime's dynamic quantization stores the weights of every ``Gemm`` / ``MatMul`` as int8
(per tensor) and quantizes their inputs per call; convolutions and patch sampling
stay float32. The result is written beside the model as ``NAME.int8.onnx`` (:func:`int8_path`)
with the model's metadata, its own weights checksum, and ``facetrack.int8.source_sha256``: the
sha256 of the float32 file it was made from. ONNX Runtime on the CPU loads that file in place of
the float32 one when the checksum still matches (:mod:`facetrack.engines.onnxrt`); CUDA,
TensorRT and PyTorch keep the float32 model.

:func:`compare` measures what the int8 weights cost in accuracy on real faces (the checkpoint's
held-out validation faces, from their ground-truth boxes, through the runtime path), so a
quantized file is shipped only with its figures beside it (``facetrack.train.export.ship``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facetrack.engines import names
from facetrack.engines.engine_cache import file_sha256
from facetrack.engines.onnxrt import int8_path

#: metadata of an int8 file: how it was made and, after ship, its validation figures (JSON)
QUANTIZATION = "facetrack.int8.quantization"


def quantize(model: str | Path, out: str | Path | None = None) -> Path:
    """Write the int8 variant of the facetrack ONNX ``model`` (default :func:`int8_path`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from facetrack.train.export.to_onnx import weights_sha256

    src = Path(model)
    dst = Path(out) if out is not None else int8_path(src)
    source = onnx.load(str(src))
    meta = {p.key: p.value for p in source.metadata_props}
    if names.KIND not in meta:
        raise ValueError(f"{src}: not a facetrack model (no '{names.KIND}' metadata)")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "q.onnx"
        quantize_dynamic(str(src), str(raw), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
        proto = onnx.load(str(raw))
    how = {"method": "onnxruntime.quantization.quantize_dynamic", "ops": ["MatMul", "Gemm"], "weights": "int8 per tensor",
           "activations": "uint8, quantized per call", "source": src.name}
    meta.update({names.CHECKSUM: weights_sha256(proto), names.INT8_SOURCE: file_sha256(src), QUANTIZATION: json.dumps(how)})
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(dst))
    return dst


def validation_faces(checkpoint: str | Path, data_root: Path) -> list[Any]:
    """The held-out validation faces of a training checkpoint: its sources and seed, split again
    and checked against the split it stored."""
    from facetrack.train.models.checkpoint import load_checkpoint
    from facetrack.train.data.sources import load_sources, parse_sources, same_split, split_record

    meta = load_checkpoint(checkpoint).meta
    data = meta.get("data") or {}
    items = data.get("sources")
    if not items:
        raise ValueError(f"{checkpoint}: no data sources recorded (trained before --data SOURCE)")
    split = load_sources(parse_sources(items, data_root), seed=int(meta.get("seed", 0)))
    if not same_split(meta.get("split"), split_record(split.val)):
        raise ValueError(f"{checkpoint}: its validation split cannot be made again from {data_root}")
    return list(split.val)


def compare(fp32: str | Path, int8: str | Path, faces: Sequence[Any]) -> dict[str, float]:
    """Both files on ``faces`` (samples with ``image`` and ``landmarks``) from the ground truth's
    tight box through :class:`facetrack.tracker.landmarker.Landmarker` on the CPU: mean NME (%)
    of each, the mean and largest landmark difference between them (% of the eye distance)."""
    from facetrack.tracker.geometry import box_of, to_gray
    from facetrack.tracker.landmarker import TIGHT_BOX, Landmarker
    from facetrack.eval.metrics import nme
    from facetrack.train.data.datasets import read_image

    from facetrack.engines.onnxrt import OnnxRuntimeBackend

    a = Landmarker(OnnxRuntimeBackend(fp32, int8=False, threads=1))
    b = Landmarker(OnnxRuntimeBackend(int8, threads=1))
    ea, eb, d = [], [], []
    for s in faces:
        gray = to_gray(read_image(s.image))
        fa = a.fit_box(gray, box_of(s.landmarks), calibration=TIGHT_BOX).landmarks
        fb = b.fit_box(gray, box_of(s.landmarks), calibration=TIGHT_BOX).landmarks
        ea.append(nme(fa, s.landmarks))
        eb.append(nme(fb, s.landmarks))
        d.append(float(np.linalg.norm(fb - fa, axis=1).mean() / np.linalg.norm(s.landmarks[36] - s.landmarks[45])))
    return {"faces": len(faces), "nme_fp32_pct": 100 * float(np.mean(ea)), "nme_int8_pct": 100 * float(np.mean(eb)),
            "mean_change_pct": 100 * float(np.mean(d)), "max_change_pct": 100 * float(np.max(d))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facetrack.train.export.quantize", description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--data", type=Path, default=None, help="shared data folder: compare on the checkpoint's validation faces")
    p.add_argument("--checkpoint", type=Path, default=None, help="the training checkpoint the model was exported from")
    a = p.parse_args(argv)
    try:
        out = quantize(a.model, a.out)
    except (OSError, ValueError) as e:
        print(f"facetrack quantize: {e}", file=sys.stderr)
        return 2
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB (float32: {a.model.stat().st_size / 1e6:.1f} MB)")
    if a.data and a.checkpoint:
        print(json.dumps(compare(a.model, out, validation_faces(a.checkpoint, a.data))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
