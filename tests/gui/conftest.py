"""Fixtures of the GUI tests: a fake tracker (until real weights are everywhere), a small real
300VW clip, and a main window whose threads are always stopped."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6", reason="PySide6 (the [gui] extra) is not installed")

from facetrack.tracker.markup import mean_shape  # noqa: E402


# The tracker's own result types: the GUI must consume exactly what the tracker produces.
from facetrack.tracker.tracker import FaceResult as FakeFace  # noqa: E402
from facetrack.tracker.tracker import FrameResult as FakeResult  # noqa: E402


class FakeTracker:
    """Puts the mean shape in the middle of the frame; records what it was given.

    ``delay`` seconds per frame simulates a slow model (to make the queue drop frames).
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[float] = []
        self.resets = 0

    def process(self, frame: np.ndarray, timestamp: float) -> FakeResult:
        if self.delay:
            time.sleep(self.delay)
        h, w = frame.shape[:2]
        m = mean_shape().astype(np.float32)
        m = (m - m.mean(0)) / (m.max(0) - m.min(0)).max() * (0.4 * min(h, w)) + np.array([w / 2, h / 2], np.float32)
        box = np.concatenate([m.min(0), m.max(0)])
        state = "detected" if not self.calls else "tracking"
        self.calls.append(timestamp)
        return FakeResult(len(self.calls) - 1, timestamp, (FakeFace(0, m, 0.9, True, box, state),), {"landmarks": 1.0}, False, False)

    def reset(self) -> None:
        self.resets += 1


class FakePredictor:
    """An evaluation predictor (``facetrack.eval.vw300.FramePredictor``) returning the ground truth
    shifted by ``shift`` px, so the NME is known."""

    every_frame = True
    uses_ground_truth = True

    def __init__(self, shift: float = 2.0) -> None:
        self.shift = shift

    def start_video(self, video_id: str) -> None:
        pass

    def predict(self, frame_bgr, timestamp, gt):
        return None if gt is None else (np.asarray(gt, np.float32) + self.shift)


@pytest.fixture
def clip_300vw(tmp_path: Path, data_dir: Path) -> Path:
    """A 300VW root with video 401 made from the two real sample frames: ``401/vid.avi`` (MJPG)
    and ``annot/000001.pts``, ``000002.pts`` (frames 731, 732 renumbered)."""
    src = data_dir / "300vw_samples" / "401"
    frames = sorted((src / "imgs").glob("*.jpg"))
    assert len(frames) == 2
    dst = tmp_path / "300vw" / "401"
    (dst / "annot").mkdir(parents=True)
    first = cv2.imread(str(frames[0]))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(dst / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    assert writer.isOpened()
    for i, f in enumerate(frames, start=1):
        writer.write(cv2.imread(str(f)))
        shutil.copy(src / "annot" / f"{f.stem}.pts", dst / "annot" / f"{i:06d}.pts")
    writer.release()
    return dst.parent


@pytest.fixture
def make_window(qtbot):
    """``make_window(tracker=..., predictor=...)`` -> a shown MainWindow, shut down after the test."""
    from facetrack.gui.main_window import MainWindow

    windows = []

    def make(tracker=None, predictor=None, model: str = "mdm-rt"):
        trk = tracker if tracker is not None else FakeTracker()
        factory = (lambda spec: trk) if not callable(trk) or hasattr(trk, "process") else trk
        pf = (lambda mode, model, backend: predictor) if predictor is not None else None
        win = MainWindow(model=model, tracker_factory=factory, predictor_factory=pf)
        qtbot.addWidget(win)
        win.show()
        windows.append(win)
        return win

    yield make
    for w in windows:
        w.shutdown()
