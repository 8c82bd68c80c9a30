"""Cumulative error distribution (CED) plots for landmark errors.

matplotlib is imported inside :func:`plot_ced` only (the ``[plot]`` extra), through its
object-oriented API (``Figure`` + Agg canvas), so plotting from a worker thread neither needs
nor changes pyplot's global backend (the GUI runs Qt).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from facetrack.eval.metrics import THRESHOLD, auc, ced

log = logging.getLogger(__name__)

#: Said on every plot that draws the published curves: the files do not say how their errors
#: were normalised (their figures look like the ground-truth box diagonal, not the outer-eye
#: distance our solid curves use unless their label says otherwise).
REFERENCE_NOTE = ("dashed: published errors (Chrysos et al. 2017); their normalisation is not stated "
                  "in the files (it looks like the box diagonal)")

#: Pipeline names of the 300VW reference error files (Chrysos et al., IJCV 2017 review):
#: file token -> name as the paper writes it.
REFERENCE_NAMES: dict[str, str] = {
    "mdnet": "MDNET", "ccot": "CCOT", "dlssvm": "DLSSVM", "meem": "MEEM", "spot": "SPOT",
    "srdcf": "SRDCF", "staple": "Staple", "cfss": "CFSS", "dlibert": "ERT (dlib)",
}
REFERENCE_CITATION = "Chrysos et al. 2017"
_REF_RE = re.compile(r"^tracking_(?P<tracker>[A-Za-z0-9]+)_(?P<landmarker>[A-Za-z0-9]+)_category(?P<cat>\d+)\.txt$")


def reference_label(filename: str) -> str | None:
    """``tracking_mdnet_cfss_category1.txt`` -> ``"MDNET + CFSS (Chrysos et al. 2017)"``;
    ``None`` for a name not in that pattern."""
    m = _REF_RE.match(Path(filename).name)
    if m is None:
        return None
    t, lm = m.group("tracker"), m.group("landmarker")
    name_t = REFERENCE_NAMES.get(t.lower(), t.upper())
    name_l = REFERENCE_NAMES.get(lm.lower(), lm.upper())
    return f"{name_t} + {name_l} ({REFERENCE_CITATION})"


def load_reference_errors(ref_dir: str | os.PathLike, category: int) -> dict[str, np.ndarray]:
    """Published per-frame errors of one 300VW category: label -> ``(N,)`` float64.

    Files ``tracking_<tracker>_<landmarker>_category<N>.txt`` in ``ref_dir``, one
    normalised error per line. Unreadable files are skipped with a warning naming them.
    """
    out: dict[str, np.ndarray] = {}
    d = Path(ref_dir)
    for f in sorted(d.glob(f"tracking_*_category{int(category)}.txt")):
        label = reference_label(f.name)
        if label is None:
            continue
        try:
            errors = np.loadtxt(f, dtype=np.float64, ndmin=1)
        except ValueError as e:
            log.warning("%s: not a list of numbers, skipped (%s)", f, e)
            continue
        out[label] = errors
    return out


def plot_ced(curves: Mapping[str, np.ndarray], path: str | os.PathLike, title: str = "",
             threshold: float = THRESHOLD, references: Mapping[str, np.ndarray] | None = None,
             dpi: int = 110) -> Path:
    """Write a CED plot (PNG) of per-frame errors, x from 0 to ``threshold``.

    ``curves``: label -> per-frame normalised errors (ours, solid lines; ``inf``/NaN count
    as failures, i.e. never reach the curve). ``references``: label -> errors of published
    pipelines (dashed), with :data:`REFERENCE_NOTE` written under the axes. Each label gets its
    AUC at ``threshold`` appended. Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs = np.linspace(0.0, threshold, 401)
    fig = Figure(figsize=(7.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, errors in (references or {}).items():
        ax.plot(xs, ced(np.nan_to_num(errors, nan=np.inf), xs), linestyle="--", linewidth=1.1,
                label=f"{label}  AUC {auc(errors, threshold):.3f}")
    for label, errors in curves.items():
        ax.plot(xs, ced(np.nan_to_num(errors, nan=np.inf), xs), linewidth=2.2,
                label=f"{label}  AUC {auc(errors, threshold):.3f}")
    ax.set_xlim(0.0, threshold)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("normalised point-to-point error (NME)")
    ax.set_ylabel("fraction of frames")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)
    if references:
        fig.text(0.01, 0.005, REFERENCE_NOTE, fontsize=7, style="italic", va="bottom")
        fig.tight_layout(rect=(0.0, 0.03, 1.0, 1.0))
    else:
        fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out
