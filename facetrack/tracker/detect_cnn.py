"""A small CNN face detector trained by this project (``facetrack/train/loops/face_detector.py``), run
with ONNX Runtime on the CPU; no torch at run time.

The network is anchor-free in the manner of CenterNet (Zhou et al., "Objects as Points", 2019):
on the grey frame, resized so its long side is one of :attr:`CnnFaceDetector.sides` and padded to a
multiple of :data:`STRIDE_MULTIPLE`, it predicts per cell of stride :data:`STRIDE` a face-centre
score, the centre's sub-cell offset and the log of the box's width and height. A face is a local
maximum of the score (3x3) above the threshold; overlapping boxes are merged (best first). A
search may look at the frame at several sizes, one part each (:class:`CnnFaceDetector`).

The boxes are in the convention of the teachers it was trained on (``frames_v2``: BlazeFace
full-range boxes); the box calibration maps them to the landmarks' tight box like any
detector's. The ONNX file carries the record of how it was made (``facetrack.detector.*``
metadata: command, data, split, steps, date, git commit).
"""
from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrack.engines import names
from facetrack.engines.onnxrt import ALLOW_SPINNING
from facetrack.tracker.detect import Detection, _calibration_path, _check_gray, _load_calibrations, box_calibration, merge_detections
from facetrack.tracker.geometry import BoxCalibration

log = logging.getLogger(__name__)

#: the graph's input: ``(N, 1, H, W)`` float32 grey levels 0-255 (normalised inside the graph),
#: ``H`` and ``W`` multiples of :data:`STRIDE_MULTIPLE`
INPUT = names.DETECTOR_INPUT
#: the graph's output: ``(N, 5, H / STRIDE, W / STRIDE)`` float32: centre score (0-1, after the
#: sigmoid), centre offset x, y within the cell (cells), log(box width / STRIDE), log(box height / STRIDE)
OUTPUT = names.DETECTOR_OUTPUT
#: output cell size in input pixels
STRIDE = 8
#: input sides must be multiples of this (the deepest feature map is 1/32 of the input)
STRIDE_MULTIPLE = 32
#: metadata key prefix of the detector's training record in the ONNX file
META_PREFIX = "facetrack.detector."
#: metadata key of the JSON list of ``frames_v2`` groups held out of training
META_HELDOUT = META_PREFIX + "heldout_groups"


def default_weights() -> Path:
    """The shipped weights: ``facetrack/tracker/weights/face-detector.onnx``."""
    return Path(str(resources.files("facetrack.tracker") / "weights" / "face-detector.onnx"))


def model_record(path: str | Path | None = None) -> dict[str, str]:
    """The ``facetrack.detector.*`` metadata of a detector file (default: the shipped one),
    keys without the prefix. ``ValueError`` naming the file when it is not a detector file."""
    import onnxruntime as ort

    p = Path(path) if path is not None else default_weights()
    meta = _session(p, ort).get_modelmeta().custom_metadata_map
    rec = {k[len(META_PREFIX):]: v for k, v in meta.items() if k.startswith(META_PREFIX)}
    if not rec:
        raise ValueError(f"{p}: no {META_PREFIX}* metadata (not a facetrack face detector)")
    return rec


def heldout_groups(path: str | Path | None = None) -> list[str]:
    """The ``frames_v2`` groups a detector file was not trained on (from its metadata)."""
    p = Path(path) if path is not None else default_weights()
    rec = model_record(p)
    if "heldout_groups" not in rec:
        raise ValueError(f"{p}: no {META_HELDOUT} in its metadata")
    return list(json.loads(rec["heldout_groups"]))


def _session(path: Path, ort: Any, threads: int = 1) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: face detector weights not found")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry(ALLOW_SPINNING, "0")  # as the landmark models: spinning costs CPU
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own pybind exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a loadable ONNX model ({first})") from None


def prepare(gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The network's input for a grey frame: ``(1, 1, H, W)`` float32, the frame resized so its
    long side is ``max_side`` (area filter when shrinking) and padded right and bottom with grey
    128 to multiples of :data:`STRIDE_MULTIPLE`; and the factor ``f`` (input px = f * frame px)."""
    h, w = gray.shape
    f = max_side / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    img = gray if (nw, nh) == (w, h) else cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    ph, pw = -(-nh // STRIDE_MULTIPLE) * STRIDE_MULTIPLE, -(-nw // STRIDE_MULTIPLE) * STRIDE_MULTIPLE
    out = np.full((1, 1, ph, pw), 128.0, np.float32)
    out[0, 0, :nh, :nw] = img
    return out, nw / w


def decode(cells: np.ndarray, threshold: float, max_faces: int = 64) -> list[tuple[np.ndarray, float]]:
    """Boxes from one output map ``cells`` ``(5, h, w)`` (:data:`OUTPUT`): the local maxima (3x3)
    of the centre score at or above ``threshold``, best first, at most ``max_faces``. Returns
    ``(box (x0, y0, x1, y1) float64 in input pixels, score)`` pairs, not yet merged."""
    heat = np.ascontiguousarray(cells[0], np.float32)
    peak = cv2.dilate(heat, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
    ys, xs = np.nonzero((heat >= peak) & (heat >= threshold))
    order = np.argsort(-heat[ys, xs], kind="stable")[:max_faces]
    out = []
    for y, x in zip(ys[order], xs[order]):
        cx, cy = (x + float(cells[1, y, x])) * STRIDE, (y + float(cells[2, y, x])) * STRIDE
        bw, bh = np.exp(float(cells[3, y, x])) * STRIDE, np.exp(float(cells[4, y, x])) * STRIDE
        out.append((np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]), float(heat[y, x])))
    return out


class CnnFaceDetector:
    """The project's CNN face detector (:mod:`facetrack.tracker.detect`'s ``FaceDetector``).

    ``weights``: the ONNX file (default :func:`default_weights`); ``sides``: the long sides the
    frame is resized to (px), one part of a search each (the network was trained on frames
    scaled to a long side of 160-640 px: a second, larger side finds the small faces of large
    photos); ``threshold``: the least centre score of a face; ``threads``: ONNX Runtime
    intra-op threads (1, as the landmark models). Score: the centre score, 0-1.
    """

    def __init__(self, weights: str | Path | None = None, sides: tuple[int, ...] = (320,), threshold: float = 0.4,
                 threads: int = 1, name: str = "cnn", calibration: BoxCalibration | None = None) -> None:
        import onnxruntime as ort

        self.weights = Path(weights) if weights is not None else default_weights()
        self._session = _session(self.weights, ort, threads)
        names_in = [i.name for i in self._session.get_inputs()]
        names_out = [o.name for o in self._session.get_outputs()]
        if names_in != [INPUT] or names_out != [OUTPUT]:
            raise ValueError(f"{self.weights}: not a facetrack face detector (inputs {names_in}, outputs {names_out}; "
                             f"expected [{INPUT!r}] -> [{OUTPUT!r}])")
        self.name = name
        if not sides or any(int(s) < STRIDE_MULTIPLE for s in sides):
            raise ValueError(f"{name}: sides must be at least {STRIDE_MULTIPLE} px, got {sides!r}")
        self.sides, self.threshold = tuple(int(s) for s in sides), float(threshold)
        self.parts = len(self.sides)
        if calibration is None:
            # one network, one box convention: a variant (other sides) without its own entry takes "cnn"'s
            own = f"detector:{self.name}"
            calibration = box_calibration(own if own in _load_calibrations(str(_calibration_path())) else "detector:cnn")
        self.calibration = calibration

    def _run(self, g: np.ndarray, side: int) -> list[Detection]:
        x, f = prepare(g, side)
        cells = self._session.run([OUTPUT], {INPUT: x})[0][0]
        return [Detection((box / f).astype(np.float32), s) for box, s in decode(cells, self.threshold)]

    def detect(self, gray: np.ndarray) -> list[Detection]:
        """Faces in ``gray`` (``uint8`` ``(H, W)``), boxes in its pixels, best first."""
        g = _check_gray(gray)
        return merge_detections([d for side in self.sides for d in self._run(g, side)])

    def detect_part(self, gray: np.ndarray, part: int) -> list[Detection]:
        """The search at long side ``sides[part]``; best first."""
        if not 0 <= part < self.parts:
            raise ValueError(f"{self.name}: part {part} out of range 0..{self.parts - 1}")
        return merge_detections(self._run(_check_gray(gray), self.sides[part]))
