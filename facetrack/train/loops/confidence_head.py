"""The confidence head retrained with hard negatives, then calibrated (issue 30).

    python -m facetrack.train.loops.confidence_head collect --data ../shared/data --out runs/conf30 [--faces N] [--views main,turned]
    python -m facetrack.train.loops.confidence_head fit --out runs/conf30
    python -m facetrack.train.loops.confidence_head patch --out runs/conf30 --weights facetrack/tracker/weights

Why only the head: MDM's confidence is ``sigmoid(w . h + b)`` on its final hidden state ``h``
(512 values, an output of the exported model), and every decision the tracker makes with it
(a new face accepted, a tracked face lost) reads the refit of the *tracking model* (mdm-rt, or
mdm-rt-turned for the turned view). Training ``w, b`` alone leaves every landmark the shipped
models give unchanged, bit for bit, and is a logistic regression on features the runtime
itself computes: the int8 model the CPU runs, through :class:`facetrack.tracker.landmarker.Landmarker`,
in the very calls the tracker makes.

1. ``collect``: for each labelled face (the trainer's split: training faces for the fit, the
   held-out pseudo_v2 groups and human images for calibration and the report), pictures and
   starts of :mod:`facetrack.train.data.hard_cases` (a box near the face; 0.3-0.6x and 1.5-2x
   its size shifted up to 30 %; shifted 15-30 %; the face turned 45-70 degrees further by
   :mod:`facetrack.train.data.profile`; the face cut by the frame edge) and the tracker's paths
   for a new face (the chain's fit then the tracking model's refit from the template in the crop
   aligned on it; the tracking model alone from the box, then its refit) and for a tracked face
   (a crop on a jittered previous fit). Each outcome: ``h`` of both mirror copies, the NME68 of
   what the tracker would report, the refit's shift and the shipped head's confidence. Written
   in chunks of faces (``chunk_NNNN.npz``); a rerun skips the chunks already there (resumable).
2. ``fit``: a class-balanced L2 logistic regression on the training outcomes, then Platt
   scaling on the held-out groups (two parameters, folded into ``w, b``), so that the
   confidence reads as P(NME68 < 8 %). The report: AUC, reliability table by group, false
   accepts / rejects at the tracker's threshold, before and after (held-out groups two-fold
   by group for the Platt step so that no figure is fitted on the faces it reports).
3. ``patch``: writes ``w, b`` into the float32 and int8 ONNX files in place
   (:func:`facetrack.train.export.ship.patch_confidence_head`), nothing else changed but the
   record and checksums.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.eval.metrics import THRESHOLD, nme

log = logging.getLogger(__name__)

#: the data and split of the shipped models (TRAINING.md): the same ``--data`` items and seed
SOURCES = ("images68:4", "pseudo_dlib:1", "pseudo_v2:1")
CHUNK = 50
#: views: (first-stage model, tracking model, how the tracking model refits)
VIEWS = {"main": ("aan", "mdm-rt", "template"), "turned": ("aan-turned", "mdm-rt-turned", "shape")}


class HiddenCapture:
    """Wraps a landmarker's runtime so that each call's ``hidden_out`` is kept (copied)."""

    def __init__(self, landmarker: Any) -> None:
        from facetrack.engines import names

        self.key = names.HIDDEN_OUT
        self.backend = landmarker.backend
        self._infer = self.backend.infer
        self.backend.infer = self
        self.last: np.ndarray | None = None

    def __call__(self, feed: dict[str, np.ndarray]) -> Any:
        r = self._infer(feed)
        self.last = np.array(r[self.key], np.float32, copy=True)
        return r


def _jitter_shape(pts: np.ndarray, rng: np.random.Generator, rot: float = 8.0, scale: float = 0.06, shift: float = 0.06) -> np.ndarray:
    """A previous fit near ``pts``: rotated, scaled and shifted about its centre (tracking)."""
    from facetrack.tracker.geometry import face_size

    c = pts.mean(0)
    a = np.deg2rad(rng.uniform(-rot, rot))
    s = 1.0 + rng.uniform(-scale, scale)
    m = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    d = rng.uniform(-shift, shift, 2) * face_size(pts)
    return ((pts - c) @ m.T + c + d).astype(np.float32)


def _faces(data: Path, seed: int = 0) -> tuple[list[Any], list[Any]]:
    from facetrack.train.data.sources import load_sources, parse_sources

    d = load_sources(parse_sources(SOURCES, data), seed)
    return d.train, d.val


class Collector:
    """The tracker's calls on made pictures, with the hidden states kept (see the module docstring)."""

    def __init__(self, views: tuple[str, ...], profiler: Any, flip: bool = True) -> None:
        from facetrack.tracker.landmarker import Landmarker
        from facetrack.tracker.models import FitChain, resolve_model

        self.views = views
        self.profiler = profiler
        self.lm: dict[str, Any] = {}
        self.chains: dict[str, Any] = {}
        self.caps: dict[str, HiddenCapture] = {}
        for v in views:
            first, track, _ = VIEWS[v]
            for name in (first, track):
                if name not in self.lm:
                    self.lm[name] = Landmarker(resolve_model(name), backend="onnxruntime", threads=1, flip=flip)
            self.chains[v] = FitChain([self.lm[first], self.lm[track]])
            self.caps[v] = HiddenCapture(self.lm[track])

    def _refit(self, view: str, gray: np.ndarray, shapes: list[np.ndarray]) -> tuple[list[Any], np.ndarray]:
        track = self.lm[VIEWS[view][1]]
        fits = track.fit_shapes(gray, shapes, init=VIEWS[view][2])
        h = self.caps[view].last
        n = len(shapes)
        return fits, (h.reshape(2, n, -1).transpose(1, 0, 2) if len(h) == 2 * n else h.reshape(n, 1, -1))

    def picture(self, gray: np.ndarray, gt: np.ndarray, boxes: list[np.ndarray], kinds: list[str],
                tracks: list[np.ndarray], rows: dict[str, list], meta: dict[str, Any]) -> None:
        """Every view's outcomes on one picture, appended to ``rows``."""
        from facetrack.tracker.geometry import eye_scale

        def add(view: str, path: str, kind: str, h: np.ndarray, reported: np.ndarray, fit: Any, shift: float) -> None:
            rows["h"].append(h.astype(np.float16))
            rows["nme"].append(float(nme(reported, gt)))
            # pose-fair: over the eye distance a frontal face of this size has (a turned face's shrinks)
            rows["nme_fair"].append(float(np.linalg.norm(reported - gt, axis=1).mean() / max(eye_scale(gt), 1e-6)))
            rows["conf"].append(float(fit.confidence))
            rows["shift"].append(shift)
            rows["kind"].append(kind)
            rows["path"].append(path)
            rows["view"].append(view)
            for k, v in meta.items():
                rows[k].append(v)

        for view in self.views:
            chain = self.chains[view]
            track = self.lm[VIEWS[view][1]]
            if boxes:
                staged = chain.fit_boxes_staged(gray, boxes)
                firsts = [s[0] for s in staged]
                lasts = [s[-1] for s in staged]
                refits, hs = self._refit(view, gray, [f.landmarks for f in lasts])
                for k, (a0, a, b, h) in enumerate(zip(firsts, lasts, refits, hs)):
                    shift = float(np.linalg.norm(b.landmarks - a.landmarks, axis=1).mean()) / max(eye_scale(a.landmarks), 1e-6)
                    add(view, "chain", kinds[k], h, np.mean([a0.landmarks, a.landmarks, b.landmarks], 0), b, shift)
                own = track.fit_boxes(gray, boxes)
                refits, hs = self._refit(view, gray, [f.landmarks for f in own])
                for k, (a, b, h) in enumerate(zip(own, refits, hs)):
                    shift = float(np.linalg.norm(b.landmarks - a.landmarks, axis=1).mean()) / max(eye_scale(a.landmarks), 1e-6)
                    add(view, "own", kinds[k], h, np.mean([a.landmarks, b.landmarks], 0), b, shift)
            if tracks:
                fits, hs = self._refit(view, gray, tracks)
                for f, h in zip(fits, hs):
                    add(view, "track", "track", h, f.landmarks, f, 0.0)

    def face(self, sample: Any, rng: np.random.Generator, rows: dict[str, list], meta: dict[str, Any]) -> None:
        """The pictures and starts of one labelled face."""
        from facetrack.tracker.geometry import to_gray
        from facetrack.train.data.datasets import read_image
        from facetrack.train.data.hard_cases import cut_by_edge, start_box, visible_box

        gray = to_gray(read_image(sample.image))
        gt = np.asarray(sample.landmarks, np.float32)
        kinds = ["near", "small", "large", "shifted", str(rng.choice(["small", "large"]))]
        self.picture(gray, gt, [start_box(gt, k, rng) for k in kinds], kinds, [_jitter_shape(gt, rng)],
                     rows, {**meta, "picture": "plain"})
        if self.profiler is not None:
            t = self.profiler.random_turn(gray, gt, rng, 45.0, 90.0)
            kinds = ["near", str(rng.choice(["small", "large", "shifted"]))]
            self.picture(t.image, t.landmarks, [start_box(t.landmarks, k, rng) for k in kinds], kinds,
                         [_jitter_shape(t.landmarks, rng)], rows, {**meta, "picture": "turned"})
        if rng.random() < 0.4:
            c = cut_by_edge(gray, gt, rng)
            if min(c.image.shape[:2]) >= 16:
                self.picture(c.image, c.landmarks, [visible_box(c.landmarks, c.image.shape), start_box(c.landmarks, "near", rng)],
                             ["visible", "near"], [], rows, {**meta, "picture": "cut"})


def collect(data: Path, out: Path, views: tuple[str, ...], faces: int, seed: int = 0, deadline: float = 0.0) -> int:
    """Write the outcome chunks (validation faces first, then the training faces in a seeded
    order); returns the number of chunks written by this call."""
    from facetrack.train.data.profile import Profiler

    out.mkdir(parents=True, exist_ok=True)
    train, val = _faces(data, seed)
    order = np.random.default_rng(seed).permutation(len(train))
    todo = [("val", s) for s in val] + [("train", train[i]) for i in order[: faces or len(train)]]
    profiler = Profiler.from_shapes([s.landmarks for s in train])
    col = Collector(views, profiler)
    (out / "collect.json").write_text(json.dumps({"sources": SOURCES, "seed": seed, "views": list(views), "val_faces": len(val),
                                                  "train_faces": len(train), "planned": len(todo), "chunk": CHUNK}, indent=1))
    written = 0
    for c0 in range(0, len(todo), CHUNK):
        path = out / f"chunk_{c0 // CHUNK:04d}.npz"
        if path.exists():
            continue
        if deadline and time.time() > deadline:
            log.warning("deadline reached before chunk %d", c0 // CHUNK)
            break
        t0 = time.perf_counter()
        rows: dict[str, list] = {k: [] for k in ("h", "nme", "nme_fair", "conf", "shift", "kind", "path", "view", "split", "group", "face", "picture")}
        for j, (split, s) in enumerate(todo[c0 : c0 + CHUNK]):
            rng = np.random.default_rng([seed, c0 + j])
            try:
                col.face(s, rng, rows, {"split": split, "group": s.group or s.subset, "face": str(s.image)})
            except (OSError, ValueError) as e:  # an unreadable picture or a degenerate turn: skip the face, say so
                log.warning("%s: skipped (%s)", s.image, e)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, h=np.stack(rows["h"]), **{k: np.array(v) for k, v in rows.items() if k != "h"})
        tmp.rename(path)
        written += 1
        log.info("%s: %d outcomes of %d faces in %.0f s", path.name, len(rows["nme"]), min(CHUNK, len(todo) - c0), time.perf_counter() - t0)
    return written


def load_outcomes(out: Path) -> dict[str, np.ndarray]:
    """Every chunk of ``out`` concatenated."""
    parts = [dict(np.load(p, allow_pickle=False)) for p in sorted(out.glob("chunk_*.npz")) if ".tmp" not in p.name]
    if not parts:
        raise FileNotFoundError(f"{out}: no chunk_*.npz (run collect first)")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def shipped_head(view: str) -> tuple[np.ndarray, float]:
    """The shipped tracking model's head ``(w (512,), b)`` of ``view``, read from its float32 file."""
    import onnx
    from onnx import numpy_helper

    from facetrack.tracker.models import resolve_model

    proto = onnx.load(str(resolve_model(VIEWS[view][1])))
    init = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    return init["confidence_head.weight"].reshape(-1).astype(np.float64), float(init["confidence_head.bias"].reshape(()))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def logistic(x: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: float, l2: float = 1e-3, balanced: bool = True,
             sample_weight: np.ndarray | None = None, iters: int = 300) -> tuple[np.ndarray, float]:
    """An L2 logistic regression ``P(y) = sigmoid(x . w + b)`` from ``(w0, b0)`` (LBFGS; classes
    weighted to equal totals when ``balanced``; ``l2`` on ``w``). ``x`` ``(N, D)``, ``y`` ``(N,)`` bool."""
    import torch

    xt = torch.from_numpy(np.asarray(x, np.float32))
    t = torch.from_numpy(np.asarray(y, np.float32))
    wt = torch.ones_like(t) if sample_weight is None else torch.from_numpy(np.asarray(sample_weight, np.float32))
    if balanced:
        pos = float((wt * t).sum() / wt.sum())
        pos = min(max(pos, 1e-3), 1 - 1e-3)
        wt = wt * torch.where(t > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    wt = wt / wt.mean()
    w = torch.tensor(np.asarray(w0, np.float32), requires_grad=True)
    b = torch.tensor(float(b0), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, t, reduction="none") * wt).mean() + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy().astype(np.float64), float(b.detach())


def platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling: ``(a, c)`` with ``P(y) = sigmoid(a z + c)`` fitted to held-out logits ``z``."""
    w, c = logistic(np.asarray(z, np.float64).reshape(-1, 1), y, np.array([1.0]), 0.0, l2=0.0, balanced=False)
    return float(w[0]), c


def confidences(h: np.ndarray, w: np.ndarray, b: float, flip: bool = True) -> np.ndarray:
    """The runtime's confidence from hidden states ``h`` ``(N, 2, D)`` (plain and mirrored copy):
    the mean of the two sigmoids with ``flip`` (stills), the plain copy's alone without."""
    z = np.asarray(h, np.float64) @ w + b
    return _sigmoid(z).mean(1) if flip and z.shape[1] == 2 else _sigmoid(z[:, 0])


def _two_folds(groups: np.ndarray) -> np.ndarray:
    """Fold 0 / 1 per outcome: the distinct groups alternately, sorted by name."""
    names = sorted(set(groups.tolist()))
    fold = {g: i % 2 for i, g in enumerate(names)}
    return np.array([fold[g] for g in groups])


#: the error each view's head is taught to tell under 8 %: the main view's NME68 (the issue's
#: P(NME68 < 8 %)); the turned view's the pose-fair one (over the eye distance of a frontal face
#: of the same size, geometry.eye_scale), since its faces are turned and their eye distance shrinks
LABELS = {"main": "nme", "turned": "nme_fair"}


def fit(out: Path, view: str = "main", l2: float = 1e-3, accept: float = 0.5, max_refit_shift: float = 0.35,
        label: str | None = None) -> dict[str, Any]:
    """Fit the head of ``view`` on the training outcomes and calibrate it on the held-out ones
    (module docstring, step 2), ``label`` (default :data:`LABELS`) under 8 % being a good fit;
    writes ``head_<view>.npz`` and ``report_<view>.json`` / ``.md`` into ``out`` and returns the report."""
    from facetrack.train.loops.confidence import reliability_table, roc_auc

    d = load_outcomes(out)
    sel = d["view"] == view
    d = {k: v[sel] for k, v in d.items()}
    h = d["h"].astype(np.float32)
    label = label or LABELS[view]
    if label not in d:
        raise ValueError(f"{out}: the outcomes hold no {label!r} (collected by an earlier version); collect again")
    err = d[label]
    good = err < THRESHOLD
    tr, va = d["split"] == "train", d["split"] == "val"
    w0, b0 = shipped_head(view)
    # every mirror copy is a sample of the same outcome
    x_tr = h[tr].reshape(-1, h.shape[-1])
    y_tr = np.repeat(good[tr], h.shape[1])
    w1, b1 = logistic(x_tr, y_tr, w0, b0, l2=l2)
    # Platt on the held-out groups: two folds by group for the report, all of them for the head
    z_va = (h[va].astype(np.float64) @ w1 + b1)
    folds = _two_folds(d["group"][va])
    cal = np.empty(int(va.sum()))
    for k in (0, 1):
        a, c = platt(z_va[folds != k].reshape(-1), np.repeat(good[va][folds != k], h.shape[1]))
        cal[folds == k] = _sigmoid(a * z_va[folds == k] + c).mean(1)
    a, c = platt(z_va.reshape(-1), np.repeat(good[va], h.shape[1]))
    w, b = a * w1, a * b1 + c
    np.savez(out / f"head_{view}.npz", w=w, b=b, w_fit=w1, b_fit=b1, platt=np.array([a, c]), w_shipped=w0, b_shipped=b0)
    before = confidences(h[va], w0, b0)
    rep: dict[str, Any] = {"view": view, "outcomes_train": int(tr.sum()), "outcomes_heldout": int(va.sum()),
                           "heldout_groups": sorted(set(d["group"][va].tolist())), "l2": l2, "platt": [a, c], "accept": accept,
                           "label": label}
    gva, kinds, pics = good[va], d["kind"][va], d["picture"][va]
    shift_ok = d["shift"][va] <= max_refit_shift
    for name, conf in (("shipped", before), ("new", cal)):
        acc = conf >= accept
        gross = err[va] > 0.20
        r = {"auc": roc_auc(conf, gva), "false_accept": float(acc[~gva].mean()), "false_reject": float((~acc[gva]).mean()),
             "confident_gross": int((acc & gross).sum()), "gross": int(gross.sum()),
             "false_accept_with_shift_check": float((acc & shift_ok)[~gva].mean()),
             "false_reject_with_shift_check": float((~(acc & shift_ok))[gva].mean()),
             "confident_gross_with_shift_check": int((acc & shift_ok & gross).sum()),
             "reliability": reliability_table(conf, gva),
             "by_case": {}}
        for key in sorted({f"{p}/{k}" for p, k in zip(pics, kinds)}):
            m = np.array([f"{p}/{k}" == key for p, k in zip(pics, kinds)])
            r["by_case"][key] = {"outcomes": int(m.sum()), "good": float(gva[m].mean()), "mean_confidence": float(conf[m].mean()),
                                 "false_accept": float(acc[m & ~gva].mean()) if (m & ~gva).any() else None,
                                 "false_reject": float((~acc[m & gva]).mean()) if (m & gva).any() else None,
                                 "confident_gross": int((acc & gross & m).sum())}
        r["by_group"] = {}
        for g in rep["heldout_groups"]:
            m = d["group"][va] == g
            r["by_group"][g] = {"outcomes": int(m.sum()), "good": float(gva[m].mean()),
                                "false_accept": float(acc[m & ~gva].mean()) if (m & ~gva).any() else None,
                                "false_reject": float((~acc[m & gva]).mean()) if (m & gva).any() else None}
        rep[name] = r
    (out / f"report_{view}.json").write_text(json.dumps(rep, indent=1), encoding="utf-8")
    (out / f"report_{view}.md").write_text(report_markdown(rep) + "\n", encoding="utf-8")
    return rep


def report_markdown(rep: dict[str, Any]) -> str:
    """The report of :func:`fit` as Markdown tables (shipped head against the new one)."""
    s, n = rep["shipped"], rep["new"]
    f = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    rows = [f"view {rep['view']} (good: {rep.get('label', 'nme')} < 8 %): {rep['outcomes_train']} training outcomes, {rep['outcomes_heldout']} held-out outcomes "
            f"({len(rep['heldout_groups'])} groups; the new head's Platt step fitted on the other half of the groups)", "",
            f"| head | AUC | false accept % | false reject % | confident gross (of {s['gross']} over 20 %) | "
            "with the refit-shift check: false accept % / false reject % / confident gross |", "|---|---|---|---|---|---|"]
    for name, r in (("shipped", s), ("new", n)):
        rows.append(f"| {name} | {r['auc']:.3f} | {f(r['false_accept'])} | {f(r['false_reject'])} | {r['confident_gross']} | "
                    f"{f(r['false_accept_with_shift_check'])} / {f(r['false_reject_with_shift_check'])} / {r['confident_gross_with_shift_check']} |")
    rows += ["", f"Reliability (held-out outcomes; confidence >= {rep['accept']} accepts):", "",
             "| confidence | shipped: fits | share NME68 < 8 % | new: fits | mean confidence | share NME68 < 8 % |", "|---|---|---|---|---|---|"]
    for a, b in zip(s["reliability"], n["reliability"]):
        g = lambda v: "-" if v != v else f"{v:.3f}"  # noqa: E731
        rows.append(f"| {a['lo']:.1f}-{a['hi']:.1f} | {a['fits']} | {g(a['share_good'])} | {b['fits']} | {g(b['mean_confidence'])} | {g(b['share_good'])} |")
    rows += ["", "| case (picture/start) | outcomes | share good | shipped: false accept % / false reject % / confident gross | new: same |",
             "|---|---|---|---|---|"]
    for k, a in s["by_case"].items():
        b = n["by_case"][k]
        rows.append(f"| {k} | {a['outcomes']} | {a['good']:.2f} | {f(a['false_accept'])} / {f(a['false_reject'])} / {a['confident_gross']} | "
                    f"{f(b['false_accept'])} / {f(b['false_reject'])} / {b['confident_gross']} |")
    rows += ["", "| held-out group | outcomes | share good | shipped: false accept % / false reject % | new: same |", "|---|---|---|---|---|"]
    for k, a in s["by_group"].items():
        b = n["by_group"][k]
        rows.append(f"| {k} | {a['outcomes']} | {a['good']:.2f} | {f(a['false_accept'])} / {f(a['false_reject'])} | "
                    f"{f(b['false_accept'])} / {f(b['false_reject'])} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facetrack.train.loops.confidence_head", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--views", default="main", help="comma-separated: main, turned")
    c.add_argument("--faces", type=int, default=0, help="training faces to use (0: all)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--until", type=float, default=0.0, help="stop (between chunks) after this UNIX time")
    f = sub.add_parser("fit")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--views", default="main")
    f.add_argument("--l2", type=float, default=1e-3)
    q = sub.add_parser("patch")
    q.add_argument("--out", type=Path, required=True, help="the run folder (head_<view>.npz, report_<view>.json)")
    q.add_argument("--views", default="main")
    q.add_argument("--weights", type=Path, required=True, help="folder to write the patched model files into (the shipped folder to ship)")
    q.add_argument("--command", default="", help="the commands to record")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="confidence_head: %(message)s")
    if args.cmd == "collect":
        views = tuple(v for v in args.views.split(",") if v)
        bad = [v for v in views if v not in VIEWS]
        if bad:
            print(f"confidence_head: unknown view(s) {bad}; expected {sorted(VIEWS)}", file=sys.stderr)
            return 2
        collect(args.data, args.out, views, args.faces, args.seed, args.until)
    elif args.cmd == "patch":
        from facetrack.train.export.ship import patch_confidence_head
        from facetrack.tracker.models import resolve_model

        for v in args.views.split(","):
            head = np.load(args.out / f"head_{v}.npz")
            rep = json.loads((args.out / f"report_{v}.json").read_text(encoding="utf-8"))
            record = {"how": "logistic regression of the head on the tracking model's hidden state (int8, ONNX Runtime) over hard cases "
                             "(facetrack.train.loops.confidence_head), Platt-scaled on the held-out pseudo_v2 groups: P(NME68 < 8 %)",
                      "commands": args.command, "report": {k: rep[k] for k in ("outcomes_train", "outcomes_heldout", "heldout_groups", "l2", "platt")},
                      "heldout": {name: {k: rep[name][k] for k in ("auc", "false_accept", "false_reject", "confident_gross", "gross")}
                                  for name in ("shipped", "new")},
                      "previous_head": {"w_sha256": __import__("hashlib").sha256(head["w_shipped"].astype(np.float32).tobytes()).hexdigest(),
                                        "b": float(head["b_shipped"])}}
            for f in patch_confidence_head(resolve_model(VIEWS[v][1]), args.weights, head["w"], float(head["b"]), record):
                print(f"{f}: confidence head of view {v} written")
    elif args.cmd == "fit":
        for v in args.views.split(","):
            print(report_markdown(fit(args.out, v, args.l2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
