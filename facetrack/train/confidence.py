"""The confidence as a failure check: AUC, reliability table and threshold choice.

Placeholder; filled below.
"""
from __future__ import annotations

import numpy as np


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half);
    NaN when either class is empty."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(positive, bool).ravel()
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([neg, pos]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([neg, pos])[order]
    # average ranks over ties
    r = np.arange(1, len(allv) + 1, dtype=np.float64)
    _, first, counts = np.unique(allv, return_index=True, return_counts=True)
    for f, c in zip(first, counts):
        r[f : f + c] = r[f : f + c].mean()
    ranks[order] = r
    return float((ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
