"""The stress set of issue 30: the project's own faces made hard, each fitted right or refused.

    python -m facetrack.bench.stress --data ../shared/data --out runs/stress [--faces 40] [--seed 0]
        [--model aan+mdm] [--turned-model auto] [--max-faces 5]

Faces: the ``images68`` training pool (human labels) and a seeded sample of the held-out
``pseudo_v2`` validation groups (teacher labels; the trainer's split), **never the 300-W test
faces**. Each face gives six cases (:mod:`facetrack.train.data.hard_cases`):

- ``enlarged``: the face scaled up to fill 60-95 % of the short side of a 1-3 Mpx frame;
- ``cut``: the picture cropped so that its edge cuts 15-40 % of the face off;
- ``turned``: the face turned 45-90 degrees further by :mod:`facetrack.train.data.profile`
  (capped at its ``MAX_YAW`` of 70 degrees from frontal);
- ``small`` / ``large`` / ``shifted``: the plain picture with the detector's box replaced by a
  start box 0.3-0.6x or 1.5-2x the face's size (shifted up to 30 %), or shifted 15-30 %.

The error is NME68 by the outer-eye distance of the face as labelled; a turned face's by that of
the face before its turn (the same face size: the eye distance itself shrinks with the turn).

The first three go through the product as a user runs it on a photo (the ``image`` preset of
:mod:`facetrack.tracker.presets`: its still-image detector, mirrored fits, ``--max-faces``); the
start-box cases through the same tracker with a detector that returns that one box. The reported
face nearest the truth is scored (NME68). Outcomes: ``right`` (NME68 <= 8 %),
``refused`` (no face reported on it), ``poor`` (8-20 %) and ``wrong`` (over 20 %: a *confident
failure*, since every reported face passed the confidence threshold). The goal is no ``wrong``.
Writes ``stress.json`` (every case) and ``stress.md`` into ``--out`` and prints the table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facetrack.eval.metrics import GROSS, THRESHOLD, normaliser, point_errors
from facetrack.tracker.geometry import box_of, to_gray

CASES = ("enlarged", "cut", "turned", "small", "large", "shifted")
OUTCOMES = ("right", "poor", "wrong", "refused")


class FixedBox:
    """A detector that finds the one box it was given (a landmark box: identity calibration)."""

    name = "fixed-box"
    parts = 1

    def __init__(self) -> None:
        from facetrack.tracker.geometry import BoxCalibration

        self.calibration = BoxCalibration()
        self.box: np.ndarray | None = None

    def detect(self, gray: np.ndarray) -> list[Any]:
        from facetrack.tracker.detect import Detection

        return [] if self.box is None else [Detection(np.asarray(self.box, np.float32), 1.0)]

    def detect_part(self, gray: np.ndarray, part: int) -> list[Any]:
        return self.detect(gray)


def stress_faces(data: Path, faces: int, seed: int = 0) -> list[tuple[str, Any]]:
    """``(source, FaceSample)``: the images68 training pool (all of it) and ``faces`` seeded
    faces of the held-out pseudo_v2 groups (the trainer's split of the shipped models)."""
    from facetrack.train.data.datasets import load_images68, load_pseudo_v2, split_groups

    pool = [("images68", s) for s in load_images68(data, "train")]
    _, val = split_groups(load_pseudo_v2(data), 0.06, 0)
    pick = np.random.default_rng(seed).permutation(len(val))[:faces]
    return pool + [("pseudo_v2_val", val[int(i)]) for i in sorted(pick)]


def outcome(error: float | None) -> str:
    """:data:`OUTCOMES` of one case (``None``: nothing reported on the face)."""
    if error is None:
        return "refused"
    return "right" if error <= THRESHOLD else "poor" if error <= GROSS else "wrong"


def view_of(tracker: Any, face: Any) -> str | None:
    """The name of the view (``main`` / ``turned``) that accepted a reported face (the tracker's
    own record of it), ``None`` when unknown."""
    t = getattr(tracker, "_tracks", {}).get(getattr(face, "face_id", None))
    return None if t is None or face is None else getattr(getattr(t, "view", None), "name", None)


def nearest(faces: Sequence[Any], gt: np.ndarray) -> Any | None:
    """The reported (successful) face whose landmarks' centre is nearest the truth's, if it lies
    on the face (its centre inside the truth's box); ``None`` otherwise."""
    b = box_of(gt)
    c = gt.mean(0)
    on = [f for f in faces if f.success and b[0] <= f.landmarks.mean(0)[0] <= b[2] and b[1] <= f.landmarks.mean(0)[1] <= b[3]]
    return min(on, key=lambda f: float(np.linalg.norm(f.landmarks.mean(0) - c)), default=None)


def make_cases(sample: Any, profiler: Any, rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, float]]:
    """``(case, gray, truth, start box or None, normaliser px)`` for the six :data:`CASES` of one
    face. The normaliser is the outer-eye distance of the face as labelled (for ``turned``: of
    the face before the turn, whose eye distance shrinks with it while its size does not; for
    ``enlarged``: scaled with the face)."""
    from facetrack.train.data.datasets import read_image
    from facetrack.train.data.hard_cases import cut_by_edge, enlarged, start_box

    gray = to_gray(read_image(sample.image))
    gt = np.asarray(sample.landmarks, np.float32)
    d = float(normaliser(gt))
    out: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, float]] = []
    e = enlarged(gray, gt, rng)
    out.append(("enlarged", e.image, e.landmarks, None, float(normaliser(e.landmarks))))
    c = cut_by_edge(gray, gt, rng)
    out.append(("cut", c.image, c.landmarks, None, d))
    t = profiler.random_turn(gray, gt, rng, 45.0, 90.0)
    out.append(("turned", t.image, t.landmarks, None, d))
    for k in ("small", "large", "shifted"):
        out.append((k, gray, gt, start_box(gt, k, rng), d))
    return out


def run(data: Path, faces: int = 40, seed: int = 0, model: str | None = None, turned_model: str | None = None,
        max_faces: int = 5) -> list[dict[str, Any]]:
    """Every case's row: ``face``, ``source``, ``case``, ``error`` (NME68 of the face reported on
    it, ``None`` when none), ``confidence``, ``outcome``, ``reported`` (faces reported in all)."""
    from facetrack.tracker.detect import make_detector
    from facetrack.tracker.presets import preset
    from facetrack.tracker.tracker import Tracker
    from facetrack.train.data.datasets import load_images68, load_pseudo_v2, split_groups
    from facetrack.train.data.profile import Profiler

    _, val_groups = split_groups(load_pseudo_v2(data), 0.06, 0)
    # the 3-D mean face from the shapes of the faces not stressed here (the pseudo_v2 training groups)
    train_v2, _ = split_groups(load_pseudo_v2(data), 0.06, 0)
    profiler = Profiler.from_shapes([s.landmarks for s in train_v2] + [s.landmarks for s in load_images68(data, "train")])
    p = preset("image", max_faces).with_options(model=model, turned_model=turned_model)
    cfg = p.tracker_config()
    fixed = FixedBox()
    rows: list[dict[str, Any]] = []
    with Tracker(cfg, detector=make_detector(p.detector)) as still, Tracker(cfg, detector=fixed) as boxed:
        # the boxed tracker shares nothing with the still one but its model files
        for j, (source, s) in enumerate(stress_faces(data, faces, seed)):
            rng = np.random.default_rng([seed, j])
            for case, gray, gt, box, norm in make_cases(s, profiler, rng):
                tr = still if box is None else boxed
                fixed.box = box
                tr.reset()
                res = tr.process(gray)
                f = nearest(res.faces, gt)
                err = None if f is None else float(point_errors(f.landmarks, gt).mean() / norm)
                rows.append({"face": str(s.image), "source": source, "case": case, "error": err, "view": view_of(tr, f),
                             "confidence": None if f is None else float(f.confidence), "outcome": outcome(err),
                             "reported": int(sum(x.success for x in res.faces)), "frame": list(gray.shape[:2])})
    return rows


def stills(dirs: Sequence[Path], model: str | None = None, turned_model: str | None = None, max_faces: int = 5) -> list[dict[str, Any]]:
    """Labelled still images (``.pts`` / ``.ljson`` beside them) through the ``image`` preset, as
    ``facetrack IMAGE --max-faces N`` runs them; one row per image as :func:`run` gives (``case``:
    the image's folder)."""
    import cv2

    from facetrack.eval.images import find_images
    from facetrack.io.landmarks import read_landmarks
    from facetrack.tracker.detect import make_detector
    from facetrack.tracker.presets import preset
    from facetrack.tracker.tracker import Tracker

    p = preset("image", max_faces).with_options(model=model, turned_model=turned_model)
    rows: list[dict[str, Any]] = []
    with Tracker(p.tracker_config(), detector=make_detector(p.detector)) as tr:
        for item in find_images(dirs):
            img = cv2.imread(str(item.image), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise OSError(f"{item.image}: cannot read image")
            gt = read_landmarks(item.labels)
            tr.reset()
            res = tr.process(img)
            f = nearest(res.faces, gt)
            err = None if f is None else float(nme_of(f.landmarks, gt))
            rows.append({"face": str(item.image), "source": item.image.parent.name, "case": "still", "error": err, "view": view_of(tr, f),
                         "confidence": None if f is None else float(f.confidence), "outcome": outcome(err),
                         "reported": int(sum(x.success for x in res.faces)), "frame": list(img.shape[:2])})
    return rows


def nme_of(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(point_errors(pred, gt).mean() / normaliser(gt))


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Outcome counts per case and source, then the wrong (confidently failed) cases by face."""
    lines = ["| case | source | cases | right | poor (8-20 %) | wrong (> 20 %, confident) | refused | mean NME68 % of the reported |",
             "|---|---|---|---|---|---|---|---|"]
    for case in tuple(dict.fromkeys([*CASES, *(r["case"] for r in rows)])) + ("all",):
        for source in sorted({r["source"] for r in rows}) + ["all"]:
            sel = [r for r in rows if (case == "all" or r["case"] == case) and (source == "all" or r["source"] == source)]
            if not sel or (source == "all" and len({r["source"] for r in rows}) < 2) or (case == "all" and len({r["case"] for r in rows}) < 2):
                continue
            n = {o: sum(r["outcome"] == o for r in sel) for o in OUTCOMES}
            e = [r["error"] for r in sel if r["error"] is not None]
            mean = f"{100 * float(np.mean(e)):.2f}" if e else "-"
            lines.append(f"| {case} | {source} | {len(sel)} | {n['right']} | {n['poor']} | {n['wrong']} | {n['refused']} | {mean} |")
    wrong = [r for r in rows if r["outcome"] == "wrong"]
    lines += ["", f"Confident failures (reported with NME68 > {100 * GROSS:.0f} %): {len(wrong)}"]
    lines += [f"- {Path(r['face']).name} ({r['source']}), {r['case']}: NME68 {100 * r['error']:.1f} % at confidence {r['confidence']:.2f}"
              f" ({r.get('view') or '?'} view)" for r in wrong]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facetrack.bench.stress", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder")
    ap.add_argument("--out", type=Path, default=None, help="write stress.json and stress.md here")
    ap.add_argument("--faces", type=int, default=40, help="faces drawn from the held-out pseudo_v2 groups (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="model choice (default: the image preset's)")
    ap.add_argument("--turned-model", default=None, help="turned view's model choice (default: the preset's; 'none' for no view)")
    ap.add_argument("--max-faces", type=int, default=5, help="faces reported per picture (default 5, as a user looking for every face)")
    ap.add_argument("--stills", type=Path, nargs="+", default=None, metavar="DIR",
                    help="instead: labelled still images in these folders through the image preset (e.g. held-out photos)")
    args = ap.parse_args(argv)
    if not (args.data / "manifest_images68.csv").exists():
        print(f"stress: {args.data}: not the shared data folder (no manifest_images68.csv)", file=sys.stderr)
        return 2
    turned = args.turned_model
    if turned == "none":
        turned = ""
    t0 = time.perf_counter()
    try:
        rows = (stills(args.stills, args.model, turned, args.max_faces) if args.stills
                else run(args.data, args.faces, args.seed, args.model, turned, args.max_faces))
    except (FileNotFoundError, OSError, ValueError) as e:
        print(f"stress: {e}", file=sys.stderr)
        return 2
    md = (f"{len(rows)} cases of {len({r['face'] for r in rows})} faces ({time.perf_counter() - t0:.0f} s); "
          f"model {args.model or 'preset'}, turned {args.turned_model or 'preset'}, --max-faces {args.max_faces}\n\n{table(rows)}")
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "stress.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cases": rows}, indent=1),
                                             encoding="utf-8")
        (args.out / "stress.md").write_text(md + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
