"""The live pipeline: capture thread -> one-slot queue -> inference thread -> window.

:class:`LivePipeline` lives in the GUI thread, owns the two ``QThread``s and their workers and
offers plain methods (``open_file``, ``seek`` ...) that reach the workers through queued signals,
so the window never touches a worker directly.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, Signal

from facetrack.gui.frames import DrawOptions, FramePacket, OneSlotQueue
from facetrack.gui.workers import CaptureWorker, InferenceWorker, TrackerFactory, TrackerSpec, default_tracker_factory

log = logging.getLogger(__name__)


class LivePipeline(QObject):
    """Owns the capture and inference workers. Signals out: see :class:`CaptureWorker` and
    :class:`InferenceWorker` (re-exposed here as attributes ``capture`` and ``inference``)."""

    _open_file = Signal(object)  # the path as Python has it: a str through Qt would lose non-UTF-8 bytes
    _open_camera = Signal(int)
    _play = Signal()
    _pause = Signal()
    _step = Signal(int)
    _seek = Signal(int)
    _configure = Signal(object)
    _options = Signal(object)
    _start_rec = Signal(str, str, float)
    _stop_rec = Signal()

    def __init__(self, factory: TrackerFactory = default_tracker_factory, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.queue: OneSlotQueue[FramePacket] = OneSlotQueue()
        self.capture = CaptureWorker(self.queue)
        self.inference = InferenceWorker(self.queue, factory)
        self.capture_thread = QThread(self)
        self.capture_thread.setObjectName("facetrack-capture")
        self.inference_thread = QThread(self)
        self.inference_thread.setObjectName("facetrack-inference")
        self.capture.moveToThread(self.capture_thread)
        self.inference.moveToThread(self.inference_thread)
        self.capture.frame_queued.connect(self.inference.process_pending)
        self._open_file.connect(self.capture.open_file)
        self._open_camera.connect(self.capture.open_camera)
        self._play.connect(self.capture.play)
        self._pause.connect(self.capture.pause)
        self._step.connect(self.capture.step)
        self._seek.connect(self.capture.seek)
        self._configure.connect(self.inference.configure)
        self._options.connect(self.inference.set_options)
        self._start_rec.connect(self.inference.start_recording)
        self._stop_rec.connect(self.inference.stop_recording)
        self.capture_thread.start()
        self.inference_thread.start()
        self._running = True

    def open_file(self, path: str) -> None:
        self._open_file.emit(path)

    def open_camera(self, index: int) -> None:
        self._open_camera.emit(int(index))

    def play(self) -> None:
        self._play.emit()

    def pause(self) -> None:
        self._pause.emit()

    def step(self, frames: int = 1) -> None:
        self._step.emit(int(frames))

    def seek(self, index: int) -> None:
        self._seek.emit(int(index))

    def configure(self, spec: TrackerSpec) -> None:
        self._configure.emit(spec)

    def set_options(self, options: DrawOptions) -> None:
        self._options.emit(options)

    def start_recording(self, csv_path: str, video_path: str = "", fps: float = 30.0) -> None:
        self._start_rec.emit(str(csv_path), str(video_path), float(fps))

    def stop_recording(self) -> None:
        self._stop_rec.emit()

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def shutdown(self) -> None:
        """Close the source and recording in their own threads, then stop both threads."""
        if not self._running:
            return
        self._running = False
        # Blocking calls: the timer and files belong to the worker threads and must be closed there.
        QMetaObject.invokeMethod(self.capture, "close", Qt.ConnectionType.BlockingQueuedConnection)
        self.queue.close()
        QMetaObject.invokeMethod(self.inference, "shutdown", Qt.ConnectionType.BlockingQueuedConnection)
        for t in (self.capture_thread, self.inference_thread):
            t.quit()
            if not t.wait(5000):
                log.warning("thread %s did not stop in 5 s", t.objectName())
