"""The library's front door: :class:`FaceTracker`, one object to feed frames to, with the
product's defaults (:mod:`facetrack.tracker.presets`), and :class:`Result`, what it returns.

``FaceTracker(mode="video")`` fed the frames of a video gives the rows ``facetrack VIDEO --out
x.csv`` writes (``tests/test_api.py`` checks it on both real videos and a folder of images).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Iterator, Union

import numpy as np

from facetrack.io.output import POSE_COLUMNS, RIGID_COLUMNS, Row, columns, format_row, frame_json, frame_rows, image_cell
from facetrack.tracker.presets import MODES, preset
from facetrack.tracker.results import FaceResult, FaceState

#: ``device`` -> the runtime every model opens in (``auto``: TensorRT > ONNX Runtime CUDA > CPU)
DEVICES: dict[str, str] = {"auto": "auto", "cpu": "onnxruntime", "cuda": "onnxruntime-cuda", "tensorrt": "tensorrt"}


@dataclass(frozen=True)
class Result:
    """One frame's faces. ``frame``: 1-based, as in the CSV; ``timestamp``: seconds;
    ``faces``: :class:`~facetrack.tracker.results.FaceResult` (``.face_id``, ``.landmarks``
    ``(68, 2)`` float32 image px, ``.confidence``, ``.success``, ``.box``, ``.state``, a
    :class:`~facetrack.tracker.results.FaceState`, ``.pose``, a
    :class:`~facetrack.tracker.pose.HeadPose`: ``.yaw``/``.pitch``/``.roll`` degrees and
    OpenFace's ``pose_*``/``p_*`` values); ``cut``: a shot cut before this frame;
    ``timings``: milliseconds per stage; ``image``: the still image's file name (image mode)."""

    frame: int
    timestamp: float
    faces: tuple[FaceResult, ...]
    cut: bool
    timings: dict[str, float]
    rows: tuple[Row, ...]
    image: str | None = None

    @property
    def success(self) -> bool:
        """Whether at least one face was fitted."""
        return any(f.success for f in self.faces)

    def to_rows(self) -> list[dict[str, Any]]:
        """The CSV rows of this frame as dicts keyed by OpenFace's column names (``frame``,
        ``face_id``, ``timestamp``, ``confidence``, ``success``, ``pose_Tx`` .. ``pose_Rz``,
        ``x_0`` .. ``y_67``, ``p_scale`` .. ``p_ty``, the pose's only with it; ``image`` first
        for stills): one per face, or one ``success=0`` row when there is none, a lost
        face carrying its last landmarks, as the CSV has them."""
        out = []
        for r in self.rows:
            pts = np.asarray(r.landmarks, np.float64)
            row: dict[str, Any] = {} if self.image is None else {"image": self.image}
            row.update(frame=r.frame, face_id=r.face_id, timestamp=round(float(r.timestamp), 3),
                       confidence=round(float(r.confidence), 3), success=int(r.success))
            if r.pose is not None:
                row.update(zip(POSE_COLUMNS, (round(float(v), d) for v, d in zip(r.pose[:6], (2, 2, 2, 4, 4, 4)))))
            row.update({f"x_{i}": round(float(pts[i, 0]), 3) for i in range(len(pts))})
            row.update({f"y_{i}": round(float(pts[i, 1]), 3) for i in range(len(pts))})
            if r.pose is not None:
                row.update(zip(RIGID_COLUMNS, (round(float(v), d) for v, d in zip(r.pose[6:], (5, 4, 4, 4, 3, 3)))))
            out.append(row)
        return out

    def to_csv(self) -> str:
        """This frame's lines exactly as the CLI's CSV holds them (no header: :func:`header`)."""
        prefix = "" if self.image is None else image_cell(self.image) + ","
        return "".join(prefix + format_row(r) for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        """This frame as the CLI's ``--format json`` writes it (one object per frame)."""
        return frame_json(self.frame, self.timestamp, self.faces, self.rows, self.cut)


class FaceTracker:
    """68-point landmarks of the faces in a stream of frames, with the product's defaults.

    ``mode``: ``"video"`` (a file's frames in order), ``"live"`` (a camera) or ``"image"``
    (unrelated stills: every frame is searched, nothing is carried over, mirrored fits).
    ``max_faces``: faces tracked at once (the surest detections first). ``model`` /
    ``turned_model``: model choices (``"aan+mdm"``, ``"mdm"``, ``"aan"``, a file, ``A+B``;
    ``turned_model=None`` keeps the preset's turned-face models, ``"none"`` drops them);
    ``device``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"tensorrt"``; ``fps``: the stream's
    frame rate, which the smoothing's first step assumes (a video's own: :meth:`track` sets
    it); ``confidence``: the threshold under which a face is lost or a detection rejected;
    ``smooth``, ``flip``, ``detector``, ``threads``: the preset's, unless given. Other
    :class:`~facetrack.tracker.config.TrackerConfig` fields go in ``**settings``.

    A context manager; :meth:`close` releases the models. Not thread-safe: one tracker per
    stream.
    """

    def __init__(self, mode: str = "video", *, max_faces: int = 1, model: str | None = None,
                 turned_model: str | None = None, device: str = "auto", fps: float | None = None,
                 confidence: float | None = None, smooth: bool | None = None, flip: bool | None = None,
                 detector: str | None = None, threads: int | None = None, **settings: Any) -> None:
        if device not in DEVICES:
            raise ValueError(f"device {device!r}: expected one of {', '.join(DEVICES)}")
        self.preset = preset(mode, max_faces).with_options(model=model, smooth=smooth, flip=flip, detector=detector,
                                                           threads=threads)
        if turned_model is not None:
            self.preset = replace(self.preset, turned_model=None if turned_model == "none" else turned_model)
        if confidence is not None:
            settings["confidence_threshold"] = float(confidence)
        if fps is not None:
            settings["default_fps"] = float(fps)
        self.mode = mode
        self._device = device
        self._settings = settings
        self._tracker: Any = None
        self._closed = False
        self._last: dict[int, np.ndarray] = {}
        self._frames = 0

    def _open(self) -> Any:
        """The tracker, opened at first use (so that :meth:`track` can give it the source's rate)."""
        if self._tracker is not None:
            return self._tracker
        if self._closed:
            raise RuntimeError("this FaceTracker is closed")
        import cv2

        from facetrack.tracker.detect import make_detector
        from facetrack.tracker.tracker import Tracker

        # as the CLI: OpenCV's own threads cost more CPU than they save (facetrack.cli.track.use_opencv_threads)
        cv2.setNumThreads(int(self.preset.threads))
        config = self.preset.tracker_config(backend=DEVICES[self._device], **self._settings)
        self._tracker = Tracker(config, detector=make_detector(self.preset.detector))
        return self._tracker

    @property
    def config(self) -> Any:
        """The :class:`~facetrack.tracker.config.TrackerConfig` in use."""
        return self._open().config

    def process(self, frame: np.ndarray, timestamp: float | None = None, image: str | None = None,
                number: int | None = None) -> Result:
        """Track one frame: BGR ``uint8`` ``(H, W, 3)`` as OpenCV reads it (grey and BGRA work
        too). ``timestamp``: seconds (default: frame count / ``fps``); ``image``: the file name
        a still's rows carry (image mode); ``number``: the frame's 1-based number in its source
        (default: one more than the last)."""
        tracker = self._open()
        if self.preset.reset_each_frame:
            tracker.reset()  # stills are unrelated: search every one, carry nothing over
            self._last.clear()
        r = tracker.process(frame, timestamp)
        self._frames = self._frames + 1 if number is None else int(number)
        rows = tuple(frame_rows(self._frames, r.timestamp, r.faces, self._last, tracker.config.pose))
        return Result(self._frames, r.timestamp, r.faces, r.cut, r.timings, rows, image)

    def track(self, source: Union[str, int, os.PathLike, Any]) -> Iterator[Result]:
        """Every frame of ``source`` (a path, a camera index, or a reader of
        :func:`facetrack.open_source`), tracked: the same rows as the CLI on that input. Takes
        the source's frame rate; a still image's result carries its file name."""
        from facetrack.io.sources import open_source
        from facetrack.io.video import display_name

        own = not hasattr(source, "read")
        reader = open_source(source, threads=self.preset.threads) if own else source
        try:
            if self._settings.get("default_fps") != float(reader.fps):
                self._settings["default_fps"] = float(reader.fps)
                if self._tracker is not None:  # opened for another rate: the smoothing's first step depends on it
                    self._tracker.close()
                    self._tracker = None
            self.reset()
            images = self.preset.reset_each_frame
            while (item := reader.read()) is not None:
                index, ts, frame = item
                name = display_name(reader.current.name) if images and getattr(reader, "current", None) else None
                yield self.process(frame, ts, image=name, number=index + 1)
        finally:
            if own:
                reader.close()

    def reset(self) -> None:
        """Forget every face: the next frame starts a new stream."""
        if self._tracker is not None:
            self._tracker.reset()
        self._last.clear()
        self._frames = 0

    def close(self) -> None:
        """Release the models (idempotent)."""
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        self._closed = True

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def header(mode: str = "video", pose: bool = True) -> str:
    """The CSV header line (with ``\\n``) of a mode's rows (``pose``: with the head-pose
    columns, as a tracker with ``TrackerConfig.pose`` on, the default, gives them)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    return ",".join(columns(pose, image=mode == "image")) + "\n"


__all__ = ["DEVICES", "FaceState", "FaceTracker", "Result", "header"]
