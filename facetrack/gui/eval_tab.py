"""The 300VW tab: choose root, categories, mode and model; evaluate in a worker thread with
progress and cancel; show the per-category table, the per-video table and the CED plots; click
a video row to play it with ground truth (green) and prediction (blue) drawn together."""
from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import Qt, QThread, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QSlider, QSpinBox,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from facetrack.gui.live_tab import MODELS
from facetrack.gui.overlay import render_comparison
from facetrack.gui.views import FrameView
from facetrack.gui.workers import EvalOutcome, EvalRequest, EvalWorker, PredictorFactory, progress_fraction
from facetrack.eval.vw300.predictors import MODES

log = logging.getLogger(__name__)

CATEGORY_COLUMNS = ("category", "points", "videos", "frames", "NME mean", "NME median", "AUC@0.08", "failure@0.08",
                    "no face")
VIDEO_COLUMNS = ("category", "video", "frames", "NME mean", "NME median", "AUC@0.08", "failure@0.08", "no face")


def _fmt(x: Any, digits: int = 4) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{v:.{digits}f}" if math.isfinite(v) else "n/a"


def category_rows(report: Any) -> list[tuple[str, ...]]:
    """Table rows ``CATEGORY_COLUMNS`` of a ``facetrack.eval.vw300.Report``, one per category and point count."""
    rows = []
    for c, cr in sorted(report.categories.items()):
        for p in report.points:
            if not cr.present:
                rows.append((str(c), str(p), "0", "0", "no videos", "", "", "", ""))
                continue
            f = cr.figures[p]
            rows.append((str(c), str(p), str(len(cr.videos)), str(cr.frames), _fmt(f["mean_pooled"]),
                         _fmt(f["median_pooled"]), _fmt(f["auc"]), _fmt(f["failure"]), str(cr.no_prediction)))
    return rows


def video_rows(report: Any, points: int = 68) -> list[tuple[str, ...]]:
    """Table rows ``VIDEO_COLUMNS``, one per finished video (sorted by category, id)."""
    rows = []
    for r in sorted(report.videos.values(), key=lambda r: (r.category, r.video_id)):
        s = r.stats(points)
        rows.append((str(r.category), r.video_id, str(r.frames), _fmt(s["mean"]), _fmt(s["median"]),
                     _fmt(s["auc"]), _fmt(s["failure"]), str(r.no_prediction)))
    return rows


def _fill(table: QTableWidget, rows: list[tuple[str, ...]]) -> None:
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            item = QTableWidgetItem(text)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            if j >= 2:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(i, j, item)


def _table(columns: tuple[str, ...]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(list(columns))
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return t


class ReviewPlayer(QWidget):
    """Plays one 300VW video with ground truth and prediction drawn on each frame.

    Frames are decoded in the GUI thread (one at a time, on demand): review is not real time.
    """

    message = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.view = FrameView("Click a video row to play it with ground truth and prediction")
        self.play_button = QPushButton("Play")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.label = QLabel("-")
        row = QHBoxLayout()
        row.addWidget(self.play_button)
        row.addWidget(self.slider, 1)
        row.addWidget(self.label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.view, 1)
        lay.addLayout(row)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._next)
        self.play_button.clicked.connect(self._toggle)
        self.slider.valueChanged.connect(self.show_frame)
        self._video: Any = None
        self._annot: Any = None
        self._preds: dict[int, np.ndarray | None] = {}
        self.current = 0  # 1-based frame on screen
        self.video_id = ""

    def load(self, video_dir: Path, predictions: dict[int, np.ndarray | None], fps: float = 30.0) -> bool:
        """Open ``video_dir`` (``vid.avi`` + ``annot/``) and show its first frame."""
        from facetrack.io.landmarks import Video300VW
        from facetrack.io.video import VideoError, VideoFile

        self.stop()
        if self._video is not None:
            self._video.close()
            self._video = None
        annot = Video300VW(Path(video_dir))
        try:
            self._video = VideoFile(annot.video_path)
        except VideoError as e:
            self.message.emit(str(e))
            return False
        self._annot = annot
        self._preds = dict(predictions)
        self.video_id = annot.video_id
        n = self._video.frame_count or max(annot.annotated_frames() or [1])
        self.timer.setInterval(max(1, int(round(1000.0 / (self._video.fps or fps)))))
        self.slider.blockSignals(True)
        self.slider.setRange(1, max(1, n))
        self.slider.setValue(1)
        self.slider.blockSignals(False)
        self.show_frame(1)
        return True

    def show_frame(self, frame: int) -> None:
        """Decode and draw 1-based ``frame``."""
        v = self._video
        if v is None:
            return
        from facetrack.io.landmarks import LandmarkFileError
        from facetrack.io.video import VideoError

        try:
            if frame != self.current + 1 or frame == 1:
                v.seek(frame - 1)
            got = v.read()
        except (VideoError, ValueError) as e:
            self.stop()
            self.message.emit(str(e))
            return
        if got is None:
            self.stop()
            return
        self.current = frame
        gt = None
        if self._annot.annotation_path(frame).exists():
            try:
                gt = self._annot.annotation(frame)
            except LandmarkFileError as e:
                self.message.emit(str(e))
        pred = self._preds.get(frame)
        caption = [f"{self.video_id} frame {frame}"]
        if gt is not None and pred is not None:
            from facetrack.eval.metrics import nme

            caption.append(f"NME {float(nme(pred, gt)):.4f}")
        elif not self._preds:
            caption.append("no stored predictions for this video")
        self.view.set_image(render_comparison(got[2], gt, pred, caption))
        self.label.setText(f"{frame}/{self.slider.maximum()}")
        if self.slider.value() != frame:
            self.slider.blockSignals(True)
            self.slider.setValue(frame)
            self.slider.blockSignals(False)

    def _toggle(self) -> None:
        if self.timer.isActive():
            self.stop()
        elif self._video is not None:
            self.timer.start()
            self.play_button.setText("Pause")

    def stop(self) -> None:
        self.timer.stop()
        self.play_button.setText("Play")

    def _next(self) -> None:
        if self.current >= self.slider.maximum():
            self.stop()
            return
        self.show_frame(self.current + 1)

    def close_video(self) -> None:
        self.stop()
        if self._video is not None:
            self._video.close()
            self._video = None


class EvalTab(QWidget):
    """The 300VW evaluation tab. ``predictor_factory`` (tests) replaces the real model."""

    message = Signal(str)
    evaluation_done = Signal(object)  # EvalOutcome (also when cancelled with finished videos)

    def __init__(self, predictor_factory: PredictorFactory | None = None, backend: str = "auto") -> None:
        super().__init__()
        self.predictor_factory = predictor_factory
        self.backend = backend
        self.outcome: EvalOutcome | None = None
        self._thread: QThread | None = None
        self._worker: EvalWorker | None = None
        self._plots: list[Path] = []

        self.root_edit = QLineEdit()
        self.root_edit.setPlaceholderText("300VW root: <root>/<video>/vid.avi + annot/")
        self.root_browse = QPushButton("Browse...")
        root_row = QHBoxLayout()
        root_row.addWidget(self.root_edit, 1)
        root_row.addWidget(self.root_browse)
        self.cat_boxes = {c: QCheckBox(str(c)) for c in (1, 2, 3)}
        for b in self.cat_boxes.values():
            b.setChecked(True)
        cat_row = QHBoxLayout()
        for b in self.cat_boxes.values():
            cat_row.addWidget(b)
        cat_row.addStretch(1)
        self.videos_edit = QLineEdit()
        self.videos_edit.setPlaceholderText("all videos of the categories (or ids: 401 402 ...)")
        self.mode_box = QComboBox()
        self.mode_box.addItems(MODES)
        # gt-box first: it scores the model on any annotated frames, even the two-frame sample in the
        # shared data, where track and detector find no face (the tooltip says why)
        self.mode_box.setCurrentText("gt-box")
        self.mode_box.setToolTip("gt-box: every scored frame cropped from its ground truth's box (the published "
                                 "per-category protocol); track: the tracker as a user runs it, which needs the "
                                 "video's frames in order (a folder of a few frames shows n/a); detector: the "
                                 "default detector on every scored frame")
        self.model_box = QComboBox()
        self.model_box.addItems(MODELS)
        self.model_box.setEditable(True)  # a path to an exported .onnx also works
        self.max_frames = QSpinBox()
        self.max_frames.setRange(0, 1_000_000)
        self.max_frames.setSpecialValueText("all")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("report folder (default: a temporary folder)")
        self.reuse = QCheckBox("reuse videos finished by an earlier run in this folder (no playback predictions)")
        form = QFormLayout()
        form.addRow("Dataset root", root_row)
        form.addRow("Categories", cat_row)
        form.addRow("Videos", self.videos_edit)
        form.addRow("Mode", self.mode_box)
        form.addRow("Model", self.model_box)
        form.addRow("Max frames / video", self.max_frames)
        form.addRow("Report folder", self.out_edit)
        form.addRow("", self.reuse)

        self.run_button = QPushButton("Run evaluation")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress, 1)

        self.category_table = _table(CATEGORY_COLUMNS)
        self.video_table = _table(VIDEO_COLUMNS)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addLayout(form)
        ll.addLayout(run_row)
        ll.addWidget(self.status)
        ll.addWidget(QLabel("Per category"))
        ll.addWidget(self.category_table, 1)
        ll.addWidget(QLabel("Per video (click to play with ground truth and prediction)"))
        ll.addWidget(self.video_table, 2)

        self.plot_box = QComboBox()
        self.plot_view = FrameView("CED plots appear here after a run")
        self.player = ReviewPlayer()
        right = QSplitter(Qt.Orientation.Vertical)
        plot_w = QWidget()
        pl = QVBoxLayout(plot_w)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.plot_box)
        pl.addWidget(self.plot_view, 1)
        right.addWidget(plot_w)
        right.addWidget(self.player)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(split)

        self.root_browse.clicked.connect(self._browse)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.plot_box.currentIndexChanged.connect(self._show_plot)
        self.video_table.cellClicked.connect(self._video_clicked)
        self.player.message.connect(self.show_message)

    # ------------------------------------------------------------------ run
    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "300VW root")
        if path:
            self.root_edit.setText(path)

    def request(self) -> EvalRequest | None:
        """The request the form describes, or ``None`` (with a message) when it is incomplete."""
        root = self.root_edit.text().strip()
        if not root:
            self.show_message("choose the 300VW root folder first")
            return None
        if not Path(root).is_dir():
            self.show_message(f"{root}: no such folder")
            return None
        cats = tuple(c for c, b in self.cat_boxes.items() if b.isChecked())
        if not cats:
            self.show_message("choose at least one category")
            return None
        vids = tuple(self.videos_edit.text().replace(",", " ").split()) or None
        out = self.out_edit.text().strip() or tempfile.mkdtemp(prefix="facetrack-300vw-")
        return EvalRequest(root, cats, vids, self.model_box.currentText().strip(), self.backend,
                           self.mode_box.currentText(), (68, 49), out, self.max_frames.value() or None,
                           force=not self.reuse.isChecked())

    def start(self) -> bool:
        """Start an evaluation of :meth:`request` in a worker thread; False if not started."""
        if self._thread is not None:
            self.show_message("an evaluation is already running")
            return False
        req = self.request()
        if req is None:
            return False
        self.outcome = None
        self.progress.setValue(0)
        self.category_table.setRowCount(0)
        self.video_table.setRowCount(0)
        self.show_message(f"evaluating {req.model} ({req.mode}) on categories {' '.join(map(str, req.categories))}...",
                          error=False)
        worker = EvalWorker(req, self.predictor_factory)
        thread = QThread(self)
        thread.setObjectName("facetrack-300vw")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self._progress)
        worker.finished.connect(self._finished)
        worker.cancelled.connect(self._cancelled)
        worker.failed.connect(self._failed)
        for sig in (worker.finished, worker.cancelled, worker.failed):
            sig.connect(thread.quit)
        thread.finished.connect(self._thread_done)
        self._worker, self._thread = worker, thread
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        thread.start()
        return True

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self.show_message("cancelling after the current frame...", error=False)

    def running(self) -> bool:
        return self._thread is not None

    def shutdown(self) -> None:
        """Cancel a running evaluation and wait for its thread (window closing)."""
        self.player.close_video()
        if self._worker is not None:
            self._worker.cancel()
        if self._thread is not None:
            self._thread.quit()
            if not self._thread.wait(10000):
                log.warning("300VW evaluation thread did not stop in 10 s")

    def _thread_done(self) -> None:
        self._thread = None
        self._worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _progress(self, event: Any) -> None:
        self.progress.setValue(int(round(progress_fraction(event) * 1000)))
        self.status.setText(f"video {event.video_index + 1}/{event.n_videos} ({event.video_id}): "
                            f"frame {event.frame}/{event.n_frames}" + (" (reused)" if event.resumed else ""))

    def _finished(self, outcome: EvalOutcome) -> None:
        self.progress.setValue(1000)
        self.show_results(outcome)
        rep = outcome.report
        self.show_message(f"done: {len(rep.videos)} video(s), report in {self.out_dir_of(rep)}", error=False)

    def _cancelled(self, outcome: EvalOutcome) -> None:
        self.show_results(outcome)
        self.show_message(f"cancelled: figures cover the {len(outcome.report.videos)} finished video(s)")

    def _failed(self, text: str) -> None:
        self.show_message(text)

    @staticmethod
    def out_dir_of(report: Any) -> str:
        outs = list(getattr(report, "outputs", ()) or ())
        return str(Path(outs[0]).parent) if outs else "(not written)"

    # ------------------------------------------------------------------ results
    def show_results(self, outcome: EvalOutcome) -> None:
        """Fill both tables and the plot list from an :class:`EvalOutcome`."""
        self.outcome = outcome
        rep = outcome.report
        _fill(self.category_table, category_rows(rep))
        _fill(self.video_table, video_rows(rep))
        self._plots = [Path(p) for p in getattr(rep, "outputs", ()) if str(p).endswith(".png")]
        self.plot_box.blockSignals(True)
        self.plot_box.clear()
        self.plot_box.addItems([p.name for p in self._plots])
        self.plot_box.blockSignals(False)
        if self._plots:
            self._show_plot(0)
        self.evaluation_done.emit(outcome)

    def _show_plot(self, index: int) -> None:
        if not 0 <= index < len(self._plots):
            return
        img = cv2.imread(str(self._plots[index]), cv2.IMREAD_COLOR)
        if img is None:
            self.show_message(f"{self._plots[index]}: cannot read the plot image")
            return
        self.plot_view.set_image(img)

    def _video_clicked(self, row: int, _column: int = 0) -> None:
        item = self.video_table.item(row, 1)
        if item is not None and self.outcome is not None:
            self.play_video(item.text())

    def play_video(self, video_id: str) -> bool:
        """Load ``video_id`` of the last evaluation into the review player."""
        if self.outcome is None:
            return False
        rep = self.outcome.report
        return self.player.load(Path(rep.root) / video_id, dict(self.outcome.predictions.get(video_id, {})))

    def show_message(self, text: str, error: bool = True) -> None:
        self.status.setStyleSheet("color: #c03030;" if error else "")
        self.status.setText(text)
        if error:
            log.warning("%s", text)
        self.message.emit(text)
