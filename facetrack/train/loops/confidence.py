"""The confidence as a failure check that sees drift: AUC, reliability table, threshold.

    python -m facetrack.train.loops.confidence CHECKPOINT --data ../shared/data --out runs/track/confidence \\
        [--sequences 48] [--frames 30] [--false-accept 0.05]

MDM's confidence head is trained (first stage and :mod:`facetrack.train.loops.track_train`) to say
whether a fit is under 0.08 NME; the roll-out stage trains it on the model's *own tracking
outcomes*, drifted fits included. This module measures how far it can be trusted, on
**held-out** sequences (the ``pseudo_v2`` groups and human images both training stages hold
out; see :func:`facetrack.train.loops.track_train.load_track_data`):

1. The model tracks each sequence from its previous fit (``--track-init shape``; ``--init template``:
   as the tracker's default, from the template in the crop aligned on it); in a share of
   the sequences a drifted start (:func:`facetrack.train.loops.track_train.drifted`) is injected at a
   random frame, as a drifting tracker would make it. Every frame gives one outcome:
   ``(confidence, NME)``.
2. **Reliability table**: outcomes binned by predicted confidence, against the share of fits under
   0.08 NME in each bin (a calibrated head has the two close).
3. ``--refit OUT.pt``: first refit the head alone (a logistic regression on MDM's final hidden
   state, :func:`refit_head`) to the outcomes of the model's own tracking of *training*
   sequences (:func:`training_outcomes`), and report on the refitted model.
4. **Threshold**: a fit is accepted when its confidence is at least the threshold. False accept =
   share of bad fits (NME >= 0.08) accepted; false reject = share of good fits rejected. The
   threshold chosen is the lowest one whose false-accept rate is at most ``--false-accept``;
   the table gives both rates at a range of thresholds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.eval.metrics import THRESHOLD


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half);
    NaN when either class is empty."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(positive, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    r = np.arange(1, len(s) + 1, dtype=np.float64)
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    for f, c in zip(first, counts):
        if c > 1:
            r[f : f + c] = r[f : f + c].mean()
    ranks[order] = r
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability_table(confidence: np.ndarray, good: np.ndarray, edges: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Rows per confidence bin ``[lo, hi)`` (the last bin includes 1): ``fits``, ``mean_confidence``,
    ``share_good`` (share of fits under the NME threshold; NaN for an empty bin)."""
    c = np.asarray(confidence, np.float64).ravel()
    g = np.asarray(good, bool).ravel()
    edges = np.linspace(0.0, 1.0, 11) if edges is None else np.asarray(edges, np.float64)
    rows = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sel = (c >= lo) & ((c < hi) if k < len(edges) - 2 else (c <= hi))
        n = int(sel.sum())
        rows.append({"lo": float(lo), "hi": float(hi), "fits": n, "mean_confidence": float(c[sel].mean()) if n else float("nan"),
                     "share_good": float(g[sel].mean()) if n else float("nan")})
    return rows


def error_rates(confidence: np.ndarray, good: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(false accept, false reject)`` at ``threshold``: bad fits with confidence >= threshold
    over all bad fits, good fits below it over all good fits (NaN for an empty class)."""
    c = np.asarray(confidence, np.float64).ravel()
    g = np.asarray(good, bool).ravel()
    fa = float((c[~g] >= threshold).mean()) if (~g).any() else float("nan")
    fr = float((c[g] < threshold).mean()) if g.any() else float("nan")
    return fa, fr


def choose_threshold(confidence: np.ndarray, good: np.ndarray, max_false_accept: float = 0.05) -> dict[str, float]:
    """The lowest threshold (among the observed confidences and 1) whose false-accept rate is at
    most ``max_false_accept``, with its false-accept and false-reject rates."""
    c = np.asarray(confidence, np.float64).ravel()
    candidates = np.unique(np.concatenate([c, [1.0 + 1e-9]]))
    for t in candidates:
        fa, fr = error_rates(c, good, float(t))
        if not fa > max_false_accept:
            return {"threshold": float(min(t, 1.0)), "false_accept": fa, "false_reject": fr}
    fa, fr = error_rates(c, good, 1.0 + 1e-9)
    return {"threshold": 1.0, "false_accept": fa, "false_reject": fr}


def collect_outcomes(model: Any, seqs: list, seed: int = 0, p_drift: float = 0.3, init: str = "shape") -> dict[str, np.ndarray]:
    """Track ``seqs`` from the previous fit with drifted starts injected in a share ``p_drift`` of
    them (``init="template"``: as the tracker's default does, MDM from the template in the crop
    aligned on the previous fit; the drifted starts then give drifted crops); returns per-frame
    ``confidence``, ``nme`` and ``drifted`` (frames at or after an injection) as flat arrays
    (frame 0, the box fit, included)."""
    import torch

    from facetrack.train.loops.track_train import roll_out

    rng = np.random.default_rng(seed)
    frames = len(seqs[0])
    drift_at = {i: int(rng.integers(2, frames)) for i in range(len(seqs)) if rng.random() < p_drift}
    model.eval()
    with torch.no_grad():
        r = roll_out(model, seqs, rng, init=init, drift_at=drift_at)
    after = np.zeros_like(r.nme, bool)
    for i, t in drift_at.items():
        after[i, t:] = True
    return {"confidence": r.confidence.ravel(), "nme": r.nme.ravel(), "drifted": after.ravel()}


def training_outcomes(model: Any, seqs: list, seed: int = 0, p_drift: float = 0.3, stills: list | None = None,
                      n_stills: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The confidence head's inputs (MDM's final hidden state) and targets (fit under 0.08 NME)
    from the model's own tracking of ``seqs``: from the previous fit with drifted starts
    injected (``p_drift`` of the sequences) and from the template; plus ``n_stills`` ordinary
    augmented crops of ``stills`` (20 % negatives: never a good fit). Returns ``(H (N, D), y (N,))``."""
    import torch

    from facetrack.train.data.augment import AugmentConfig
    from facetrack.train.loops.track_train import roll_out
    from facetrack.train.loops.trainer import make_batch, normalised_error

    rng = np.random.default_rng(seed)
    frames = len(seqs[0])
    feats, ys = [], []
    model.eval()
    with torch.no_grad():
        for init in ("shape", "template"):
            drift_at = {i: int(rng.integers(2, frames)) for i in range(len(seqs)) if init == "shape" and rng.random() < p_drift}
            r = roll_out(model, seqs, rng, init=init, drift_at=drift_at, keep_hidden=True)
            feats.append(r.hidden.reshape(-1, r.hidden.shape[-1]))
            ys.append((r.nme < THRESHOLD).ravel())
        if stills and n_stills:
            size = model.config.input_size
            for s0 in range(0, n_stills, 64):
                idx = rng.integers(0, len(stills), min(64, n_stills - s0))
                b = make_batch(stills, idx, size, rng, AugmentConfig(), p_template=0.5)
                shapes, _, h = model.forward_steps(torch.from_numpy(b.image), torch.from_numpy(b.init), model.zero_hidden(len(idx)))
                e = normalised_error(shapes[-1], torch.from_numpy(b.gt)).numpy()
                feats.append(h.numpy())
                ys.append(b.is_face & (e < THRESHOLD))
    return np.concatenate(feats), np.concatenate(ys)


def refit_head(model: Any, h: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 200) -> dict[str, float]:
    """Refit MDM's confidence head (``sigmoid(w . h + b)``, a logistic regression on the final
    hidden state) to the outcomes ``(h, y)``, starting from the current head; class-balanced,
    L2 penalty ``l2`` on ``w``. Returns the training log-loss before and after."""
    import torch

    head = model.confidence_head
    x = torch.from_numpy(np.asarray(h, np.float32))
    t = torch.from_numpy(np.asarray(y, np.float32))
    pos = float(t.mean().clamp(1e-3, 1 - 1e-3))
    weight = torch.where(t > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    w = head.weight.detach().clone().reshape(-1).requires_grad_(True)
    b = head.bias.detach().clone().reshape(()).requires_grad_(True)

    def loss_fn() -> torch.Tensor:
        z = x @ w + b
        return (torch.nn.functional.binary_cross_entropy_with_logits(z, t, reduction="none") * weight).mean() + l2 * (w**2).sum()

    with torch.no_grad():
        before = float(loss_fn())
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        head.weight.copy_(w.reshape(head.weight.shape))
        head.bias.copy_(b.reshape(head.bias.shape))
        after = float(loss_fn())
    return {"loss_before": before, "loss_after": after, "fits": int(len(y)), "good": int(np.sum(y))}


def report(outcomes: dict[str, np.ndarray], max_false_accept: float) -> dict[str, Any]:
    """AUC, reliability table, chosen threshold and a table of rates at fixed thresholds."""
    c, e = outcomes["confidence"], outcomes["nme"]
    good = e < THRESHOLD
    return {"fits": int(len(c)), "good": int(good.sum()), "auc": roc_auc(c, good),
            "auc_drifted_frames": roc_auc(c[outcomes["drifted"]], good[outcomes["drifted"]]),
            "reliability": reliability_table(c, good), "chosen": choose_threshold(c, good, max_false_accept),
            "rates": [{"threshold": t, **dict(zip(("false_accept", "false_reject"), error_rates(c, good, t)))}
                      for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]}


def markdown(rep: dict[str, Any]) -> str:
    rows = [f"{rep['fits']} fits ({rep['good']} under {THRESHOLD} NME); AUC {rep['auc']:.3f} "
            f"(frames after an injected drift: {rep['auc_drifted_frames']:.3f})", "",
            "| confidence | fits | mean confidence | share under 0.08 NME |", "|---|---|---|---|"]
    for r in rep["reliability"]:
        rows.append(f"| {r['lo']:.1f}-{r['hi']:.1f} | {r['fits']} | {r['mean_confidence']:.3f} | {r['share_good']:.3f} |")
    rows += ["", "| threshold | false accept | false reject |", "|---|---|---|"]
    for r in rep["rates"]:
        rows.append(f"| {r['threshold']:.1f} | {r['false_accept']:.3f} | {r['false_reject']:.3f} |")
    ch = rep["chosen"]
    rows += ["", f"chosen threshold {ch['threshold']:.3f}: false accept {ch['false_accept']:.3f}, false reject {ch['false_reject']:.3f}"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facetrack.train.loops.confidence", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="an MDM training checkpoint (.pt)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="write confidence.json and confidence.md here")
    p.add_argument("--sequences", type=int, default=48)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--false-accept", type=float, default=0.05, help="the false-accept rate the threshold must keep (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--refit", type=Path, default=None, metavar="OUT.pt",
                   help="first refit the confidence head on the model's own tracking of training sequences, write the checkpoint here, report on it")
    p.add_argument("--refit-sequences", type=int, default=96)
    p.add_argument("--init", choices=("shape", "template"), default="shape",
                   help="how the held-out sequences are tracked: MDM from the previous fit (default) or, as the "
                        "tracker's default, from the template in the crop aligned on it")
    args = p.parse_args(argv)
    import torch

    from facetrack.train.models.checkpoint import CheckpointError, load_checkpoint
    from facetrack.train.loops.track_train import load_track_data, validation_sequences

    torch.set_num_threads(args.threads)
    try:
        model = load_checkpoint(args.checkpoint).build_model()
    except (FileNotFoundError, CheckpointError) as e:
        print(f"confidence: {e}", file=sys.stderr)
        return 2
    d = load_track_data(str(args.data))
    refit: dict[str, Any] = {}
    if args.refit:
        from facetrack.train.models.checkpoint import save_checkpoint
        from facetrack.train.models.registry import config_to_dict
        from facetrack.train.data.sequences import SequenceSource

        src = SequenceSource(d.stills, d.video_faces, d.tracks, 0.5, d.weights)
        rng = np.random.default_rng(7 + args.seed)
        train_seqs = [src.draw(args.frames, rng) for _ in range(args.refit_sequences)]
        h, y = training_outcomes(model, train_seqs, args.seed, stills=d.stills, n_stills=512)
        refit = refit_head(model, h, y)
        ck = load_checkpoint(args.checkpoint)
        meta = {k: v for k, v in ck.meta.items() if k not in ("format", "weights_sha256", "arch")}
        meta["confidence_refit"] = {**refit, "sequences": args.refit_sequences, "frames": args.frames, "from": str(args.checkpoint),
                                    "how": "logistic regression of the head on the final hidden state; outcomes of the model's own tracking "
                                           "(previous-fit starts with drifted starts injected, template starts) of training sequences + 512 augmented crops"}
        save_checkpoint(args.refit, model.state_dict(), config_to_dict(model.config), arch=ck.arch, **meta)
        print(f"{args.refit}: confidence head refitted ({refit})")
    seqs = validation_sequences(d, args.sequences, args.frames, seed=1000 + args.seed)
    rep = report(collect_outcomes(model, seqs, args.seed, init=args.init), args.false_accept)
    rep.update({"init": args.init, "refit": refit, "checkpoint": str(args.refit or args.checkpoint), "sequences": args.sequences, "frames": args.frames,
                "held_out": {"groups": d.record["val_groups"], "images": d.record["val_images"]}})
    md = markdown(rep)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "confidence.json").write_text(json.dumps(rep, indent=1), encoding="utf-8")
        (args.out / "confidence.md").write_text(md + "\n", encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
