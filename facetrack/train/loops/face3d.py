"""Make the head-pose solver's 3-D face (:mod:`facetrack.tracker.pose`) from training labels.

    python -m facetrack.train.loops.face3d --data ../shared/data --out facetrack/tracker/data/face3d.json \\
        [--sources images68:4 pseudo_dlib:1 pseudo_v2:1] [--seed 0] [--eye-distance-mm 63]

The shapes are the training faces of ``--sources`` split as the trainer splits them (same seed:
the held-out human images and ``pseudo_v2`` groups are left out; no 300-W test face is read),
each also mirrored. Their 3-D mean face is factorised as the synthetic head turns make it
(:func:`facetrack.train.data.profile.mean_shape_3d`: rank-3 factorisation and the metric upgrade
of scaled orthography, made symmetric), put into OpenFace's model frame (x right, y down, z away
from the camera: the depth axis flipped) and scaled to millimetres so that its eye centres (the
mean of each eye's six points) lie ``--eye-distance-mm`` apart: 63 mm, the mean adult
interpupillary distance (Dodgson 2004, "Variation and extrema of human interpupillary distance":
about 63 mm, most adults within 50-75 mm). The absolute scale only sets ``pose_T*`` (a face's
distance is its model size over its image size times the focal length); the angles do not
depend on it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.tracker.markup import pupils
from facetrack.tracker.pose import FaceModel

#: the stated average face size: interpupillary distance, mm
EYE_DISTANCE_MM = 63.0


def face_model(shapes: np.ndarray, eye_distance_mm: float = EYE_DISTANCE_MM, record: dict[str, Any] | None = None) -> FaceModel:
    """The :class:`FaceModel` of ``shapes`` ``(N, 68, 2)`` (image px, any poses)."""
    from facetrack.train.data.profile import mean_shape_3d

    x3 = mean_shape_3d(list(shapes))  # x right, y down, z toward the viewer, unit RMS radius
    x3 = x3 * np.array([1.0, 1.0, -1.0])  # OpenFace's frame: z away from the camera
    eyes = pupils(x3)
    x3 = x3 * (eye_distance_mm / float(np.linalg.norm(eyes[1] - eyes[0])))
    x3 -= x3.mean(0)
    return FaceModel(x3, dict(record or {}))


def main(argv: list[str] | None = None) -> int:
    from facetrack.train.loops.shape_model import training_shapes

    p = argparse.ArgumentParser(prog="python -m facetrack.train.loops.face3d", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the shared data folder")
    p.add_argument("--out", type=Path, required=True, help="the model file to write (JSON)")
    p.add_argument("--sources", nargs="+", default=["images68:4", "pseudo_dlib:1", "pseudo_v2:1"])
    p.add_argument("--seed", type=int, default=0, help="the trainer's split seed")
    p.add_argument("--eye-distance-mm", type=float, default=EYE_DISTANCE_MM,
                   help=f"distance between the eye centres, mm (default {EYE_DISTANCE_MM:g}: the mean adult interpupillary distance)")
    args = p.parse_args(argv)
    if not (np.isfinite(args.eye_distance_mm) and args.eye_distance_mm > 0):
        print(f"face3d: --eye-distance-mm {args.eye_distance_mm:g}: must be above 0", file=sys.stderr)
        return 2
    t0 = time.time()
    try:
        shapes = training_shapes(args.data, args.sources, args.seed)
        record: dict[str, Any] = {
            "command": "python -m facetrack.train.loops.face3d " + " ".join(argv if argv is not None else sys.argv[1:]),
            "sources": args.sources, "seed": args.seed, "training_shapes": int(len(shapes) // 2), "mirrored": True,
            "test_images_used": False, "eye_distance_mm": args.eye_distance_mm,
            "method": "facetrack.train.data.profile.mean_shape_3d (rank-3 factorisation, metric upgrade of scaled orthography, "
                      "symmetric), depth axis flipped into OpenFace's frame, scaled to the eye-centre distance"}
        model = face_model(shapes, args.eye_distance_mm, record)
    except (OSError, ValueError) as e:
        print(f"face3d: {e}", file=sys.stderr)
        return 2
    pts = model.points
    model.record["extent_mm"] = {"width": round(float(np.ptp(pts[:, 0])), 1), "height": round(float(np.ptp(pts[:, 1])), 1),
                                 "depth": round(float(np.ptp(pts[:, 2])), 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    e = model.record["extent_mm"]
    print(f"{args.out}: 3-D face from {record['training_shapes']} training shapes (+ mirrored), {e['width']} x {e['height']} x "
          f"{e['depth']} mm (width x height x depth), eye centres {args.eye_distance_mm:g} mm apart ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
