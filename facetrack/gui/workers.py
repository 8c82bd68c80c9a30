"""Worker ``QObject``s that run on their own ``QThread``s: capture, inference (+ recording)
and the 300VW evaluation.

Capture puts :class:`~facetrack.gui.frames.FramePacket`s into a :class:`~facetrack.gui.frames.OneSlotQueue` and
pokes the inference worker with a queued signal; the inference worker takes the newest packet,
runs the tracker and emits a frozen :class:`~facetrack.gui.frames.TrackedFrame`. Nothing raises into Qt:
every failure becomes an ``error(str)`` signal the window shows as a message.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from facetrack.gui.frames import DrawOptions, FaceView, FramePacket, OneSlotQueue, TrackedFrame
from facetrack.gui.overlay import render_tracked
from facetrack.gui.sources import CameraSource, SourceError, VideoFileSource
from facetrack.tracker.models import TURNED
from facetrack.tracker.presets import DEFAULT_MODEL

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- capture
class CaptureWorker(QObject):
    """Reads a video file or a camera and feeds the one-slot queue.

    A file plays at its own frame rate but never faster than inference: a new frame is read
    only once the previous one was taken (no file frame is dropped). A camera is read at its
    rate regardless and a frame that is still waiting is replaced (counted as dropped).
    """

    opened = Signal(object)       # SourceInfo
    position = Signal(int)        # 0-based index of the frame just queued
    frame_queued = Signal()       # poke for the inference worker (queued connection)
    playing_changed = Signal(bool)
    ended = Signal()
    error = Signal(str)

    def __init__(self, queue: OneSlotQueue[FramePacket]) -> None:
        super().__init__()
        self.queue = queue
        self._source: VideoFileSource | CameraSource | None = None
        self._timer: QTimer | None = None
        self._playing = False
        self._cut = True

    def _ensure_timer(self) -> QTimer:
        if self._timer is None:  # created lazily so it lives in the worker's thread
            self._timer = QTimer(self)
            self._timer.timeout.connect(self._tick)
        return self._timer

    @Slot(object)
    def open_file(self, path: str) -> None:
        self._open(lambda: VideoFileSource(path))

    @Slot(int)
    def open_camera(self, index: int) -> None:
        self._open(lambda: CameraSource(index))

    def _open(self, make: Callable[[], VideoFileSource | CameraSource]) -> None:
        self.close()
        try:
            src = make()
        except SourceError as e:
            self.error.emit(str(e))
            return
        except Exception as e:  # noqa: BLE001 - OpenCV may raise anything; the window shows it
            self.error.emit(f"cannot open source: {e}")
            return
        self._source = src
        self._cut = True
        self.queue.clear()
        self.opened.emit(src.info)
        self._read_one()  # show the first frame at once
        self.play()

    @Slot()
    def play(self) -> None:
        src = self._source
        if src is None:
            return
        if src.info.seekable and src.position >= src.info.frame_count:
            self.seek(0)  # play at the end starts over
        timer = self._ensure_timer()
        timer.start(max(1, int(round(1000.0 / self._source.info.fps))))
        self._set_playing(True)

    @Slot()
    def pause(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._set_playing(False)

    def _set_playing(self, playing: bool) -> None:
        if playing != self._playing:
            self._playing = playing
            self.playing_changed.emit(playing)

    @Slot(int)
    def step(self, frames: int = 1) -> None:
        """Pause, then show the frame ``frames`` after the current one (negative: before)."""
        self.pause()
        src = self._source
        if src is None:
            return
        if frames != 1:
            if not src.info.seekable:
                self.error.emit(f"{src.info.name}: cannot step backwards in a live source")
                return
            self.seek(src.position - 1 + frames)
            return
        self._read_one()

    @Slot(int)
    def seek(self, index: int) -> None:
        """Show frame ``index`` (0-based); playing continues from there if it was playing."""
        src = self._source
        if src is None:
            return
        if not src.info.seekable:
            self.error.emit(f"{src.info.name}: a live source cannot seek")
            return
        try:
            src.seek(index)
        except SourceError as e:
            self.error.emit(str(e))
            return
        self.queue.clear()
        self._cut = True
        self._read_one()

    def _tick(self) -> None:
        src = self._source
        if src is None:
            return
        if src.info.seekable and not self.queue.empty():
            return  # file: wait for inference, never drop
        self._read_one()

    def _read_one(self) -> None:
        src = self._source
        if src is None:
            return
        try:
            got = src.read()
        except SourceError as e:
            self.pause()
            self.error.emit(str(e))
            self.close()
            return
        if got is None:
            self.pause()
            self.ended.emit()
            return
        index, ts, image = got
        image.setflags(write=False)  # handed to other threads: nobody may change it
        self.queue.put(FramePacket(index, ts, image, time.perf_counter(), cut=self._cut))
        self._cut = False
        self.position.emit(index)
        self.frame_queued.emit()

    @Slot()
    def close(self) -> None:
        self.pause()
        if self._source is not None:
            self._source.close()
            self._source = None


# ----------------------------------------------------------------------------- inference
@dataclass(frozen=True)
class TrackerSpec:
    """What tracker to build: the ``live`` preset (:mod:`facetrack.tracker.presets`, the CLI's
    defaults for a camera) with the window's choices. ``model`` is a model choice (``"aan+mdm"``,
    ``"mdm-rt"``, ``"aan"`` or a model path); ``turned_model``: the turned view's models
    (``None``: none); ``confidence``: the threshold under which a face is lost."""

    model: str = DEFAULT_MODEL
    backend: str = "auto"
    smooth: bool = True
    max_faces: int = 1
    flip: bool = False  # test-time mirroring (TrackerConfig.flip)
    turned_model: str | None = TURNED  # models for the turned faces ``model`` rejects (TrackerConfig.turned_model)
    confidence: float = 0.5


class TrackerLike(Protocol):
    def process(self, frame: np.ndarray, timestamp: float) -> Any: ...
    def reset(self) -> None: ...


TrackerFactory = Callable[[TrackerSpec], TrackerLike]


def default_tracker_factory(spec: TrackerSpec) -> TrackerLike:
    """Build :class:`facetrack.tracker.tracker.Tracker` from a spec (imported here: the app opens without it)."""
    from dataclasses import replace

    from facetrack.tracker.detect import make_detector
    from facetrack.tracker.presets import preset
    from facetrack.tracker.tracker import Tracker

    live = replace(preset("live", spec.max_faces), model=spec.model, smooth=spec.smooth, flip=spec.flip,
                   turned_model=spec.turned_model)
    config = live.tracker_config(backend=spec.backend, confidence_threshold=spec.confidence)
    return Tracker(config, detector=make_detector(live.detector))


def backend_label(tracker: Any) -> str:
    """Where a tracker's models run ("ONNX Runtime CPU", "TensorRT" ...), or "" if unknown.

    Read from the tracker's landmarkers' backends (``Backend.device``); falls back to what
    :func:`facetrack.engines.registry.pick_backend` would choose.
    """
    chain = getattr(tracker, "chain", None)
    models = [getattr(tracker, "track_model", None), *(chain.stages if chain is not None else ())]
    labels = [str(getattr(getattr(m, "backend", None), "device", "") or "") for m in models if m is not None]
    labels = [x for x in dict.fromkeys(labels) if x]
    if labels:
        return " + ".join(labels)
    try:
        from facetrack.engines.registry import pick_backend

        return str(pick_backend().label)
    except Exception:  # noqa: BLE001 - a label is cosmetic; never stop the app for it
        return ""


def to_face_view(face: Any) -> FaceView:
    """Copy a tracker ``FaceResult`` into a :class:`FaceView` (own arrays, plain floats)."""
    box = getattr(face, "box", None)
    box_t = None if box is None else tuple(float(v) for v in np.asarray(box, np.float64).reshape(4))
    return FaceView(int(face.face_id), np.array(face.landmarks, np.float32, copy=True), float(face.confidence),
                    bool(face.success), box_t, str(face.state), getattr(face, "pose", None))


class InferenceWorker(QObject):
    """Runs the tracker on the newest queued frame; optionally records CSV and overlay video."""

    result = Signal(object)          # TrackedFrame
    backend_changed = Signal(str)
    tracker_ready = Signal(str)      # model name
    recording_changed = Signal(str)  # "" when stopped, else a description
    error = Signal(str)

    def __init__(self, queue: OneSlotQueue[FramePacket], factory: TrackerFactory = default_tracker_factory) -> None:
        super().__init__()
        self.queue = queue
        self.factory = factory
        self.tracker: TrackerLike | None = None
        self.spec: TrackerSpec | None = None
        self.options = DrawOptions()
        self.recorder: Recorder | None = None
        self._times: collections.deque[float] = collections.deque(maxlen=120)
        self.processed = 0

    @Slot(object)
    def configure(self, spec: TrackerSpec) -> None:
        """(Re)build the tracker; on failure keep none and report why."""
        self._close_tracker()
        self.spec = spec
        try:
            self.tracker = self.factory(spec)
        except Exception as e:  # noqa: BLE001 - missing model, bad file, missing runtime
            log.debug("tracker build failed: %s", traceback.format_exc())
            self.backend_changed.emit("")
            self.error.emit(f"model {spec.model}: {e}")
            return
        self.backend_changed.emit(backend_label(self.tracker))
        self.tracker_ready.emit(spec.model)

    @Slot(object)
    def set_options(self, options: DrawOptions) -> None:
        self.options = options

    @Slot()
    def reset(self) -> None:
        if self.tracker is not None:
            self.tracker.reset()

    @Slot()
    def process_pending(self) -> None:
        packet = self.queue.get()
        if packet is None:
            return  # a newer poke already took it
        faces: tuple[FaceView, ...] = ()
        timings: dict[str, float] = {}
        detector_ran = False
        if self.tracker is not None:
            try:
                if packet.cut:
                    self.tracker.reset()
                res = self.tracker.process(packet.image, packet.timestamp)
                faces = tuple(to_face_view(f) for f in res.faces)
                timings = {str(k): float(v) for k, v in dict(getattr(res, "timings", {}) or {}).items()}
                detector_ran = bool(getattr(res, "detector_ran", False))
            except Exception as e:  # noqa: BLE001 - keep the window alive, say what happened
                log.debug("tracker failed: %s", traceback.format_exc())
                self.error.emit(f"tracking frame {packet.index} failed: {e}")
        now = time.perf_counter()
        self._times.append(now)
        while self._times and now - self._times[0] > 1.0:
            self._times.popleft()
        fps = (len(self._times) - 1) / (self._times[-1] - self._times[0]) if len(self._times) > 1 else 0.0
        frame = TrackedFrame(packet.index, packet.timestamp, packet.image, faces, timings,
                             (now - packet.captured_at) * 1000.0, fps, self.queue.dropped, detector_ran,
                             self.tracker is not None)
        self.processed += 1
        if self.recorder is not None:
            try:
                self.recorder.write(frame, self.options)
            except Exception as e:  # noqa: BLE001 - disk full, codec gone
                self.error.emit(f"recording stopped: {e}")
                self.stop_recording()
        self.result.emit(frame)

    @Slot(str, str, float)
    def start_recording(self, csv_path: str, video_path: str = "", fps: float = 30.0) -> None:
        """Record every processed frame: CSV at ``csv_path``; overlay video at ``video_path``
        (codec by suffix: ``.mkv``, ``.avi``, ``.mp4``) at ``fps`` frames per second (the source's rate)."""
        self.stop_recording()
        try:
            self.recorder = Recorder(Path(csv_path), Path(video_path) if video_path else None, fps)
        except Exception as e:  # noqa: BLE001
            self.error.emit(f"cannot record: {e}")
            return
        self.recording_changed.emit(f"recording {csv_path}" + (f" + {video_path}" if video_path else ""))

    @Slot()
    def stop_recording(self) -> None:
        if self.recorder is not None:
            rec, self.recorder = self.recorder, None
            rec.close()
            self.recording_changed.emit("")

    def _close_tracker(self) -> None:
        trk, self.tracker = self.tracker, None
        close = getattr(trk, "close", None)
        if close is not None:
            close()

    @Slot()
    def shutdown(self) -> None:
        self.stop_recording()
        self._close_tracker()


class Recorder:
    """Writes each :class:`TrackedFrame` to the landmarks CSV (OpenFace layout, same as the CLI,
    via :mod:`facetrack.io.output`) and, if a video path is given, the overlay video
    (:func:`facetrack.io.video.open_video_writer`: ``.mkv``, ``.avi`` or ``.mp4``)."""

    def __init__(self, csv_path: Path, video_path: Path | None = None, fps: float = 30.0) -> None:
        from facetrack.io.output import CsvWriter

        self.csv = CsvWriter(csv_path)
        self.video_path = video_path
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self._video = None

    def write(self, frame: TrackedFrame, options: DrawOptions) -> None:
        self.csv.write_frame(frame.index + 1, frame.timestamp, frame.faces)  # CSV frames are 1-based
        if self.video_path is not None:
            from facetrack.io.video import open_video_writer

            img = render_tracked(frame, options)
            if self._video is None:  # the codec follows the suffix, as in the CLI (VideoError is an OSError)
                self._video = open_video_writer(self.video_path, self.fps, img.shape[1], img.shape[0])
            self._video.write(img)

    def close(self) -> None:
        self.csv.close()
        if self._video is not None:
            self._video.release()


# ----------------------------------------------------------------------------- 300VW evaluation
@dataclass(frozen=True)
class EvalRequest:
    """Arguments of :func:`facetrack.eval.vw300.evaluate_300vw` chosen in the 300VW tab."""

    root: str
    categories: tuple[int, ...]
    videos: tuple[str, ...] | None = None
    model: str = "mdm-rt"
    backend: str = "auto"
    mode: str = "track"
    points: tuple[int, ...] = (68, 49)
    out_dir: str | None = None
    max_frames: int | None = None
    force: bool = True


@dataclass(frozen=True, eq=False)
class EvalOutcome:
    """A finished evaluation: the ``Report`` and the predictions the GUI kept for playback,
    ``predictions[video_id][frame]`` -> ``(68, 2)`` float32 image px or ``None`` (no face);
    ``frame`` is 1-based as in 300VW. Videos reused from an earlier run have none."""

    report: Any
    predictions: Mapping[str, Mapping[int, np.ndarray | None]]


class RecordingPredictor:
    """Wraps an evaluation predictor and keeps every prediction, in call order per video.

    ``evaluate_300vw`` calls ``predict`` for every decoded frame (``every_frame``) or for the
    scored frames in order, so :meth:`by_frame` maps calls to 1-based frame numbers exactly.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.every_frame = bool(inner.every_frame)
        self.uses_ground_truth = bool(inner.uses_ground_truth)
        self.calls: dict[str, list[np.ndarray | None]] = {}
        self._current: list[np.ndarray | None] = []

    def start_video(self, video_id: str) -> None:
        self.inner.start_video(video_id)
        self._current = self.calls.setdefault(video_id, [])
        self._current.clear()

    def predict(self, frame_bgr: np.ndarray, timestamp: float, gt: np.ndarray | None) -> np.ndarray | None:
        p = self.inner.predict(frame_bgr, timestamp, gt)
        self._current.append(None if p is None else np.array(p, np.float32, copy=True).reshape(68, 2))
        return p

    def by_frame(self, video_id: str, scored_frames: Sequence[int]) -> dict[int, np.ndarray | None]:
        """1-based frame number -> prediction for one video."""
        calls = self.calls.get(video_id, [])
        frames = range(1, len(calls) + 1) if self.every_frame else list(scored_frames)[:len(calls)]
        return dict(zip(frames, calls))


PredictorFactory = Callable[[str, str, str], Any]  # (mode, model, backend) -> FramePredictor


def progress_fraction(event: Any) -> float:
    """Overall fraction done in [0, 1] from a :class:`facetrack.eval.vw300.ProgressEvent`."""
    n_videos = max(1, int(event.n_videos))
    within = float(event.frame) / event.n_frames if event.n_frames else 1.0
    return min(1.0, max(0.0, (int(event.video_index) + within) / n_videos))


class EvalWorker(QObject):
    """Runs one evaluation in its thread; ``cancel()`` may be called from any thread.

    ``predictor_factory``: builds the predictor of a mode (default
    :func:`facetrack.eval.vw300.make_predictor`; tests inject another).
    """

    progress = Signal(object)  # facetrack.eval.vw300.ProgressEvent
    finished = Signal(object)  # EvalOutcome
    failed = Signal(str)
    cancelled = Signal(object)  # EvalOutcome of the finished videos, or None

    def __init__(self, request: EvalRequest, predictor_factory: PredictorFactory | None = None) -> None:
        super().__init__()
        self.request = request
        self.predictor_factory = predictor_factory
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        self.cancel_event.set()

    @Slot()
    def run(self) -> None:
        r = self.request
        try:
            from facetrack.eval.vw300 import evaluate_300vw, make_predictor

            factory = self.predictor_factory or make_predictor
            predictor = RecordingPredictor(factory(r.mode, r.model, r.backend))
            report = evaluate_300vw(r.root, list(r.categories), videos=list(r.videos) if r.videos else None,
                                    model=r.model, backend=r.backend, mode=r.mode, points=r.points,
                                    out_dir=r.out_dir, progress=self.progress.emit, cancel=self.cancel_event,
                                    max_frames=r.max_frames, force=r.force, predictor=predictor)
        except Exception as e:  # noqa: BLE001 - shown in the tab, never a Python dialog
            log.debug("evaluation failed: %s", traceback.format_exc())
            self.failed.emit(f"300VW evaluation failed: {e}")
            return
        preds = {vid: predictor.by_frame(vid, res.frame_numbers) for vid, res in report.videos.items()
                 if vid in predictor.calls}
        outcome = EvalOutcome(report, preds)
        if getattr(report, "cancelled", False) or self.cancel_event.is_set():
            self.cancelled.emit(outcome)
        else:
            self.finished.emit(outcome)
