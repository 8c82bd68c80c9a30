"""Per-video result files (``videos/<id>.json``): written as each video finishes, reused by a
rerun with the same settings (resume)."""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from facetrack.eval.vw300.results import DIAG_POINTS, STORED_POINTS, VideoResult

log = logging.getLogger(__name__)

#: Bumped when the per-video file's content changes meaning; older files are recomputed.
VIDEO_FILE_VERSION = 1


def num(x: float) -> float | None:
    """``x`` as JSON: ``None`` for a non-finite value."""
    return float(x) if x is not None and math.isfinite(x) else None


def settings_of(mode: str, model: str, backend: str, max_frames: int | None) -> dict:
    """What a per-video file must have been made with to be reused."""
    return {"version": VIDEO_FILE_VERSION, "mode": mode, "model": str(model), "backend": backend, "max_frames": max_frames}


def save_video(path: Path, result: VideoResult, settings: Mapping) -> None:
    """Write ``videos/<id>.json`` atomically: settings, frame lists, per-frame errors
    (``null`` = no prediction), jitter and timings."""
    data = dict(settings)
    data.update({
        "video": result.video_id, "category": result.category,
        "frames": list(result.frame_numbers), "excluded_frames": list(result.excluded_frames),
        "errors": {str(p): [num(v) for v in e] for p, e in result.errors.items()},
        "errors_diag": {str(p): [num(v) for v in e] for p, e in result.errors_diag.items()},
        "jitter": num(result.jitter), "jitter_steps": result.jitter_steps, "flicker": num(result.flicker),
        "predicted_frames": result.predicted_frames, "decoded_frames": result.decoded_frames,
        "tracker_seconds": result.tracker_seconds, "total_seconds": result.total_seconds,
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def load_video(path: Path, settings: Mapping | None = None) -> VideoResult | None:
    """Read a per-video file; ``None`` if it is unreadable or was made with other settings."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if settings is not None and any(d.get(k) != v for k, v in settings.items()):
            log.info("%s: made with other settings, recomputing", path)
            return None
        def arrays(table: Mapping) -> dict[int, np.ndarray]:
            return {int(p): np.array([np.inf if v is None else v for v in e], np.float64) for p, e in table.items()}

        errors, errors_diag = arrays(d["errors"]), arrays(d.get("errors_diag", {}))
        if any(p not in errors for p in STORED_POINTS) or any(p not in errors_diag for p in DIAG_POINTS):
            return None
        return VideoResult(d["video"], int(d["category"]), tuple(d["frames"]), tuple(d["excluded_frames"]), errors,
                           float("nan") if d["jitter"] is None else float(d["jitter"]), int(d["jitter_steps"]),
                           int(d["predicted_frames"]), int(d["decoded_frames"]),
                           float(d["tracker_seconds"]), float(d["total_seconds"]), errors_diag,
                           float("nan") if d.get("flicker") is None else float(d["flicker"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable (%s), recomputing", path, e)
        return None
