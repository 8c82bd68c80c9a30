"""Writing a :class:`~facetrack.eval.vw300.results.Report`: ``per_video.csv``,
``summary.json``, ``summary.md`` and one CED plot per category."""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from facetrack.eval.vw300.persistence import num as _num
from facetrack.eval.vw300.results import CategoryResult, Report, VideoResult
from facetrack.eval.metrics import GROSS, THRESHOLD

log = logging.getLogger(__name__)


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _video_row(r: VideoResult, points: Sequence[int]) -> dict:
    row = {"category": r.category, "video": r.video_id, "frames": r.frames, "excluded": r.excluded,
           "no_prediction": r.no_prediction}
    for p in points:
        s = r.stats(p)
        row.update({f"nme{p}_mean": _num(s["mean"]), f"nme{p}_median": _num(s["median"]),
                    f"auc{p}": _num(s["auc"]), f"failure{p}": _num(s["failure"]), f"failure_gross{p}": _num(s["failure_gross"]),
                    f"gross_reported{p}": s["gross_reported"]})
    row.update({"jitter": _num(r.jitter), "flicker": _num(r.flicker), "fps_tracker": _num(r.fps_tracker), "fps_end_to_end": _num(r.fps_end_to_end)})
    return row


def _category_dict(c: CategoryResult) -> dict:
    return {
        "present": c.present, "videos": list(c.videos), "frames": c.frames, "excluded": c.excluded,
        "no_prediction": c.no_prediction,
        "nme": {str(p): {k: (_num(v) if isinstance(v, float) else v) for k, v in f.items()} for p, f in c.figures.items()},
        "jitter": _num(c.jitter), "flicker": _num(c.flicker), "fps_tracker": _num(c.fps_tracker), "fps_end_to_end": _num(c.fps_end_to_end),
    }


NOTES = [
    "NME: mean point-to-point error / outer-eye-corner distance (points 36, 45) of the ground truth.",
    "mean (pooled): over all scored frames of the category; mean of videos: mean of per-video means; median: over pooled frames.",
    f"AUC: area under the CED up to {THRESHOLD} divided by {THRESHOLD}; failure: share of frames with NME > {THRESHOLD}; "
    f"failure@{GROSS}: share with NME > {GROSS} (gross failures: a fit on the wrong place or scale).",
    f"reported > {GROSS}: frames whose prediction has NME > {GROSS}; in track mode the tracker reports only faces whose confidence "
    "passed its threshold, so each is a confident failure (a wrong face reported as right).",
    "A frame with no prediction (no face) counts as a failure with error = inf (in AUC and failure rate); "
    "mean and median are over frames with a prediction, their count is in 'no face'.",
    "Frames whose ground truth is unreliable (facetrack/tracker/data/300vw_broken_frames.json) are excluded and counted.",
    "Jitter: mean frame-to-frame displacement of the prediction minus that of the ground truth, per point, "
    "normalised by the outer-eye distance, over consecutive scored frames with predictions (68 points).",
    "Flicker (normalised mean flicker): change of the error between consecutive frames, the root mean square over points of "
    "|e[t] - e[t-1]| (e = prediction - ground truth) over the outer-eye distance, over the same frame pairs as jitter.",
    "fps tracker: predictor calls per second of predictor time (decoding excluded); fps end to end: decoded frames per wall second.",
    "CED plots: published curves (Chrysos et al. 2017, dashed) are drawn as shipped; their normalisation is not stated "
    "in the files and looks like the ground-truth box diagonal, so our 49-point curve normalised that way is drawn too.",
]


def write_report(report: Report, out_dir: str | os.PathLike, reference_dir: Path | None = None) -> list[Path]:
    """``per_video.csv``, ``summary.json``, ``summary.md`` and ``ced_category<N>.png`` (one per
    category with videos; skipped with a warning if matplotlib is missing). Returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pts = report.points
    files: list[Path] = []
    rows = [_video_row(r, pts) for r in sorted(report.videos.values(), key=lambda r: (r.category, r.video_id))]
    header = ["category", "video", "frames", "excluded", "no_prediction"]
    for p in pts:
        header += [f"nme{p}_mean", f"nme{p}_median", f"auc{p}", f"failure{p}", f"failure_gross{p}", f"gross_reported{p}"]
    header += ["jitter", "flicker", "fps_tracker", "fps_end_to_end"]
    with open(out / "per_video.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    files.append(out / "per_video.csv")

    summary = {
        "root": str(report.root), "mode": report.mode, "model": report.model, "backend": report.backend,
        "points": list(pts), "threshold": report.threshold, "max_frames": report.max_frames,
        "cancelled": report.cancelled, "skipped_videos": list(report.skipped), "notes": NOTES,
        "categories": {str(c): _category_dict(cr) for c, cr in report.categories.items()},
        "videos": {r["video"]: r for r in rows},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    files.append(out / "summary.json")
    (out / "summary.md").write_text(summary_markdown(report), encoding="utf-8")
    files.append(out / "summary.md")

    refs_note_logged = False
    for c, cr in report.categories.items():
        if not cr.present:
            continue
        name = f"facetrack {model_label(report.model)} ({report.mode})"
        curves = {f"{name}, {p} pts": np.concatenate([report.videos[v].errors[p] for v in cr.videos]) for p in pts}
        refs = {}
        if reference_dir is not None and Path(reference_dir).is_dir():
            from facetrack.eval.plots import load_reference_errors

            refs = load_reference_errors(reference_dir, c)
            if refs:
                curves[f"{name}, 49 pts, box-diagonal norm."] = np.concatenate(
                    [report.videos[v].errors_diag[49] for v in cr.videos])
        elif not refs_note_logged:
            log.info("no published reference errors found (%s): CED plots show facetrack only", reference_dir)
            refs_note_logged = True
        try:
            from facetrack.eval.plots import plot_ced

            title = f"300VW category {c}: {len(cr.videos)} video(s), {cr.frames} frames"
            files.append(plot_ced(curves, out / f"ced_category{c}.png", title=title, references=refs))
        except ImportError as e:
            log.warning("CED plot skipped: matplotlib is not installed (%s); pip install 'facetrack[plot]'", e)
            break
    return files


def model_label(model: str) -> str:
    """A model value for labels (:attr:`facetrack.tracker.models.ModelChoice.label`): shipped
    names as they are, paths by their file stems (``/x/aan.onnx+/x/mdm-rt.onnx`` -> ``aan+mdm-rt``)."""
    from facetrack.tracker.models import parse_model

    return parse_model(model).label


def summary_markdown(report: Report) -> str:
    """The report as Markdown: one table per point count over the categories, then per video."""
    lines = [f"# 300VW evaluation: {report.model}, mode {report.mode}, backend {report.backend}", ""]
    if report.cancelled:
        lines += ["**Cancelled**: the figures cover the finished videos only.", ""]
    if report.max_frames:
        lines += [f"Only the first {report.max_frames} frames of each video were evaluated.", ""]
    for p in report.points:
        lines += [f"## {p} points", "",
                  "| category | videos | frames | excluded | no face | NME mean (pooled) | NME mean of videos | "
                  f"NME median | AUC@0.08 | failure@0.08 | failure@{GROSS} | reported > {GROSS} | jitter | flicker | fps tracker | fps end to end |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c, cr in report.categories.items():
            if not cr.present:
                lines.append(f"| {c} | 0 | no videos of this category under the root | | | | | | | | | | | | | |")
                continue
            f = cr.figures[p]
            lines.append(f"| {c} | {len(cr.videos)} | {cr.frames} | {cr.excluded} | {cr.no_prediction} | "
                         f"{_fmt(f['mean_pooled'])} | {_fmt(f['mean_of_videos'])} | {_fmt(f['median_pooled'])} | "
                         f"{_fmt(f['auc'])} | {_fmt(f['failure'])} | {_fmt(f['failure_gross'])} | {f['gross_reported']} | "
                         f"{_fmt(cr.jitter)} | {_fmt(cr.flicker)} | "
                         f"{_fmt(cr.fps_tracker, 1)} | {_fmt(cr.fps_end_to_end, 1)} |")
        lines.append("")
    lines += ["## Per video", "",
              "| category | video | frames | excluded | no face | " + " | ".join(
                  f"NME{p} mean | NME{p} median | AUC{p} | failure{p}" for p in report.points) + " | jitter | flicker | fps tracker |",
              "|" + "---|" * (5 + 4 * len(report.points) + 3)]
    for r in sorted(report.videos.values(), key=lambda r: (r.category, r.video_id)):
        cells = []
        for p in report.points:
            s = r.stats(p)
            cells += [_fmt(s["mean"]), _fmt(s["median"]), _fmt(s["auc"]), _fmt(s["failure"])]
        lines.append(f"| {r.category} | {r.video_id} | {r.frames} | {r.excluded} | {r.no_prediction} | "
                     + " | ".join(cells) + f" | {_fmt(r.jitter)} | {_fmt(r.flicker)} | {_fmt(r.fps_tracker, 1)} |")
    if report.skipped:
        lines += ["", f"Skipped (not in the chosen categories): {', '.join(report.skipped)}."]
    lines += ["", "## Definitions", ""] + [f"- {n}" for n in NOTES] + [""]
    return "\n".join(lines)
