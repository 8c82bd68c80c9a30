"""The whole evaluation: which videos, one predictor over them, resume, cancel, the report."""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from facetrack.eval.vw300.dataset import CATEGORIES, category_of, reference_dir_from_env
from facetrack.eval.vw300.persistence import load_video, save_video, settings_of
from facetrack.eval.vw300.predictors import MODES, FramePredictor, make_predictor
from facetrack.eval.vw300.report import write_report
from facetrack.eval.vw300.results import ProgressEvent, Report, VideoResult, category_result
from facetrack.eval.vw300.scoring import evaluate_video
from facetrack.io.landmarks import Video300VW, list_300vw
from facetrack.tracker.markup import SUBSETS
from facetrack.eval.metrics import THRESHOLD

log = logging.getLogger(__name__)


def evaluate_300vw(root: str | os.PathLike, categories: Iterable[int] = CATEGORIES, videos: Iterable[str] | None = None,
                   model: str = "mdm", backend: str = "auto", mode: str = "track", points: Iterable[int] = (68, 49),
                   out_dir: str | os.PathLike | None = None, progress: Callable[[ProgressEvent], None] | None = None,
                   cancel: threading.Event | None = None, max_frames: int | None = None, force: bool = False,
                   reference_dir: str | os.PathLike | None | bool = True,
                   predictor: FramePredictor | None = None) -> Report:
    """Evaluate on the 300VW videos under ``root`` of the given test ``categories``.

    ``videos``: restrict to these ids. ``out_dir``: per-video files ``videos/<id>.json``
    written as each video finishes (reused on a rerun with the same settings unless
    ``force``) and, at the end, ``per_video.csv``, ``summary.json``, ``summary.md`` and
    ``ced_category<N>.png``. ``reference_dir``: published error files for the plots
    (``True``: ``$FACETRACK_DATA/300vw_reference_errors`` if it exists; ``None``/``False``: none). ``progress``: called
    with :class:`ProgressEvent` (at most ~10 times a second per video, and at each video's
    end); ``cancel``: set it to stop after the current frame (the partial video is dropped).
    ``predictor``: evaluate this instead of the real model of ``mode`` (tests, custom).
    Safe to run in a worker thread.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    cats = sorted({int(c) for c in categories})
    bad = [c for c in cats if c not in CATEGORIES]
    if bad:
        raise ValueError(f"unknown 300VW test category {bad[0]} (choose from 1, 2, 3)")
    pts = tuple(int(p) for p in points)
    if any(p not in SUBSETS for p in pts):
        raise ValueError(f"unsupported point count in {pts} (choose from 68, 51, 49)")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    root = Path(root)
    present = {v.video_id: v for v in list_300vw(root)}
    wanted = set(videos) if videos is not None else None
    if wanted is not None:
        for vid in sorted(wanted - set(present)):
            log.warning("%s: video %s not found", root, vid)

    todo: list[tuple[Video300VW, int]] = []
    skipped: list[str] = []
    for vid, v in present.items():
        if wanted is not None and vid not in wanted:
            continue
        c = category_of(vid)
        if c in cats:
            todo.append((v, c))
        else:
            skipped.append(vid)
    if skipped:
        log.info("skipped %d videos not in categories %s: %s", len(skipped), cats, " ".join(skipped))
    for c in cats:
        if not any(cc == c for _, cc in todo):
            log.info("category %d: no videos under %s", c, root)

    settings = settings_of(mode, model, backend, max_frames)
    out = Path(out_dir) if out_dir is not None else None
    results: dict[str, VideoResult] = {}
    cancelled = False
    pred = predictor
    for i, (video, cat) in enumerate(todo):
        vid = video.video_id
        vfile = out / "videos" / f"{vid}.json" if out is not None else None
        if vfile is not None and vfile.exists() and not force:
            r = load_video(vfile, settings)
            if r is not None:
                log.info("%s: finished earlier, reusing %s (--force recomputes)", vid, vfile)
                results[vid] = r
                if progress is not None:
                    progress(ProgressEvent(vid, i, len(todo), r.frames, r.frames, resumed=True))
                continue
        if pred is None:
            pred = make_predictor(mode, model, backend)
        last_emit = [0.0]

        def _frame_progress(frame: int, n_frames: int, _vid: str = vid, _i: int = i) -> None:
            now = time.monotonic()
            if progress is not None and (frame >= n_frames or now - last_emit[0] >= 0.1):
                last_emit[0] = now
                progress(ProgressEvent(_vid, _i, len(todo), frame, n_frames))

        r = evaluate_video(video, pred, cat, max_frames, _frame_progress, cancel)
        if r is None:
            cancelled = True
            log.info("evaluation cancelled during video %s", vid)
            break
        results[vid] = r
        if vfile is not None:
            save_video(vfile, r, settings)

    cat_results = {c: category_result(c, [r for r in results.values() if r.category == c], pts) for c in cats}
    report = Report(root, mode, str(model), backend, pts, cat_results, results, tuple(skipped), cancelled, max_frames)
    if out is not None:
        ref = reference_dir_from_env() if reference_dir is True else (Path(reference_dir) if reference_dir else None)
        files = write_report(report, out, ref)
        report = Report(root, mode, str(model), backend, pts, cat_results, results, tuple(skipped), cancelled,
                        max_frames, THRESHOLD, tuple(files))
    return report
