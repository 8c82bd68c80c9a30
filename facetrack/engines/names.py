"""Tensor names, shapes and metadata keys of every exported facetrack model.

Nothing else in facetrack spells a tensor name: exporters, backends, the tracker and the
TensorRT builder all import them from here.

All models take a grey crop made by :mod:`facetrack.tracker.geometry` (``S`` = ``input_size``):

==============  ===================  =========================================================
tensor          shape, dtype         meaning
==============  ===================  =========================================================
``image``       (N, 1, S, S) f32     grey crop, values in [0, 1]
``init_shape``  (N, 68, 2) f32       MDM only: starting shape, (x, y) crop pixels
``hidden``      (N, H) f32           MDM only: recurrent state in (zeros for a new face)
``landmarks``   (N, 68, 2) f32       prediction, (x, y) crop pixels
``confidence``  (N,) f32             probability that the crop holds a face and ``landmarks``
                                     fit it (error under 0.08 of the inter-ocular distance)
``hidden_out``  (N, H) f32           MDM only: recurrent state after the last step
==============  ===================  =========================================================
"""
from __future__ import annotations

from dataclasses import dataclass

IMAGE = "image"
INIT_SHAPE = "init_shape"
HIDDEN = "hidden"
LANDMARKS = "landmarks"
CONFIDENCE = "confidence"
HIDDEN_OUT = "hidden_out"

#: The face detector (:mod:`facetrack.tracker.detect_cnn`): input ``(N, 1, H, W)`` float32 grey
#: levels 0-255; output ``(N, 5, H / 8, W / 8)`` float32 cells (centre score, offset x, y, log sizes).
DETECTOR_INPUT = "gray"
DETECTOR_OUTPUT = "cells"

#: Name of the dynamic batch (face) axis in exported graphs.
BATCH_AXIS = "faces"


@dataclass(frozen=True)
class ModelIO:
    """Ordered input and output names of one model kind."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


#: Model kinds (``metadata[KIND]``) and their tensors. ``mdm`` covers ``mdm`` and ``mdm-rt``.
MODEL_IO: dict[str, ModelIO] = {
    "mdm": ModelIO(inputs=(IMAGE, INIT_SHAPE, HIDDEN), outputs=(LANDMARKS, CONFIDENCE, HIDDEN_OUT)),
    "aan": ModelIO(inputs=(IMAGE,), outputs=(LANDMARKS, CONFIDENCE)),
}

# Metadata keys stored in every model file (ONNX ``metadata_props``; all values are strings,
# JSON where structured).
FORMAT = "facetrack.format"  # format version, "1"
KIND = "facetrack.kind"  # "mdm" | "aan": selects MODEL_IO
ARCH = "facetrack.arch"  # "mdm" | "mdm-rt" | "aan": the training configuration's name
INPUT_SIZE = "facetrack.input_size"  # S, e.g. "112"
N_POINTS = "facetrack.n_points"  # "68"
HIDDEN_SIZE = "facetrack.hidden_size"  # H for mdm, "0" for aan
STEPS = "facetrack.steps"  # T for mdm, "0" for aan
MEAN_SHAPE = "facetrack.mean_shape"  # JSON (68, 2): the template in crop pixels
CONFIG = "facetrack.config"  # JSON: the architecture config dataclass
TRAINING = "facetrack.training"  # JSON: command, data, seed, steps, figures (NME ...)
VERSION = "facetrack.version"  # facetrack version that exported it
CHECKSUM = "facetrack.weights_sha256"  # optional: sha256 over the initializers
INT8_SOURCE = "facetrack.int8.source_sha256"  # int8 variant (NAME.int8.onnx): sha256 of the float32 file it was made from

FORMAT_VERSION = "1"
REQUIRED_KEYS = (FORMAT, KIND, ARCH, INPUT_SIZE, N_POINTS, HIDDEN_SIZE, STEPS)

# TensorRT engine files (facetrack/engines/engine_cache.py header): the model's ONNX metadata above plus
# these keys, all strings. A cached engine is reused only where all of them still match.
ONNX_SHA256 = "facetrack.onnx_sha256"  # sha256 (hex) of the ONNX file the engine was built from
TRT_VERSION = "facetrack.trt.version"  # tensorrt.__version__ at build time, e.g. "10.13.0.35"
TRT_GPU = "facetrack.trt.gpu"  # GPU name at build time, e.g. "NVIDIA H100 80GB HBM3"
TRT_COMPUTE_CAPABILITY = "facetrack.trt.compute_capability"  # "major.minor", e.g. "9.0"
TRT_PRECISION = "facetrack.trt.precision"  # "fp32" | "fp16"
TRT_PROFILE = "facetrack.trt.profile"  # JSON [min, opt, max] of the face (batch) axis
TRT_CACHE_KEY = "facetrack.trt.cache_key"  # sha256 over the five facts a cached engine depends on
TRT_BUILD = "facetrack.trt.build"  # JSON: how it was built (fp16 mode, workspace, facetrack version)
