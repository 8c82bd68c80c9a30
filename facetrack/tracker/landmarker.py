"""One landmark model (MDM or AAN kind) behind one small interface: the only place that
turns image crops into model feeds and model outputs back into image landmarks.

Crops follow the convention of :mod:`facetrack.tracker.geometry`: a box or a shape defines an
image -> crop similarity ``M``; the model sees ``to_input(warp_crop(gray, M, S))`` and its
landmarks (crop pixels) are mapped back with ``invert_affine(M)``.

- MDM kind: inputs ``image``, ``init_shape`` (crop px) and ``hidden`` (zeros: every fit starts
  a fresh recurrent state). ``fit_box`` starts from the template; ``fit_shape`` starts from
  the given shape mapped into the crop, or from the template in that crop (``init``).
- AAN kind: input ``image`` only; it predicts directly in either crop.

``flip=True`` (test-time mirroring): every crop also goes through the model mirrored, in the same
call, and the two fits are averaged (the mirrored one mapped back, its points renumbered by
:data:`facetrack.tracker.markup.MIRROR_PERMUTATION`). Measured on the 298 held-out validation
faces of the shipped mdm-rt (int8, CPU), NME from the ground truth's box 3.48 -> 3.20 %, from the
default detector's box and the tracker's refit 3.66 -> 3.37 %, for twice the model's work.

Boxes: a model is cropped from the *landmarks' tight box*. A detector's box (or a 300-W box)
is not one: it goes through its source's :class:`facetrack.tracker.geometry.BoxCalibration`
first, so :meth:`Landmarker.fit_box` takes the calibration as a required keyword
(``detector.calibration``, ``box_calibration("300w")``, or :data:`TIGHT_BOX` for a box that
already is a landmark box). A raw detector box fitted as if it were one gives mean NME 0.228
instead of 0.060 (shipped mdm-rt, default detector, the 8 300-W common test faces; issue 14).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, MutableMapping, Sequence

import numpy as np

from facetrack.engines import names
from facetrack.engines.base import METADATA_RANGES
from facetrack.tracker.geometry import (BoxCalibration, apply_affine, crop_from_box, crop_from_shape, invert_affine, template,
                                        to_input, warp_crop)
from facetrack.tracker.markup import mirror_landmarks

log = logging.getLogger(__name__)

Timings = MutableMapping[str, float]

#: The calibration of a box that already is the tight box of the landmarks (a ground truth's,
#: a previous fit's): the identity.
TIGHT_BOX = BoxCalibration()


@dataclass(frozen=True)
class Fit:
    """One fitted face.

    ``landmarks``: ``(68, 2)`` float32, (x, y) image pixels, always finite.
    ``confidence``: the model's confidence in [0, 1] (0 when the output was unusable).
    ``valid``: False when the model gave non-finite output (``landmarks`` are then the
    starting shape, ``confidence`` 0).
    """

    landmarks: np.ndarray
    confidence: float
    valid: bool = field(default=True)


def _add(timings: Timings | None, key: str, t0: float) -> float:
    t1 = time.perf_counter()
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + (t1 - t0) * 1000.0
    return t1


class Landmarker:
    """Wraps one model file; kind (``"mdm"`` or ``"aan"``) and input size from its metadata.

    ``model``: a model file (``.onnx``, ``.pt``, ``.engine``; opened by
    ``facetrack.engines.registry.open_backend``, which checks its metadata, its weights' checksum
    and runs it once on a probe crop, refusing a broken model with one line) or an already open
    :class:`facetrack.engines.base.Backend` (``infer``, ``metadata``, ``close``), taken as it is
    bar the input size's range.
    ``threads``: CPU threads for the runtime (``None``: its default).
    ``flip``: average each fit with the fit of the mirrored crop (see the module docstring).
    """

    def __init__(self, model: str | os.PathLike | Any, backend: str = "auto", threads: int | None = None,
                 flip: bool = False) -> None:
        self.flip = bool(flip)
        if isinstance(model, (str, os.PathLike)):
            from facetrack.engines.registry import open_backend

            kwargs: dict[str, Any] = {} if threads is None else {"threads": threads}
            self.path: Path | None = Path(model)
            self.backend = open_backend(self.path, backend=backend, **kwargs)
        else:
            self.path = None
            self.backend = model
        meta: dict[str, str] = dict(self.backend.metadata)
        self.metadata = meta
        kind = meta.get(names.KIND)
        if kind not in names.MODEL_IO:
            raise ValueError(f"{self._name()}: unknown model kind {kind!r} (metadata '{names.KIND}')")
        self.kind: str = str(kind)
        size = meta.get(names.INPUT_SIZE)
        try:
            self.input_size: int = int(size)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{self._name()}: bad or missing input size (metadata '{names.INPUT_SIZE}': {size!r})") from None
        low, high = METADATA_RANGES[names.INPUT_SIZE]
        if not low <= self.input_size <= high:  # every crop is S x S floats: a hostile S exhausts memory
            raise ValueError(f"{self._name()}: metadata '{names.INPUT_SIZE}' = {self.input_size}, expected {low} to {high}")
        self.arch: str = meta.get(names.ARCH, self.kind)
        self.hidden_size: int = int(meta.get(names.HIDDEN_SIZE, "0") or 0)
        if self.kind == "mdm" and self.hidden_size <= 0:
            raise ValueError(f"{self._name()}: MDM model without '{names.HIDDEN_SIZE}' metadata")
        self.template: np.ndarray = self._mean_shape()

    def _name(self) -> str:
        return str(self.path) if self.path is not None else type(self.backend).__name__

    def _mean_shape(self) -> np.ndarray:
        text = self.metadata.get(names.MEAN_SHAPE)
        if text:
            try:
                ms = np.asarray(json.loads(text), np.float32)
                if ms.shape == (68, 2) and np.isfinite(ms).all():
                    return ms
            except (ValueError, TypeError):
                pass
            log.warning("%s: unusable '%s' metadata; using the geometry template", self._name(), names.MEAN_SHAPE)
        return np.array(template(self.input_size), np.float32)

    def __repr__(self) -> str:
        return (f"Landmarker({self._name()!r}, kind={self.kind!r}, arch={self.arch!r}, input_size={self.input_size}"
                f"{', flip=True' if self.flip else ''})")

    def close(self) -> None:
        """Release the runtime session."""
        self.backend.close()

    # --- public fits -------------------------------------------------------------------
    def fit_box(self, gray: np.ndarray, box: np.ndarray, timings: Timings | None = None, *,
                calibration: BoxCalibration) -> Fit:
        """Fit one face from ``box`` ``(x0, y0, x1, y1)`` image px of the source whose
        ``calibration`` is given (required: ``detector.calibration`` for a detection,
        :data:`TIGHT_BOX` for a box that already is the landmarks' tight box).
        ``gray``: ``uint8`` ``(H, W)``."""
        return self.fit_boxes(gray, [calibration(box)], timings)[0]

    def fit_boxes(self, gray: np.ndarray, boxes: Sequence[np.ndarray], timings: Timings | None = None) -> list[Fit]:
        """Fit faces from *landmark boxes* (calibrated: each an estimate of the landmarks' tight
        box, see :meth:`fit_box`), one model call for all. Empty boxes give invalid fits."""
        s = self.input_size
        mats, keep = [], []
        for i, b in enumerate(boxes):
            try:
                mats.append(crop_from_box(np.asarray(b, np.float64), s))
                keep.append(i)
            except ValueError:
                log.debug("skipping empty box %s", b)
        inits = [self.template] * len(mats)
        fits = self._fit(gray, mats, inits, timings)
        out = [Fit(np.zeros((68, 2), np.float32), 0.0, False) for _ in boxes]
        for i, f in zip(keep, fits):
            out[i] = f
        return out

    def fit_shape(self, gray: np.ndarray, shape: np.ndarray, timings: Timings | None = None, init: str = "shape") -> Fit:
        """Fit one face in the crop defined by ``shape`` (``(68, 2)`` image px).

        ``init`` (MDM only): ``"shape"``: start from ``shape`` itself mapped into the crop (the
        300VW tracking protocol); ``"template"``: start from the template, so the crop's
        similarity alignment is all that is carried over from ``shape``.
        """
        return self.fit_shapes(gray, [shape], timings, init)[0]

    def fit_shapes(self, gray: np.ndarray, shapes: Sequence[np.ndarray], timings: Timings | None = None,
                   init: str = "shape", starts: Sequence[np.ndarray] | None = None) -> list[Fit]:
        """Batched :meth:`fit_shape`: one model call for N faces. ``starts`` (``init="shape"``):
        MDM's start for each face (``(68, 2)`` image px) in place of the shape its crop is aligned
        on (the tracker's shape constraint: the crop on the previous fit, the start projected
        onto the shape model)."""
        if starts is not None and len(starts) != len(shapes):
            raise ValueError(f"{len(starts)} starts for {len(shapes)} shapes")
        if init not in ("shape", "template"):
            raise ValueError(f"init must be 'shape' or 'template', not {init!r}")
        s = self.input_size
        mats, inits, keep = [], [], []
        out = [Fit(np.nan_to_num(np.asarray(sh, np.float32)), 0.0, False) for sh in shapes]
        for i, sh in enumerate(shapes):
            sh = np.asarray(sh, np.float64)
            if sh.shape != (68, 2) or not np.isfinite(sh).all():
                continue
            try:
                m = crop_from_shape(sh, s)
            except ValueError:  # all points coincide
                continue
            if not np.isfinite(m).all():
                continue
            mats.append(m)
            if init == "template":
                inits.append(self.template)
            else:
                inits.append(apply_affine(m, sh if starts is None else np.asarray(starts[i], np.float64)))
            keep.append(i)
        for i, f in zip(keep, self._fit(gray, mats, inits, timings)):
            out[i] = f
        return out

    # --- the one place that builds feeds ------------------------------------------------
    def _fit(self, gray: np.ndarray, mats: list[np.ndarray], inits: list[np.ndarray], timings: Timings | None) -> list[Fit]:
        if not mats:
            return []
        t0 = time.perf_counter()
        s = self.input_size
        n = len(mats)
        copies = 2 if self.flip else 1
        image = np.empty((copies * n, 1, s, s), np.float32)
        for k, m in enumerate(mats):
            image[k] = to_input(warp_crop(gray, m, s))[0]
        if self.flip:  # the mirrored crops follow the plain ones in the same call
            image[n:] = image[:n, :, :, ::-1]
        feed: dict[str, np.ndarray] = {names.IMAGE: image}
        if self.kind == "mdm":
            init = np.stack(inits).astype(np.float32)
            if self.flip:
                init = np.concatenate([init, mirror_landmarks(init, s).astype(np.float32)])
            feed[names.INIT_SHAPE] = np.ascontiguousarray(init)
            feed[names.HIDDEN] = np.zeros((copies * n, self.hidden_size), np.float32)
        t0 = _add(timings, "crop", t0)
        result = self.backend.infer(feed)
        t0 = _add(timings, "infer", t0)
        lm = np.array(result[names.LANDMARKS], np.float64, copy=True).reshape(copies * n, 68, 2)
        conf = np.array(result[names.CONFIDENCE], np.float64, copy=True).reshape(copies * n)
        if self.flip:
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite output is handled below
                lm = 0.5 * (lm[:n] + mirror_landmarks(lm[n:], s))
                conf = 0.5 * (conf[:n] + conf[n:])
        fits = []
        for k, m in enumerate(mats):
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite output is handled below
                pts = apply_affine(invert_affine(m), lm[k])
            c = float(conf[k])
            if np.isfinite(pts).all() and np.isfinite(c) and np.abs(pts).max() < 1e7:
                fits.append(Fit(pts, float(np.clip(c, 0.0, 1.0)), True))
            else:
                start = apply_affine(invert_affine(m), inits[k])
                fits.append(Fit(np.nan_to_num(start, nan=0.0, posinf=0.0, neginf=0.0), 0.0, False))
        _add(timings, "post", t0)
        return fits
