"""Export trained checkpoints as the shipped models, score them on the held-out 300-W faces,
and record command, data and figures inside each ONNX file (``facetrack.training``).

    python -m facetrack.train.export.ship --data ../shared/data \\
        --model mdm-rt=runs/mdm-rt-final/last.pt --model aan=runs/aan-final/last.pt \\
        --command mdm-rt="facetrack train mdm-rt ..." --command aan="facetrack train aan ..." \\
        --out facetrack/tracker/weights

Each shipped file also gets its int8 variant for the CPU (``NAME.int8.onnx``,
:mod:`facetrack.train.export.quantize`), kept only when its mean NME on the checkpoint's held-out
validation faces is within ``--int8-tolerance`` of the float32 model's (relative; default 1 %);
the comparison is recorded in the int8 file (``facetrack.int8.quantization``).

Scores (mean NME, outer eye corners, 68 points) are computed through the runtime path the
tracker uses (:class:`facetrack.tracker.landmarker.Landmarker` on ONNX Runtime) on the 300-W test faces in
the shared data (``common`` = helen_test + lfpw_test, ``challenging`` = ibug), from three boxes:
the ground truth's tight box, the 300-W initialisation box (``300w`` calibration) and the
default detector's box (its calibration; a face the detector misses counts as a failure and is
reported, not scored). They are information for users: no figure here selects a checkpoint.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facetrack.engines import names
from facetrack.engines.onnxrt import int8_path
from facetrack.tracker.geometry import box_of, to_gray
from facetrack.eval.metrics import nme

log = logging.getLogger(__name__)

SPLITS = ("common", "challenging")
BOXES = ("gt", "300w", "detector")


def _fitters(models: dict[str, Path]) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Method name -> ``fit(gray, landmark_box) -> (68, 2)`` for the shipped model choices."""
    from facetrack.tracker.landmarker import TIGHT_BOX, Landmarker
    from facetrack.tracker.models import FitChain

    lms = {k: Landmarker(v, backend="onnxruntime") for k, v in models.items()}
    chains = {k: FitChain([lm]) for k, lm in lms.items()}
    mdm = next((k for k in lms if k.startswith("mdm")), None)
    if mdm and "aan" in lms:  # the runtime's aan+mdm chain (facetrack.tracker.models)
        chains[f"aan+{mdm}"] = FitChain([lms["aan"], lms[mdm]])
    # the boxes given are already landmark boxes (calibrated by score_300w)
    return {k: (lambda g, b, c=c: c.fit_box(g, b, calibration=TIGHT_BOX).landmarks) for k, c in chains.items()}


def score_300w(models: dict[str, Path], data_dir: Path) -> dict[str, Any]:
    """``{method: {split: {box: {"nme": mean, "faces": n, "missed": n}}}}`` on the 300-W test faces."""
    import cv2

    from facetrack.tracker.detect import box_calibration, still_detector
    from facetrack.tracker.geometry import box_iou
    from facetrack.train.data.datasets import load_images68, read_image

    det = still_detector()  # still images: the CLI's and eval-images' detector for them
    cal300 = box_calibration("300w")
    fitters = _fitters(models)
    res: dict[str, Any] = {m: {} for m in fitters}
    for split in SPLITS:
        errs: dict[str, dict[str, list[float]]] = {m: {b: [] for b in BOXES} for m in fitters}
        missed = {b: 0 for b in BOXES}
        for s in load_images68(data_dir, split):
            gray = to_gray(read_image(s.image))
            gt_box = box_of(s.landmarks)
            boxes: dict[str, np.ndarray | None] = {"gt": gt_box, "300w": None if s.box is None else cal300(s.box)}
            dets = det.detect(gray)
            best = max(dets, key=lambda d: box_iou(d.box, gt_box), default=None)
            boxes["detector"] = det.calibration(best.box) if best is not None and box_iou(best.box, gt_box) > 0.2 else None
            for b, box in boxes.items():
                if box is None:
                    missed[b] += 1
                    continue
                for m, fit in fitters.items():
                    errs[m][b].append(float(nme(fit(gray, box), s.landmarks)))
        for m in fitters:
            res[m][split] = {b: {"nme": round(float(np.mean(e)), 4) if e else None, "faces": len(e), "missed": missed[b]}
                             for b, e in errs[m].items()}
    return res


def set_training_record(onnx_path: Path, record: dict[str, Any]) -> None:
    """Replace ``facetrack.training`` in an exported model (weights and checksum untouched)."""
    import onnx

    proto = onnx.load(str(onnx_path))
    for p in proto.metadata_props:
        if p.key == names.TRAINING:
            p.value = json.dumps(record)
            break
    else:
        proto.metadata_props.add(key=names.TRAINING, value=json.dumps(record))
    onnx.save(proto, str(onnx_path))


#: the tensors of MDM's confidence head, ``sigmoid(hidden_out . w + b)``, as the exporter names them
HEAD_WEIGHT, HEAD_BIAS = "confidence_head.weight", "confidence_head.bias"


def patch_confidence_head(src: Path, dst: Path, w: np.ndarray, b: float, record: dict[str, Any]) -> list[Path]:
    """Write MDM model ``src`` (and its int8 variant beside it, if any) to ``dst`` (a folder, or
    the same folder to replace them) with the confidence head ``w`` ``(H,)``, ``b``; nothing else
    changes but the head's tensors, ``record`` added to ``facetrack.training`` under
    ``confidence_head``, the weights checksum and the int8 file's source checksum. In the int8
    file the head's weight is quantised symmetrically (zero point 0, scale max|w| / 127), as the
    quantiser's other matrix products. Returns the files written."""
    import onnx
    from onnx import numpy_helper

    from facetrack.engines.engine_cache import file_sha256
    from facetrack.train.export.to_onnx import weights_sha256

    w = np.asarray(w, np.float32).reshape(-1)
    bias = np.array([b], np.float32)

    def put(proto: Any, name: str, value: np.ndarray) -> None:
        for k, init in enumerate(proto.graph.initializer):
            if init.name == name:
                old = numpy_helper.to_array(init)
                if old.size != value.size:
                    raise ValueError(f"{src}: {name} holds {old.size} values, the new head {value.size}")
                proto.graph.initializer[k].CopyFrom(numpy_helper.from_array(value.astype(old.dtype).reshape(old.shape), name))
                return
        raise ValueError(f"{src}: no tensor {name!r}: not an MDM model exported by facetrack.train.export.to_onnx")

    def meta(proto: Any, key: str) -> Any:
        return next((p for p in proto.metadata_props if p.key == key), None)

    def finish(proto: Any, out: Path) -> None:
        rec = meta(proto, names.TRAINING)
        doc = json.loads(rec.value) if rec is not None and rec.value else {}
        doc["confidence_head"] = record
        if rec is None:
            proto.metadata_props.add(key=names.TRAINING, value=json.dumps(doc))
        else:
            rec.value = json.dumps(doc)
        chk = meta(proto, names.CHECKSUM)
        if chk is not None:
            chk.value = weights_sha256(proto)
        onnx.save(proto, str(out))

    dst.mkdir(parents=True, exist_ok=True)
    out = dst / src.name
    proto = onnx.load(str(src))
    q_src = int8_path(src)
    q_proto = onnx.load(str(q_src)) if q_src.exists() else None
    put(proto, HEAD_WEIGHT, w.reshape(1, -1))
    put(proto, HEAD_BIAS, bias)
    finish(proto, out)
    written = [out]
    if q_proto is not None:
        scale = float(np.abs(w).max()) / 127.0 or 1.0
        put(q_proto, HEAD_WEIGHT + "_Transposed_quantized", np.clip(np.round(w / scale), -127, 127).astype(np.int8).reshape(-1, 1))
        put(q_proto, HEAD_WEIGHT + "_Transposed_scale", np.array(scale, np.float32))
        put(q_proto, HEAD_WEIGHT + "_Transposed_zero_point", np.array(0, np.int8))
        put(q_proto, HEAD_BIAS, bias)
        src_chk = meta(q_proto, names.INT8_SOURCE)
        if src_chk is not None:
            src_chk.value = file_sha256(out)
        finish(q_proto, int8_path(out))
        written.append(int8_path(out))
    return written


def ship_int8(path: Path, checkpoint: str | Path, data: Path, tolerance: float) -> dict[str, Any]:
    """Write ``path``'s int8 variant, compare both on the checkpoint's validation faces, and keep
    the variant only within ``tolerance``; returns the comparison (``kept`` says which)."""
    from facetrack.train.export.quantize import QUANTIZATION, compare, quantize, validation_faces

    q = quantize(path)
    figures = compare(path, q, validation_faces(checkpoint, data))
    figures["kept"] = figures["nme_int8_pct"] <= figures["nme_fp32_pct"] * (1.0 + tolerance)
    if figures["kept"]:
        import onnx

        proto = onnx.load(str(q))
        for prop in proto.metadata_props:
            if prop.key == QUANTIZATION:
                prop.value = json.dumps({**json.loads(prop.value), "validation": figures})
        onnx.save(proto, str(q))
        print(f"{q}: {q.stat().st_size / 1e6:.1f} MB, validation NME {figures['nme_int8_pct']:.3f} % "
              f"against {figures['nme_fp32_pct']:.3f} % in float32 ({figures['faces']} faces)")
    else:
        q.unlink()
        print(f"{q}: not kept: validation NME {figures['nme_int8_pct']:.3f} % against {figures['nme_fp32_pct']:.3f} % in float32")
    return figures


def markdown(scores: dict[str, Any]) -> str:
    """The score table as Markdown (mean NME, 68 points, outer-eye normalised)."""
    rows = ["| model | split | GT box | 300-W box | detector box (missed) |", "|---|---|---|---|---|"]
    for m, per in scores.items():
        for split, b in per.items():
            def cell(k: str) -> str:
                v = b[k]["nme"]
                return "-" if v is None else f"{v:.4f}"
            rows.append(f"| {m} | {split} ({b['gt']['faces']}) | {cell('gt')} | {cell('300w')} | {cell('detector')} ({b['detector']['missed']}) |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from facetrack.train.models.checkpoint import load_checkpoint
    from facetrack.train.export.to_onnx import export_onnx, training_facts

    p = argparse.ArgumentParser(prog="python -m facetrack.train.export.ship", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", action="append", default=[], metavar="ARCH=CHECKPOINT")
    p.add_argument("--command", action="append", default=[], metavar="ARCH=COMMANDS", help="training command(s) to record")
    p.add_argument("--note", action="append", default=[], metavar="ARCH=TEXT", help="free text to record")
    p.add_argument("--out", type=Path, default=Path("facetrack/tracker/weights"))
    p.add_argument("--json", type=Path, default=None, help="also write the records here")
    p.add_argument("--output-tolerance", type=float, default=0.0,
                   help="export parity tolerance on the other outputs (confidence, hidden state; default: the exporter's)")
    p.add_argument("--no-int8", action="store_true", help="no int8 variant for the CPU")
    p.add_argument("--int8-tolerance", type=float, default=0.01,
                   help="largest relative rise of the validation NME the int8 variant may cost (default 0.01)")
    p.add_argument("--landmark-tolerance", type=float, default=0.0,
                   help="export parity tolerance on landmarks, crop px (default: the exporter's, "
                        "facetrack.train.export.to_onnx.PARITY_TOL_LANDMARKS)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="ship: %(message)s")
    kv = lambda items: dict(i.split("=", 1) for i in items)  # noqa: E731
    ckpts, commands, notes = kv(args.model), kv(args.command), kv(args.note)
    import facetrack.train.export.to_onnx as export_module

    # the exporter's check reads this module constant; the shipped figure is recorded in the metadata
    export_module.PARITY_TOL_LANDMARKS = max(export_module.PARITY_TOL_LANDMARKS, args.landmark_tolerance)
    export_module.PARITY_TOL = max(export_module.PARITY_TOL, args.output_tolerance)
    paths, records = {}, {}
    for arch, ck in ckpts.items():
        rec = training_facts(load_checkpoint(ck).meta)
        rec.update({"commands": commands.get(arch, ""), "note": notes.get(arch, ""), "checkpoint": str(ck),
                    "license": "trained on 300-W / iBUG images and dlib pseudo-labels: iBUG non-commercial research terms"})
        int8_path(args.out / f"{arch}.onnx").unlink(missing_ok=True)  # made from the file replaced now
        paths[arch] = export_onnx(ck, args.out / f"{arch}.onnx", training=rec)
        records[arch] = rec
    scores = score_300w(paths, args.data)
    for arch, path in paths.items():
        records[arch]["test_300w_nme"] = {k: v for k, v in scores.items() if arch in k.split("+")}
        records[arch]["test_protocol"] = ("mean NME (outer eye corners, 68 points) on the 300-W test faces in the shared data "
                                          "(common = helen_test + lfpw_test, challenging = ibug), via facetrack.tracker.landmarker on ONNX Runtime; "
                                          "boxes: ground-truth tight box, 300-W box (300w calibration), default detector (its calibration)")
        set_training_record(path, records[arch])
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
        if not args.no_int8:
            try:
                ship_int8(path, ckpts[arch], args.data, args.int8_tolerance)
            except ValueError as e:  # e.g. a checkpoint without its data sources: no faces to judge it on
                int8_path(path).unlink(missing_ok=True)
                print(f"{int8_path(path)}: not made: {e}", file=sys.stderr)
    print(markdown(scores))
    if args.json:
        args.json.write_text(json.dumps({"records": records, "scores": scores}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
