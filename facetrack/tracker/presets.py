"""What the product does by default: one preset per kind of input, the one place that says it.

``image`` (still photos, each on its own), ``video`` (a file, every frame in order) and ``live``
(a camera, frames as they come). The command line, the desktop app, ``eval-300vw``,
``eval-images``, the benchmarks and :class:`facetrack.FaceTracker` all build their trackers
from :func:`preset` (an option a user gives replaces one field), so the library, the CLI and the
app give the same landmarks for the same input. Why each default is what it is, with the figures:
docs/DEFAULTS.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from facetrack.tracker.detect import STILL_DETECTOR, video_detector_name
from facetrack.tracker.models import TURNED

Mode = Literal["image", "video", "live"]
MODES: tuple[str, ...] = ("image", "video", "live")

#: the model choice of every mode (:func:`facetrack.tracker.models.parse_model`): AAN fits a new
#: face from its box and MDM refines it; on video the two take turns on a tracked face
DEFAULT_MODEL = "aan+mdm"


@dataclass(frozen=True)
class Preset:
    """The product's defaults for one kind of input.

    ``model`` / ``turned_model``: model choices (``turned_model=None``: no turned view);
    ``flip``: average each fit with its mirror image's (twice the model's CPU; on for stills,
    where accuracy matters more than CPU); ``smooth``: One Euro smoothing moved by optical flow,
    on for live cameras only: on real video files it costs accuracy (held-out livep_d6: 3.36 %
    against 3.26 % unsmoothed, docs/SMOOTHING.md), which a file's user reads, while a live view's
    user sees the shimmer; stills have no time to smooth over; ``detector``: the face
    detector's name (:func:`facetrack.tracker.detect.make_detector`); ``threads``: CPU threads
    of the runtime, OpenCV and the decoder (1: the least CPU per frame); ``reset_each_frame``:
    every frame is a new picture (stills): nothing is carried over and every one is searched.
    """

    mode: str
    max_faces: int = 1
    model: str = DEFAULT_MODEL
    turned_model: str | None = TURNED
    flip: bool = False
    smooth: bool = False
    detector: str = "haar-alt2+cnn"
    threads: int = 1
    reset_each_frame: bool = False

    def with_options(self, **options: Any) -> "Preset":
        """This preset with the options a caller gave (``None`` keeps the preset's value)."""
        return replace(self, **{k: v for k, v in options.items() if v is not None})

    def tracker_config(self, **settings: Any) -> Any:
        """A :class:`facetrack.tracker.tracker.TrackerConfig` for this preset; ``settings`` are
        the tracker's other fields (thresholds, smoothing parameters, ...)."""
        from facetrack.tracker.tracker import TrackerConfig

        settings.setdefault("scale_check", True)  # issue 30: new faces are refitted from other boxes before they count
        return TrackerConfig(model=self.model, turned_model=self.turned_model, max_faces=self.max_faces,
                             flip=self.flip, smooth=self.smooth, threads=self.threads, **settings)


def preset(mode: str = "video", max_faces: int = 1) -> Preset:
    """The defaults for ``mode`` (``"image"``, ``"video"`` or ``"live"``) and ``max_faces``.

    Raises ``ValueError`` naming the modes for any other ``mode``."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if int(max_faces) < 1:
        raise ValueError(f"max_faces {max_faces}: expected at least 1")
    max_faces = int(max_faces)
    if mode == "image":
        # no frame waits for a still's search, so it looks wider; mirrored fits for accuracy
        return Preset(mode, max_faces, flip=True, smooth=False, detector=STILL_DETECTOR, reset_each_frame=True)
    return Preset(mode, max_faces, smooth=mode == "live", detector=video_detector_name(max_faces))
