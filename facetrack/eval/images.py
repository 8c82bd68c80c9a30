"""``facetrack eval-images DIR... --box gt|300w|detector``: landmark error on still images.

For users who hold a labelled image set (300-W, Menpo, their own): every image with a 68-point
``.pts`` / ``.ljson`` beside it (any depth) is fitted once with the chosen model and scored
against its labels. Figures: mean NME on 68 and 49 points (outer-eye-corner normalisation),
68 points also by inter-pupil distance and by the ground-truth box diagonal, AUC@0.08, the
failure rates (NME68 > 0.08 and > 0.20; a face the detector misses counts as a failure) and the
*confident failures* (a fit whose confidence is at least the tracker's threshold with NME68 over
0.20: a wrong face reported as right), per group:
the 300-W common (``helen/testset``, ``lfpw/testset``, or the shared data's ``helen_test``,
``lfpw_test``), challenging (``ibug``) and full sets when the folders are a 300-W tree,
else one group per folder given.

Boxes: ``gt`` the ground truth's tight box (no detection error); ``300w`` the 300-W
initialisation boxes (``--boxes DIR``: 4-point ``.pts`` named like the images, searched at any
depth, e.g. the ``bboxes/mdm_bbs`` of the shared data; an image without one counts as missed),
with the ``300w`` calibration;
``detector`` the CLI's detector for still images (``STILL_DETECTOR``), the detection overlapping the ground truth most
(IoU > 0.2), with its calibration. Torch-free: runs the model through
:class:`facetrack.tracker.landmarker.Landmarker` like the tracker.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from facetrack.eval.metrics import GROSS, THRESHOLD, auc, confident_failures, failure_rate, nme
from facetrack.tracker.geometry import box_iou, box_of, to_gray
from facetrack.tracker.presets import DEFAULT_MODEL

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm")
BOX_KINDS = ("gt", "300w", "detector")
#: the confidence at or above which the tracker accepts a fit (TrackerConfig's default): a fit
#: reported at or above it with NME68 over GROSS is a confident failure
ACCEPT = 0.5
#: figure name -> (points, normalisation) of :func:`facetrack.eval.metrics.nme`
FIGURES: dict[str, tuple[int, str]] = {"nme68": (68, "outer"), "nme49": (49, "outer"), "nme68_pupil": (68, "pupil"), "nme68_diag": (68, "diag")}


@dataclass(frozen=True)
class LabelledImage:
    """An image, its 68-point label file and its report group."""

    image: Path
    labels: Path
    group: str


@dataclass
class FaceResult:
    """One scored face: ``errors`` per :data:`FIGURES` name (``None`` when missed) and the
    fit's ``confidence`` (the chain's last model's; ``None`` when missed)."""

    image: str
    group: str
    missed: bool = False
    errors: dict[str, float] = field(default_factory=dict)
    confidence: float | None = None


def group_300w(path: Path) -> str | None:
    """``"common"`` / ``"challenging"`` for a 300-W test image path, else ``None``."""
    parts = [p.lower() for p in path.parts]
    joined = "/".join(parts)
    if "ibug" in parts:
        return "challenging"
    if any(p in ("helen_test", "lfpw_test") for p in parts) or "helen/testset" in joined or "lfpw/testset" in joined:
        return "common"
    return None


def find_images(dirs: Sequence[Path]) -> list[LabelledImage]:
    """Labelled images under ``dirs`` (a file may also be given: an image with its labels beside it)."""
    out: list[LabelledImage] = []
    for d in dirs:
        if not d.exists():
            raise FileNotFoundError(f"{d}: no such file or folder")
        files = [d] if d.is_file() else sorted(d.rglob("*"))
        for f in files:
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            lab = next((f.with_suffix(s) for s in (".pts", ".ljson") if f.with_suffix(s).exists()), None)
            if lab is not None:
                out.append(LabelledImage(f, lab, group_300w(f) or d.name))
    if not out:
        raise FileNotFoundError(f"{', '.join(map(str, dirs))}: no image with a 68-point .pts/.ljson beside it")
    return out


class BoxIndex:
    """4-point box ``.pts`` files under a folder, found by the image's file stem."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: --boxes is not a folder")
        self.root = root
        self.by_stem: dict[str, list[Path]] = {}
        for p in root.rglob("*.pts"):
            self.by_stem.setdefault(p.stem, []).append(p)

    def find(self, image: Path) -> Path | None:
        """The box of ``image``: same file stem, and a test folder for a test image (300-W reuses
        names across its train and test folders: ``lfpw/trainset/image_0010`` is another face
        than ``lfpw/testset/image_0010``)."""
        test = "test" in image.parent.name.lower()  # lfpw_test (the shared data), testset (300-W)
        cands = [c for c in self.by_stem.get(image.stem, []) if ("test" in str(c.parent.relative_to(self.root)).lower()) == test]
        return cands[0] if cands else None


def evaluate(images: Iterable[LabelledImage], model: str = DEFAULT_MODEL, box: str = "gt", boxes: Path | None = None,
             backend: str = "auto", threads: int | None = None, flip: bool = False) -> list[FaceResult]:
    """Fit and score every image (see the module docstring; ``flip``: test-time mirroring, as
    the tracking CLI does on still images)."""
    import cv2

    from facetrack.tracker.detect import box_calibration, still_detector
    from facetrack.tracker.landmarker import TIGHT_BOX
    from facetrack.io.landmarks import read_box_pts, read_landmarks
    from facetrack.tracker.models import close_chain, open_chain

    if box not in BOX_KINDS:
        raise ValueError(f"unknown --box {box!r}; expected one of {', '.join(BOX_KINDS)}")
    if box == "300w" and boxes is None:
        raise ValueError("--box 300w needs --boxes DIR (the 300-W box .pts files)")
    index = BoxIndex(boxes) if box == "300w" and boxes is not None else None
    cal = TIGHT_BOX if box == "gt" else box_calibration("300w") if box == "300w" else None
    det = still_detector() if box == "detector" else None
    chain = open_chain(model, backend=backend, threads=threads, flip=flip)
    out: list[FaceResult] = []
    try:
        for item in images:
            img = cv2.imread(str(item.image), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise OSError(f"{item.image}: cannot read image")
            gray = to_gray(img)
            gt = read_landmarks(item.labels)
            gt_box = box_of(gt)
            res = FaceResult(str(item.image), item.group)
            start, calibration = None, cal
            if box == "gt":
                start = gt_box
            elif box == "300w":
                bp = index.find(item.image) if index else None
                if bp is None:
                    log.warning("%s: no 300-W box named %s.pts under %s: counted as missed", item.image, item.image.stem, boxes)
                else:
                    start = read_box_pts(bp)
            else:
                dets = det.detect(gray)
                best = max(dets, key=lambda d: box_iou(d.box, gt_box), default=None)
                if best is not None and box_iou(best.box, gt_box) > 0.2:
                    start, calibration = best.box, det.calibration
            if start is None:
                res.missed = True
            else:
                fit = chain.fit_box(gray, start, calibration=calibration)
                res.errors = {k: float(nme(fit.landmarks, gt, points=p, norm=n)) for k, (p, n) in FIGURES.items()}
                res.confidence = float(fit.confidence)
            out.append(res)
    finally:
        close_chain(chain)
    if box == "300w" and out and all(r.missed for r in out):
        raise FileNotFoundError(f"{boxes}: no 300-W box for any of the {len(out)} images")
    return out


def summarise(results: Sequence[FaceResult], accept: float = ACCEPT) -> dict[str, dict[str, Any]]:
    """Group -> figures (``faces``, ``missed``, mean of each :data:`FIGURES` over found faces,
    ``median_nme68`` over them, ``auc``, ``failure`` (NME68 > 0.08) and ``failure_gross`` (> 0.20)
    over all faces, misses counting as failures, ``confident_failures``: the faces fitted with a
    confidence of at least ``accept`` and NME68 over 0.20, named in ``confident_faces``); the 300-W ``full`` set
    is added when both 300-W groups are present, and ``all`` when there are several groups."""
    groups: dict[str, list[FaceResult]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    if "common" in groups and "challenging" in groups:
        groups["full"] = groups["common"] + groups["challenging"]
    elif len(groups) > 1:
        groups["all"] = list(results)
    out: dict[str, dict[str, Any]] = {}
    for g, rs in groups.items():
        found = [r for r in rs if not r.missed]
        e68 = np.array([r.errors["nme68"] if not r.missed else np.inf for r in rs])
        fig: dict[str, Any] = {"faces": len(rs), "missed": len(rs) - len(found)}
        for k in FIGURES:
            fig[k] = float(np.mean([r.errors[k] for r in found])) if found else None
        fig["median_nme68"] = float(np.median([r.errors["nme68"] for r in found])) if found else None
        fig["auc"] = auc(e68, THRESHOLD)
        fig["failure"] = float(np.mean(e68 > THRESHOLD))
        fig["failure_gross"] = failure_rate(e68, GROSS)
        conf = np.array([np.nan if r.confidence is None else r.confidence for r in rs])
        bad = confident_failures(np.where(np.isfinite(e68), e68, np.nan), conf, accept)
        fig["confident_failures"] = int(bad.sum())
        fig["confident_faces"] = [r.image for r, b in zip(rs, bad) if b]
        out[g] = fig
    return out


def table(summary: dict[str, dict[str, Any]], title: str) -> str:
    """The summary as a Markdown table (NMEs in %)."""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
    rows = [title, "", "| group | faces | missed | NME68 % | median NME68 % | NME49 % | NME68 pupil % | NME68 diag % | AUC@0.08 | "
            "failure % (> 8 %) | gross % (> 20 %) | confident failures |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g, f in summary.items():
        rows.append(f"| {g} | {f['faces']} | {f['missed']} | {pct(f['nme68'])} | {pct(f['median_nme68'])} | {pct(f['nme49'])} | "
                    f"{pct(f['nme68_pupil'])} | {pct(f['nme68_diag'])} | {f['auc']:.3f} | {100 * f['failure']:.1f} | "
                    f"{100 * f['failure_gross']:.1f} | {f['confident_failures']} |")
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facetrack eval-images``."""
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="folders (or images) with 68-point .pts/.ljson beside the images")
    parser.add_argument("--box", choices=BOX_KINDS, default="gt", help="where each fit starts (default gt: the ground truth's tight box)")
    parser.add_argument("--boxes", type=Path, default=None, help="folder of 300-W box .pts files (for --box 300w)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"aan+mdm, mdm-rt, aan, or a model file (default {DEFAULT_MODEL}, as every other job)")
    parser.add_argument("--backend", default="auto", help="runtime backend (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="runtime threads")
    parser.add_argument("--flip", action="store_true",
                        help="also fit each face's mirror image and average the two, as `facetrack IMAGES` does "
                             "(default: off, the model alone)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary and per-face errors here")
    parser.add_argument("--ced", type=Path, default=None, help="write a CED plot (PNG) of NME68 per group here")


def run(args: argparse.Namespace) -> int:
    """Run ``facetrack eval-images``; returns the exit code."""
    from facetrack.tracker.models import ModelNotFoundError

    if args.ced is not None:
        try:  # before the evaluation, not after it: the figures would be printed, then a traceback
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"facetrack eval-images: --ced {args.ced}: needs matplotlib (pip install 'facetrack[plot]')", file=sys.stderr)
            return 2
    try:
        images = find_images(args.dirs)
        t0 = time.perf_counter()
        results = evaluate(images, args.model, args.box, args.boxes, args.backend, args.threads, args.flip)
    except (FileNotFoundError, ValueError, OSError, ModelNotFoundError) as e:
        print(f"facetrack eval-images: {e}", file=sys.stderr)
        return 2
    summary = summarise(results)
    print(table(summary, f"{args.model}{' (flip)' if args.flip else ''}, {args.box} box, {len(results)} faces ({time.perf_counter() - t0:.1f} s)"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "box": args.box, "accept": ACCEPT, "gross": GROSS, "summary": summary,
                                         "faces": [asdict(r) for r in results]}, indent=1), encoding="utf-8")
    if args.ced:
        from facetrack.eval.plots import plot_ced

        curves = {g: np.array([r.errors["nme68"] if not r.missed else np.inf for r in results if r.group == g])
                  for g in dict.fromkeys(r.group for r in results)}
        plot_ced(curves, args.ced, title=f"{args.model}, {args.box} box (NME68, outer eye corners)")
    return 0


__all__ = ["find_images", "evaluate", "summarise", "table", "group_300w", "FaceResult", "LabelledImage"]
