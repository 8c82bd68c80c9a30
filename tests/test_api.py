"""The library's front door: ``facetrack.FaceTracker`` gives the CLI's rows with the CLI's defaults."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import facetrack
from facetrack.cli.main import main
from facetrack.io.output import POSE_CSV_COLUMNS

REPO = Path(__file__).resolve().parents[1]


def _cli_csv(tmp_path: Path, src: Path, *extra: str, name: str = "cli.csv") -> bytes:
    out = tmp_path / name
    assert main([str(src), "--out", str(out), "-q", *extra]) == 0
    return out.read_bytes()


def _api_csv(src: Path, mode: str, **options) -> bytes:
    with facetrack.FaceTracker(mode=mode, **options) as tracker:
        return (facetrack.header(mode) + "".join(r.to_csv() for r in tracker.track(src))).encode()


@pytest.mark.slow
@pytest.mark.parametrize("clip", ["sbr_demo_selfie.mp4", "short_hamilton_clip.mp4"])
def test_the_video_preset_gives_the_cli_rows_byte_for_byte(tmp_path, data_dir, clip):
    src = data_dir / "videos_unlabelled" / clip
    assert _api_csv(src, "video") == _cli_csv(tmp_path, src)


@pytest.mark.slow
def test_the_image_preset_gives_the_cli_rows_of_a_folder(tmp_path, data_dir):
    src = data_dir / "images68" / "helen_train"
    cli = _cli_csv(tmp_path, src)
    assert _api_csv(src, "image") == cli
    # and the preset is what makes it so: the video preset on the same stills differs (no mirrored fits)
    assert _api_csv(src, "image", flip=False) != cli


def test_process_frame_by_frame_matches_track_and_carries_the_cli_json(tmp_path, data_dir):
    src = data_dir / "videos_unlabelled" / "sbr_demo_selfie.mp4"
    out = tmp_path / "cli.jsonl"
    assert main([str(src), "--out", str(out), "-q", "--format", "json", "--end", "20f"]) == 0
    cli = [json.loads(line) for line in out.read_text().splitlines()]
    with facetrack.open_source(src) as reader, facetrack.FaceTracker(mode="video", fps=reader.fps) as tracker:
        results = [tracker.process(frame, ts) for _, ts, frame in (reader.read() for _ in range(20))]
    assert [r.to_json() for r in results] == cli
    face = results[-1].faces[0]
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    assert face.state is facetrack.FaceState.TRACKING and face.state == "tracking"
    rows = results[-1].to_rows()
    assert list(rows[0]) == list(POSE_CSV_COLUMNS)
    assert rows[0]["x_36"] == round(float(face.landmarks[36, 0]), 3)


def test_options_and_errors_are_checked_up_front():
    with pytest.raises(ValueError, match="mode 'webcam'"):
        facetrack.FaceTracker(mode="webcam")
    with pytest.raises(ValueError, match="device 'gpu'"):
        facetrack.FaceTracker(device="gpu")
    tracker = facetrack.FaceTracker(mode="image", max_faces=3, turned_model="none")
    assert tracker.config.max_faces == 3 and tracker.config.flip and not tracker.config.smooth
    assert tracker.config.turned_model is None and tracker.config.model == "aan+mdm"
    tracker.close()
    with pytest.raises(RuntimeError, match="closed"):
        tracker.process(np.zeros((64, 64, 3), np.uint8))


def test_the_presets_are_the_cli_defaults():
    video, image, live = (facetrack.preset(m) for m in ("video", "image", "live"))
    assert video.model == image.model == live.model == "aan+mdm"
    # smoothing for live cameras only (docs/SMOOTHING.md: on video files it cost accuracy)
    assert live.smooth and not video.smooth and not video.flip and image.flip and not image.smooth and image.reset_each_frame
    assert video.turned_model is not None and video.detector == "haar-alt2+cnn"
    assert facetrack.preset("video", max_faces=4).detector == "haar-alt2+cnn+profile"


def test_importing_facetrack_loads_nothing_heavy():
    code = "import sys, facetrack; print(sorted(m for m in ('cv2', 'numpy', 'onnxruntime', 'torch') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_annotate_draws_the_faces_on_a_copy(data_dir):
    src = data_dir / "images68" / "helen_train"
    with facetrack.FaceTracker(mode="image") as tracker:
        result = next(iter(tracker.track(src)))
        frame = facetrack.open_source(src).read()[2]
    drawn = facetrack.annotate(frame, result)
    assert drawn.shape == frame.shape and drawn is not frame
    x0, y0, x1, y1 = result.faces[0].box.astype(int)
    assert (drawn[y0:y1, x0:x1] != frame[y0:y1, x0:x1]).any()  # the landmarks are drawn
