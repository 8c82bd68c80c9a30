"""The main window: two tabs (live, 300VW) and a status bar; it only wires things together."""
from __future__ import annotations

import logging

from PySide6.QtWidgets import QMainWindow, QTabWidget

from facetrack.gui.eval_tab import EvalTab
from facetrack.gui.live_tab import LiveTab
from facetrack.gui.pipeline import LivePipeline
from facetrack.gui.workers import PredictorFactory, TrackerFactory, default_tracker_factory

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """``tracker_factory`` / ``predictor_factory`` replace the real models (tests)."""

    def __init__(self, model: str = "aan+mdm", backend: str = "auto",
                 tracker_factory: TrackerFactory = default_tracker_factory,
                 predictor_factory: PredictorFactory | None = None) -> None:
        super().__init__()
        self.setWindowTitle("facetrack")
        self.pipeline = LivePipeline(tracker_factory, parent=self)
        self.live = LiveTab(self.pipeline, model=model, backend=backend)
        self.evaluation = EvalTab(predictor_factory, backend=backend)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.live, "Live")
        self.tabs.addTab(self.evaluation, "300VW")
        self.setCentralWidget(self.tabs)
        self.live.message.connect(self._status)
        self.evaluation.message.connect(self._status)
        self.resize(1200, 760)
        self._closed = False

    def _status(self, text: str) -> None:
        self.statusBar().showMessage(text)

    def shutdown(self) -> None:
        """Stop every worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.live.repaint_timer.stop()
        self.evaluation.shutdown()
        self.pipeline.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self.shutdown()
        super().closeEvent(event)
