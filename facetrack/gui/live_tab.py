"""The live tab: source, playback and overlay controls around the frame view.

Only widgets and their wiring to a :class:`~facetrack.gui.pipeline.LivePipeline`; drawing is
:func:`facetrack.gui.overlay.render_tracked`, called on a repaint timer for the newest result.
"""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QSpinBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy,
                               QVBoxLayout, QWidget)

from facetrack.gui.frames import DrawOptions, SourceInfo, TrackedFrame
from facetrack.gui.overlay import render_tracked, state_label
from facetrack.gui.pipeline import LivePipeline
from facetrack.gui.sources import list_cameras
from facetrack.gui.views import FrameView, SeekSlider
from facetrack.gui.workers import TrackerSpec
from facetrack.tracker.models import CHOICES, TURNED

log = logging.getLogger(__name__)

MODELS = CHOICES  # the model choices offered by name: one table, in facetrack.tracker.models
OTHER_MODEL = "other .onnx file..."
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"


class LiveTab(QWidget):
    """Source selection, play / pause / step / seek, overlay toggles, model choice, recording."""

    message = Signal(str)  # for the window's status bar

    def __init__(self, pipeline: LivePipeline, model: str = "aan+mdm", backend: str = "auto") -> None:
        super().__init__()
        self.pipeline = pipeline
        self.backend = backend
        self.latest: TrackedFrame | None = None
        self.shown: TrackedFrame | None = None
        self.info: SourceInfo | None = None
        self.backend_text = ""
        self.frames_shown = 0
        self._error_shown = False
        self._at_end = False

        # source row
        self.camera_box = QComboBox()
        self.camera_refresh = QPushButton("Find cameras")
        self.camera_open = QPushButton("Open camera")
        self.file_open = QPushButton("Open video...")
        src = QHBoxLayout()
        for w in (QLabel("Camera:"), self.camera_box, self.camera_refresh, self.camera_open, self.file_open):
            src.addWidget(w)
        src.addStretch(1)

        # view
        self.view = FrameView("Open a video (or drop one here) or a camera", accept_drops=True)

        # playback row
        self.play_button = QPushButton("Pause")
        self.step_back = QPushButton("<")
        self.step_button = QPushButton(">")
        self.slider = SeekSlider()
        self.slider.setEnabled(False)
        for b in (self.play_button, self.step_back, self.step_button):  # nothing to play until a source opens
            b.setEnabled(False)
        self.position_label = QLabel("-")
        play = QHBoxLayout()
        for w in (self.play_button, self.step_back, self.step_button):
            play.addWidget(w)
        play.addWidget(self.slider, 1)
        play.addWidget(self.position_label)

        # overlay, model, recording row
        self.points = QCheckBox("points")
        self.lines = QCheckBox("lines")
        self.box = QCheckBox("box")
        self.axes = QCheckBox("head axes")
        self.axes.setToolTip("the head's pose as three axes (red: left-right, cyan: down, blue: out of the face), and "
                             "yaw/pitch/roll in degrees in the face's label (the CSV's pose_Ry/pose_Rx/pose_Rz)")
        self.smooth = QCheckBox("smoothing")
        self.smooth.setToolTip("One Euro filter on the landmarks, moved with the face by optical flow: a third of the "
                               "flicker on moving faces and a little less error (on by default, as for video in the CLI)")
        self.smooth.setChecked(True)
        self.flip = QCheckBox("mirror-average")
        self.flip.setToolTip("also fit each face's mirror image and average the two: less error and jitter, "
                             "twice the landmark model's CPU")
        for c in (self.points, self.lines, self.box, self.axes):
            c.setChecked(True)
        self.model_box = QComboBox()
        self.model_box.addItems([*MODELS, OTHER_MODEL])
        self.faces = QSpinBox()
        self.faces.setRange(1, 16)
        self.faces.setValue(1)
        self.faces.setToolTip("faces tracked at once (the CLI's --max-faces); with more than one the search also "
                              "looks for turned faces")
        self.confidence = QDoubleSpinBox()
        self.confidence.setRange(0.0, 1.0)
        self.confidence.setSingleStep(0.05)
        self.confidence.setDecimals(2)
        self.confidence.setValue(TrackerSpec.confidence)
        self.confidence.setToolTip("confidence under which a face is lost or a detection rejected (the CLI's --confidence)")
        self.record_button = QPushButton("Record CSV...")
        self.record_button.setCheckable(True)
        self.record_video = QCheckBox("+ overlay video")
        opts = QHBoxLayout()
        for w in (self.points, self.lines, self.box, self.axes, self.smooth, self.flip, QLabel("Model:"), self.model_box,
                  QLabel("Faces:"), self.faces, QLabel("Confidence:"), self.confidence, self.record_button, self.record_video):
            opts.addWidget(w)
        opts.addStretch(1)

        # status row
        self.stats_label = QLabel("")
        self.state_label = QLabel("")
        self.backend_label = QLabel("")
        self.message_label = QLabel("")
        self.message_label.setStyleSheet("color: #c03030;")
        # a long message is cut at the window's edge (full text in the tooltip and the status
        # bar) instead of widening the window
        self.message_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.message_label.setMinimumWidth(0)
        stat = QHBoxLayout()
        for w in (self.state_label, self.stats_label, self.backend_label):
            stat.addWidget(w)
        stat.addWidget(self.message_label, 1)

        lay = QVBoxLayout(self)
        lay.addLayout(src)
        lay.addWidget(self.view, 1)
        lay.addLayout(play)
        lay.addLayout(opts)
        lay.addLayout(stat)

        self._wire()
        self._custom_model: str | None = None
        self.set_model(model)
        self.repaint_timer = QTimer(self)
        self.repaint_timer.timeout.connect(self.repaint_latest)
        self.repaint_timer.start(33)

    # ------------------------------------------------------------------ wiring
    def _wire(self) -> None:
        p = self.pipeline
        self.camera_refresh.clicked.connect(self.refresh_cameras)
        self.camera_open.clicked.connect(self._open_selected_camera)
        self.file_open.clicked.connect(self._choose_file)
        self.view.file_dropped.connect(self.open_file)
        self.play_button.clicked.connect(self._toggle_play)
        self.step_button.clicked.connect(lambda: p.step(1))
        self.step_back.clicked.connect(lambda: p.step(-1))
        self.slider.sliderReleased.connect(lambda: p.seek(self.slider.value()))
        self.slider.jumped.connect(p.seek)
        self.slider.actionTriggered.connect(self._slider_action)
        for c in (self.points, self.lines, self.box, self.axes):
            c.toggled.connect(self._options_changed)
        self.smooth.toggled.connect(lambda _=False: self._rebuild_tracker())
        self.flip.toggled.connect(lambda _=False: self._rebuild_tracker())
        self.faces.valueChanged.connect(lambda _=0: self._rebuild_tracker())
        self.confidence.valueChanged.connect(lambda _=0.0: self._rebuild_tracker())
        self.model_box.activated.connect(self._model_chosen)
        self.record_button.toggled.connect(self._record_toggled)
        p.capture.opened.connect(self._opened)
        p.capture.playing_changed.connect(lambda on: self.play_button.setText("Pause" if on else "Play"))
        p.capture.ended.connect(self._ended)
        p.capture.error.connect(self.show_message)
        p.inference.error.connect(self.show_message)
        p.inference.result.connect(self._result)
        p.inference.backend_changed.connect(self._backend)
        p.inference.tracker_ready.connect(lambda m: self.show_message(f"model {m} ready", error=False))
        p.inference.recording_changed.connect(self._recording_changed)

    # ------------------------------------------------------------------ actions
    def refresh_cameras(self) -> list[int]:
        cams = list_cameras()
        self.camera_box.clear()
        self.camera_box.addItems([str(i) for i in cams])
        if not cams:
            self.show_message("no camera found")
        return cams

    def _open_selected_camera(self) -> None:
        text = self.camera_box.currentText()
        self.open_camera(int(text) if text.isdigit() else 0)

    def open_camera(self, index: int) -> None:
        self.pipeline.stop_recording()  # a recording belongs to one source
        self.show_message(f"opening camera {index}...", error=False, user=True)
        self.pipeline.open_camera(index)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", "", VIDEO_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> None:
        self.pipeline.stop_recording()  # a recording belongs to one source
        from facetrack.io.video import display_name

        self.show_message(f"opening {display_name(Path(path).name)}...", error=False, user=True)
        self.pipeline.open_file(path)

    def _toggle_play(self) -> None:
        if self.play_button.text() == "Pause":
            self.pipeline.pause()
        else:
            self.pipeline.play()

    def _slider_action(self, action: int) -> None:
        # page / arrow-key moves seek at once; drags seek on release
        if not self.slider.isSliderDown():
            QTimer.singleShot(0, lambda: self.pipeline.seek(self.slider.value()))

    def options(self) -> DrawOptions:
        return DrawOptions(points=self.points.isChecked(), lines=self.lines.isChecked(), box=self.box.isChecked(),
                           axes=self.axes.isChecked())

    def _options_changed(self) -> None:
        self.pipeline.set_options(self.options())
        self.shown = None  # redraw the current frame with the new toggles

    def set_model(self, model: str) -> None:
        """Choose a shipped model by name or any exported ``.onnx`` path, and build the tracker."""
        if model in MODELS:
            self.model_box.setCurrentIndex(MODELS.index(model))
            self._custom_model = None
        else:
            self._custom_model = model
            if self.model_box.findText(model) < 0:
                self.model_box.insertItem(self.model_box.count() - 1, model)
            self.model_box.setCurrentIndex(self.model_box.findText(model))
        self._rebuild_tracker()

    def _model_chosen(self, index: int) -> None:
        if self.model_box.itemText(index) == OTHER_MODEL:
            path, _ = QFileDialog.getOpenFileName(self, "Open an exported model", "", "ONNX models (*.onnx);;All files (*)")
            if path:
                self.set_model(path)
            else:
                self.set_model(self.current_model() if self._custom_model else MODELS[0])
            return
        self.set_model(self.model_box.itemText(index))

    def current_model(self) -> str:
        text = self.model_box.currentText()
        return self._custom_model if text == OTHER_MODEL and self._custom_model else text

    def _rebuild_tracker(self) -> None:
        self.show_message(f"loading model {self.current_model()}...", error=False, user=True)
        self.pipeline.configure(TrackerSpec(model=self.current_model(), backend=self.backend, smooth=self.smooth.isChecked(),
                                            flip=self.flip.isChecked(), turned_model=TURNED, max_faces=self.faces.value(),
                                            confidence=round(self.confidence.value(), 2)))

    def _record_toggled(self, on: bool) -> None:
        if not on:
            self.pipeline.stop_recording()
            return
        csv_path, _ = QFileDialog.getSaveFileName(self, "Save landmarks CSV", "landmarks.csv", "CSV (*.csv)")
        if not csv_path:
            self.record_button.setChecked(False)
            return
        # .mkv: still playable if the app is killed mid-recording (an .mp4 would not be)
        video = str(Path(csv_path).with_suffix(".overlay.mkv")) if self.record_video.isChecked() else ""
        self.start_recording(csv_path, video)

    def start_recording(self, csv_path: str, video_path: str = "") -> None:
        self.record_button.blockSignals(True)
        self.record_button.setChecked(True)
        self.record_button.blockSignals(False)
        self.pipeline.start_recording(csv_path, video_path, self.info.fps if self.info else 30.0)

    # ------------------------------------------------------------------ from the workers
    def _opened(self, info: SourceInfo) -> None:
        self.info = info
        self.slider.setEnabled(info.seekable)
        self.slider.setRange(0, max(0, info.frame_count - 1))
        self.step_back.setEnabled(info.seekable)
        self.play_button.setEnabled(True)
        self.step_button.setEnabled(True)
        self._at_end = False
        kind = f"{info.frame_count} frames" if info.seekable else "live"
        self.show_message(f"{info.name}: {info.width}x{info.height} {info.fps:.2f} fps, {kind}", error=False)

    def _ended(self) -> None:
        self._at_end = True
        self.show_message("end of video", error=False)

    def _position(self, index: int) -> None:
        """Slider and position label to ``index`` (0-based): the frame on screen, so that they
        agree with the frame number drawn in the overlay."""
        if self._at_end and self.info is not None and index < self.info.frame_count - 1:
            self._at_end = False  # seeked back: the end is no longer where we are
            if self.message_label.text() == "end of video":
                self.show_message("", error=False, user=True)
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)
        total = self.info.frame_count if self.info and self.info.seekable else 0
        self.position_label.setText(f"{index + 1}/{total}" if total else str(index + 1))

    def _result(self, frame: TrackedFrame) -> None:
        self.latest = frame

    def _backend(self, label: str) -> None:
        self.backend_text = label
        self.backend_label.setText(f"backend: {label}" if label else "no model loaded")
        self.backend_label.setStyleSheet("" if label else "color: #c03030;")

    def _recording_changed(self, text: str) -> None:
        self.record_button.blockSignals(True)
        self.record_button.setChecked(bool(text))
        self.record_button.setText("Stop recording" if text else "Record CSV...")
        self.record_button.blockSignals(False)
        if text:
            self.show_message(text, error=False)

    def show_message(self, text: str, error: bool = True, user: bool = False) -> None:
        """Show ``text`` in the message label and the status bar. An error stays in the label
        until the user's next action (``user=True``) or the next error: a later information
        message (model ready, source opened) goes to the status bar only."""
        if error or user or not self._error_shown:
            self.message_label.setStyleSheet("color: #c03030;" if error else "color: #408040;")
            self.message_label.setText(text)
            self.message_label.setToolTip(text)
            self._error_shown = error
        if error:
            log.warning("%s", text)
        self.message.emit(text)

    def repaint_latest(self) -> None:
        """Draw the newest result if it is not on screen yet (called by the repaint timer)."""
        frame = self.latest
        if frame is None or frame is self.shown:
            return
        self.shown = frame
        self.view.set_image(render_tracked(frame, self.options(), self.backend_text))
        self._position(frame.index)
        self.frames_shown += 1
        states = ", ".join(state_label(f.state) for f in frame.faces) or ("no face" if frame.model_loaded
                                                                          else "no model loaded")
        self.state_label.setText(f"state: {states}")
        conf = " ".join(f"{f.confidence:.2f}" for f in frame.faces)
        self.stats_label.setText(f"{frame.fps:.1f} fps | latency {frame.latency_ms:.1f} ms | "
                                 f"dropped {frame.dropped} | conf {conf or '-'}")
