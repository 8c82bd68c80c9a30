"""The window, offscreen: real video in, landmarks drawn, pause / step / seek, errors as
messages, recording, drops counted, and the 300VW tab on a small real clip.

The live tests use ``FakeTracker`` (``conftest.py``) for speed and because they test the
window, not the model; ``test_real_tracker_on_real_video`` runs the shipped model.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.gui.frames import TrackedFrame
from tests.gui.conftest import FakePredictor, FakeTracker
from facetrack.io.landmarks import Video300VW
from facetrack.eval.metrics import nme
from facetrack.tracker.models import available

pytestmark = pytest.mark.gui

VIDEO = "videos_unlabelled/short_hamilton_clip.mp4"


def _open(qtbot, win, path: Path, frames: int = 3) -> None:
    win.live.open_file(str(path))
    qtbot.waitUntil(lambda: win.live.frames_shown >= frames, timeout=10000)


def test_opening_a_real_video_shows_frames_with_landmarks(qtbot, make_window, data_dir):
    trk = FakeTracker()
    win = make_window(trk)
    _open(qtbot, win, data_dir / VIDEO, frames=5)
    shown: TrackedFrame = win.live.shown
    assert shown.image.shape == (360, 640, 3)
    assert len(shown.faces) == 1 and shown.faces[0].landmarks.shape == (68, 2)
    assert win.live.info.frame_count == 275 and win.live.slider.isEnabled()
    # the view holds the drawn frame, not the raw one
    img = win.live.view.image()
    assert img is not None and (img.width(), img.height()) == (640, 360)
    # frames reach the tracker in order with video timestamps (index / fps)
    assert trk.calls[:3] == pytest.approx([0.0, 1 / 29.97, 2 / 29.97], abs=1e-3)
    assert "tracking" in win.live.state_label.text() and "fps" in win.live.stats_label.text()


def test_pause_step_and_seek_change_the_frame_index_as_expected(qtbot, make_window, data_dir):
    trk = FakeTracker()
    win = make_window(trk)
    _open(qtbot, win, data_dir / VIDEO)
    win.pipeline.pause()
    qtbot.waitUntil(lambda: win.live.play_button.text() == "Play", timeout=10000)
    qtbot.wait(500)  # a frame in flight may still arrive
    index = win.live.latest.index
    qtbot.wait(500)
    assert win.live.latest.index == index  # paused: nothing new

    win.live.step_button.click()
    qtbot.waitUntil(lambda: win.live.latest.index == index + 1, timeout=10000)

    resets = trk.resets
    win.pipeline.seek(200)
    qtbot.waitUntil(lambda: win.live.latest.index == 200, timeout=10000)
    assert trk.resets == resets + 1  # a seek is a cut: the tracker starts over
    qtbot.waitUntil(lambda: win.live.shown is not None and win.live.shown.index == 200, timeout=10000)
    assert win.live.slider.value() == 200 and win.live.position_label.text() == "201/275"

    win.live.step_back.click()
    qtbot.waitUntil(lambda: win.live.latest.index == 199, timeout=10000)
    assert win.live.latest.timestamp == pytest.approx(199 / 29.97, abs=1e-3)

    win.live.play_button.click()  # play again from 199
    qtbot.waitUntil(lambda: win.live.latest.index > 201, timeout=10000)


def test_missing_camera_gives_a_message_not_a_crash(qtbot, make_window):
    win = make_window()
    win.live.open_camera(97)
    qtbot.waitUntil(lambda: "camera 97" in win.live.message_label.text(), timeout=10000)
    assert "camera 97" in win.statusBar().currentMessage()
    assert win.isVisible()


def test_unreadable_file_gives_a_message_naming_it(qtbot, make_window, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    win = make_window()
    win.live.open_file(str(bad))
    qtbot.waitUntil(lambda: "broken.mp4: not a video" in win.live.message_label.text(), timeout=20000)
    qtbot.wait(300)  # later information (model ready) must not hide the error
    assert "broken.mp4: not a video" in win.live.message_label.text()
    win.live.open_file(str(tmp_path / "missing.mp4"))
    qtbot.waitUntil(lambda: "missing.mp4: no such file" in win.live.message_label.text(), timeout=20000)


def test_missing_model_gives_a_message(qtbot, make_window, tmp_path):
    from facetrack.gui.workers import default_tracker_factory

    win = make_window(default_tracker_factory)
    missing = str(tmp_path / "nope.onnx")
    win.live.set_model(missing)
    qtbot.waitUntil(lambda: "nope.onnx: no such model file" in win.live.message_label.text(), timeout=20000)
    assert win.pipeline.inference.tracker is None
    assert win.live.backend_label.text() == "no model loaded"


def test_slow_tracker_on_a_live_source_drops_and_counts_then_unplug_is_a_message(qtbot, make_window, data_dir,
                                                                                   monkeypatch):
    """A camera feeds 30 fps whatever the model does; with a 150 ms model the one-slot queue must
    drop stale frames, count them, and the window must show the count. Then the 'camera' stops
    delivering (unplugged) and the window says so."""
    import facetrack.gui.workers
    from facetrack.gui.frames import SourceInfo
    from facetrack.gui.sources import SourceError
    from facetrack.io.video import VideoFile

    class RecordedCamera:
        def __init__(self, index: int) -> None:
            self.video = VideoFile(data_dir / VIDEO)
            self.info = SourceInfo(f"camera {index}", 640, 360, 30.0, 0)
            self.position = 0

        def read(self):
            got = self.video.read()
            if got is None or got[0] >= 60:
                raise SourceError("camera 0: stopped delivering frames (unplugged?)")
            self.position = got[0] + 1
            return got

        def close(self):
            self.video.close()

    monkeypatch.setattr(facetrack.gui.workers, "CameraSource", RecordedCamera)
    win = make_window(FakeTracker(delay=0.15))
    win.live.open_camera(0)
    qtbot.waitUntil(lambda: "unplugged" in win.live.message_label.text(), timeout=15000)
    q, inference = win.pipeline.queue, win.pipeline.inference
    # every frame is either processed or dropped (the last ones may still be in flight)
    qtbot.waitUntil(lambda: q.dropped + inference.processed == 60, timeout=10000)
    assert q.put_count == 60
    assert q.dropped > 10  # 60 frames in ~2 s against <7 processed per second
    assert win.live.latest.dropped > 0
    qtbot.waitUntil(lambda: f"dropped {win.live.latest.dropped} " in win.live.stats_label.text(), timeout=10000)


def test_recording_writes_the_cli_csv_and_the_overlay_video(qtbot, make_window, data_dir, tmp_path):
    from facetrack.io.output import read_landmarks_csv

    win = make_window(FakeTracker())
    _open(qtbot, win, data_dir / VIDEO, frames=5)
    win.pipeline.pause()
    qtbot.wait(200)
    assert win.live.latest.index > 0
    win.pipeline.seek(0)
    qtbot.waitUntil(lambda: win.live.latest.index == 0, timeout=10000)
    csv_path, video_path = tmp_path / "out.csv", tmp_path / "out.avi"
    win.live.start_recording(str(csv_path), str(video_path))
    qtbot.waitUntil(lambda: win.live.record_button.text() == "Stop recording", timeout=10000)
    for i in range(1, 6):
        win.live.step_button.click()
        qtbot.waitUntil(lambda i=i: win.live.latest.index == i, timeout=10000)
    win.live.record_button.click()  # stop
    qtbot.waitUntil(lambda: win.live.record_button.text() == "Record CSV...", timeout=10000)
    table = read_landmarks_csv(csv_path)
    assert list(table.frame) == [2, 3, 4, 5, 6]  # 1-based, as the CLI writes
    assert table.success.all()
    np.testing.assert_allclose(table.landmarks[-1], win.live.latest.faces[0].landmarks, atol=1e-3)
    cap = cv2.VideoCapture(str(video_path))
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert n == 5 and fps == pytest.approx(29.97, abs=0.01)  # the source's rate


def test_300vw_tab_evaluates_a_small_real_clip_and_fills_the_table(qtbot, make_window, clip_300vw):
    shift = 2.0
    win = make_window(predictor=FakePredictor(shift))
    ev = win.evaluation
    ev.root_edit.setText(str(clip_300vw))
    for c, box in ev.cat_boxes.items():
        box.setChecked(c == 1)  # 401 is a category-1 video
    assert ev.start()
    qtbot.waitUntil(lambda: not ev.running(), timeout=30000)
    assert ev.outcome is not None, ev.status.text()
    video = Video300VW(clip_300vw / "401")
    expected = np.mean([float(nme(video.annotation(f) + shift, video.annotation(f))) for f in (1, 2)])
    rows = {(ev.category_table.item(r, 0).text(), ev.category_table.item(r, 1).text()): r
            for r in range(ev.category_table.rowCount())}
    r = rows[("1", "68")]
    assert ev.category_table.item(r, 3).text() == "2"  # frames
    assert float(ev.category_table.item(r, 4).text()) == pytest.approx(expected, abs=1e-4)
    assert float(ev.category_table.item(r, 6).text()) == pytest.approx(1 - expected / 0.08, abs=1e-3)  # AUC
    assert ev.category_table.item(r, 8).text() == "0"  # no frame without a prediction
    assert ev.video_table.rowCount() == 1 and ev.video_table.item(0, 1).text() == "401"
    assert ev.progress.value() == 1000
    assert ev.plot_box.count() >= 1 and ev.plot_view.image() is not None  # the CED plot is shown
    # clicking the row plays the video with ground truth and prediction
    ev.video_table.cellClicked.emit(0, 1)
    assert ev.player.video_id == "401" and ev.player.current == 1
    assert ev.player.view.image() is not None
    ev.player.show_frame(2)
    assert ev.player.current == 2 and ev.player.label.text() == "2/2"


def test_300vw_tab_cancel_and_bad_root(qtbot, make_window, clip_300vw, tmp_path):
    """Cancel lands while frame 1 of 2 is being predicted (the predictor waits for the click):
    frame 2 must never be predicted. An evaluation that ignored the cancel would predict it."""
    import threading

    clicked = threading.Event()

    class BlockingPredictor(FakePredictor):
        def __init__(self) -> None:
            super().__init__()
            self.frames: list[float] = []

        def predict(self, frame_bgr, timestamp, gt):
            self.frames.append(timestamp)
            if len(self.frames) == 1:
                assert clicked.wait(20), "the test never clicked cancel"
            return super().predict(frame_bgr, timestamp, gt)

    pred = BlockingPredictor()
    win = make_window(predictor=pred)
    ev = win.evaluation
    ev.root_edit.setText(str(tmp_path / "nowhere"))
    assert not ev.start() and "nowhere: no such folder" in ev.status.text()
    ev.root_edit.setText(str(clip_300vw))
    assert ev.start()
    qtbot.waitUntil(lambda: ev.cancel_button.isEnabled() and len(pred.frames) == 1, timeout=10000)
    ev.cancel_button.click()
    clicked.set()
    qtbot.waitUntil(lambda: not ev.running(), timeout=20000)
    assert len(pred.frames) == 1, "frame 2 was predicted after the cancel"
    assert "cancelled" in ev.status.text() and "0 finished video" in ev.status.text()
    assert ev.run_button.isEnabled()


def test_real_tracker_on_real_video(qtbot, make_window, data_dir):
    """The shipped model end to end (needs facetrack/tracker/weights/mdm-rt.onnx): a frontal selfie video,
    the face found on the first frame and tracked after."""
    from facetrack.gui.workers import default_tracker_factory

    weights = Path(__file__).resolve().parents[2] / "facetrack" / "tracker" / "weights" / "mdm-rt.onnx"
    if not weights.exists():
        pytest.skip(f"{weights} not shipped yet")
    win = make_window(default_tracker_factory)
    states = []
    win.pipeline.inference.result.connect(lambda f: states.append([x.state for x in f.faces if x.success]))
    _open(qtbot, win, data_dir / "videos_unlabelled" / "sbr_demo_selfie.mp4", frames=10)
    faces = [f for f in win.live.latest.faces if f.success]
    assert faces, win.live.message_label.text()
    lm = faces[0].landmarks
    assert np.isfinite(lm).all()
    cx, cy = lm.mean(0)
    width = lm[:, 0].max() - lm[:, 0].min()
    assert 0 < cx < 450 and 0 < cy < 680 and 80 < width < 450  # a face-sized shape on the face (chin may leave the frame)
    assert states[0] == ["detected"] and ["tracking"] in states[1:]
    assert win.live.backend_text in ("ONNX Runtime CPU", "ONNX Runtime CUDA", "TensorRT")


def test_dropping_a_video_file_on_the_view_opens_it(qtbot, make_window, data_dir):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    win = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(data_dir / "videos_unlabelled" / "sbr_demo_selfie.mp4"))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    win.live.view.dropEvent(event)
    qtbot.waitUntil(lambda: win.live.shown is not None, timeout=10000)
    assert win.live.shown.image.shape == (680, 450, 3) and win.live.info.name == "sbr_demo_selfie.mp4"


def test_play_at_the_end_starts_over(qtbot, make_window, data_dir):
    win = make_window()
    _open(qtbot, win, data_dir / VIDEO)
    win.pipeline.seek(274)
    # the reader says "end of video" as it passes the last frame; the tracker's thread may still be
    # on an earlier one (a loaded machine, a first frame's whole search), so wait for both
    qtbot.waitUntil(lambda: "end of video" in win.live.message_label.text()
                    and win.live.latest is not None and win.live.latest.index == 274, timeout=10000)
    assert win.live.play_button.text() == "Play"
    win.live.play_button.click()
    qtbot.waitUntil(lambda: win.live.latest.index < 10, timeout=10000)


def test_300vw_tab_with_the_shipped_model(qtbot, make_window, clip_300vw):
    """The real evaluator and model (gt-box mode: 2 crops) through the tab."""
    weights = Path(__file__).resolve().parents[2] / "facetrack" / "tracker" / "weights" / "mdm-rt.onnx"
    if not weights.exists():
        pytest.skip(f"{weights} not shipped yet")
    win = make_window()
    ev = win.evaluation
    ev.root_edit.setText(str(clip_300vw))
    ev.mode_box.setCurrentText("gt-box")
    assert ev.start()
    qtbot.waitUntil(lambda: not ev.running(), timeout=60000)
    assert ev.outcome is not None, ev.status.text()
    nme68 = float(ev.category_table.item(0, 4).text())
    assert 0.0 < nme68 < 0.3  # a trained model on a real face from its ground-truth box (swapped x/y: > 1)
    preds = ev.outcome.predictions["401"]
    assert sorted(preds) == [1, 2] and all(p is not None and p.shape == (68, 2) for p in preds.values())


# --- issue 14 ----------------------------------------------------------------------------------
def test_play_and_step_are_disabled_until_a_source_opens(qtbot, make_window, data_dir):
    win = make_window()
    live = win.live
    assert not live.play_button.isEnabled() and not live.step_button.isEnabled() and not live.step_back.isEnabled()
    _open(qtbot, win, data_dir / VIDEO)
    assert live.play_button.isEnabled() and live.step_button.isEnabled() and live.step_back.isEnabled()


def test_slider_and_label_show_the_frame_drawn_in_the_overlay(qtbot, make_window, data_dir):
    """The capture runs ahead of the tracker; the slider follows the frame on screen, whose
    number the overlay draws ("frame N"), not the frame last decoded."""
    from facetrack.gui.overlay import info_lines

    win = make_window(FakeTracker(delay=0.03))
    _open(qtbot, win, data_dir / VIDEO, frames=3)
    for _ in range(10):
        qtbot.wait(60)
        shown = win.live.shown
        number = int(info_lines(shown)[0].split()[1])
        assert win.live.slider.value() + 1 == number == shown.index + 1
        assert win.live.position_label.text() == f"{number}/275"


def test_a_click_on_the_slider_groove_seeks_there(qtbot, make_window, data_dir):
    from PySide6.QtCore import QPoint, Qt

    win = make_window()
    _open(qtbot, win, data_dir / VIDEO)
    win.pipeline.pause()
    qtbot.waitUntil(lambda: win.live.play_button.text() == "Play", timeout=10000)
    slider = win.live.slider
    x = int(slider.width() * 0.75)
    target = slider.value_at(x)
    assert 150 < target < 250  # three quarters of 275 frames, not a 10-frame page step
    qtbot.mouseClick(slider, Qt.MouseButton.LeftButton, pos=QPoint(x, slider.height() // 2))
    qtbot.waitUntil(lambda: win.live.shown is not None and win.live.shown.index == target, timeout=10000)
    assert slider.value() == target


def test_end_of_video_is_cleared_after_seeking_back(qtbot, make_window, data_dir):
    win = make_window()
    _open(qtbot, win, data_dir / VIDEO)
    win.pipeline.seek(274)
    qtbot.waitUntil(lambda: "end of video" in win.live.message_label.text(), timeout=10000)
    win.pipeline.seek(100)
    qtbot.waitUntil(lambda: win.live.shown is not None and win.live.shown.index == 100, timeout=10000)
    assert "end of video" not in win.live.message_label.text()


def test_a_long_error_does_not_widen_the_window(qtbot, make_window):
    from PySide6.QtWidgets import QApplication

    win = make_window()
    QApplication.processEvents()
    width, minimum = win.width(), win.minimumSizeHint().width()
    text = "facetrack: " + "/very/long/path" * 200 + ": not a video OpenCV can read"
    win.live.show_message(text)
    QApplication.processEvents()
    qtbot.wait(100)
    assert win.width() == width and win.minimumSizeHint().width() == minimum
    assert win.live.message_label.toolTip() == text  # the whole text is still there


def test_a_video_whose_name_is_not_utf8_opens_with_its_name_unmangled(qtbot, make_window, data_dir, tmp_path):
    import os

    from PySide6.QtCore import QUrl

    from facetrack.gui.views import local_path

    name = os.fsdecode(b"caf\xe9_\xff.mp4")
    path = tmp_path / name
    path.write_bytes((data_dir / VIDEO).read_bytes())
    win = make_window()
    _open(qtbot, win, path)
    assert win.live.info.name == "caf\\xe9_\\xff.mp4"
    # a drop carries the name percent-encoded; toLocalFile() would replace the bytes
    url = QUrl.fromEncoded(b"file://" + os.fsencode(tmp_path).replace(b"%", b"%25") + b"/caf%E9_%FF.mp4")
    assert local_path(url) == str(path)


def _window_recording_specs(qtbot, make_window, data_dir):
    """A window on the Hamilton clip whose tracker factory records the specs it is asked for."""
    specs = []

    def factory(spec):
        specs.append(spec)
        return FakeTracker()

    win = make_window(factory)
    _open(qtbot, win, data_dir / VIDEO)
    return specs, win


def test_mirror_average_box_rebuilds_the_tracker_with_flip(qtbot, make_window, data_dir):
    """Ticking "mirror-average" asks for a tracker with test-time mirroring; the real factory
    then opens landmarkers that mirror (``Landmarker.flip``)."""
    from facetrack.gui.workers import TrackerSpec, default_tracker_factory

    specs, win = _window_recording_specs(qtbot, make_window, data_dir)
    win.live.flip.setChecked(True)
    qtbot.waitUntil(lambda: bool(specs) and specs[-1].flip, timeout=10000)
    assert specs[-1].smooth  # on by default, as for video in the CLI
    win.live.smooth.setChecked(False)
    qtbot.waitUntil(lambda: not specs[-1].smooth, timeout=10000)
    tracker = default_tracker_factory(TrackerSpec(flip=True))
    try:
        assert tracker.track_model.flip is True
    finally:
        tracker.close()


@pytest.mark.skipif(not {"aan-turned", "mdm-rt-turned"} <= set(available()), reason="needs the shipped turned-face models")
def test_the_live_tab_tracks_turned_faces_with_the_turned_models(qtbot, make_window, data_dir):
    """The live tab asks for the turned view (``TrackerSpec.turned_model``), as the CLI does by
    default; the real factory then opens a second chain for it."""
    from facetrack.gui.workers import TrackerSpec, default_tracker_factory
    from facetrack.tracker.models import TURNED

    specs, win = _window_recording_specs(qtbot, make_window, data_dir)
    qtbot.waitUntil(lambda: bool(specs), timeout=10000)
    assert specs[-1].turned_model == TURNED
    for turned, views in ((None, 1), (TURNED, 2)):
        tracker = default_tracker_factory(TrackerSpec(turned_model=turned))
        try:
            assert len(tracker.chains) == views
        finally:
            tracker.close()


def test_faces_and_confidence_controls_rebuild_the_tracker_with_the_live_preset(qtbot, make_window, data_dir):
    """The live tab's "Faces" and "Confidence" boxes reach the tracker; the real factory builds
    the CLI's camera defaults (the live preset) from them: aan+mdm, the turned view, the group
    detector for several faces."""
    from facetrack.gui.workers import TrackerSpec, default_tracker_factory
    from facetrack.tracker.presets import preset

    specs, win = _window_recording_specs(qtbot, make_window, data_dir)
    win.live.faces.setValue(3)
    qtbot.waitUntil(lambda: bool(specs) and specs[-1].max_faces == 3, timeout=10000)
    win.live.confidence.setValue(0.7)
    qtbot.waitUntil(lambda: specs[-1].confidence == 0.7, timeout=10000)
    assert win.evaluation.mode_box.currentText() == "gt-box"
    tracker = default_tracker_factory(TrackerSpec(max_faces=3, confidence=0.7))
    try:
        assert tracker.config.max_faces == 3 and tracker.config.confidence_threshold == 0.7
        assert tracker.config.model == "aan+mdm" and len(tracker.views) == 2 and tracker.config.smooth
        assert tracker.detector.name == preset("live", 3).detector
    finally:
        tracker.close()
