"""The one-slot queue and the pure drawing functions (no window needed)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from facetrack.gui.frames import DrawOptions, FaceView, OneSlotQueue, TrackedFrame
from facetrack.gui.overlay import PRED_COLOR, STATE_COLORS, info_lines, render_comparison, render_tracked, state_label
from facetrack.tracker.markup import mean_shape

pytestmark = pytest.mark.gui


def test_queue_keeps_newest_and_counts_drops():
    q: OneSlotQueue[int] = OneSlotQueue()
    assert q.get() is None and q.empty()
    assert q.put(1) is False
    assert q.put(2) is True
    assert q.put(3) is True
    assert q.dropped == 2 and q.put_count == 3
    assert q.get() == 3
    assert q.get() is None
    q.put(4)
    q.clear()  # a seek: forgotten, not counted as dropped
    assert q.get() is None and q.dropped == 2


def test_queue_with_slow_consumer_drops_exactly_the_untaken_items():
    q: OneSlotQueue[int] = OneSlotQueue()
    taken: list[int] = []
    stop = threading.Event()

    def consume():
        while not stop.is_set() or not q.empty():
            item = q.get(timeout=0.05)
            if item is not None:
                taken.append(item)
                time.sleep(0.01)  # slower than the producer

    t = threading.Thread(target=consume)
    t.start()
    for i in range(200):
        q.put(i)
        time.sleep(0.0005)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert taken == sorted(taken)  # newest-first never reorders
    assert taken[-1] == 199  # the last frame is never lost
    assert q.dropped > 0
    assert q.dropped + len(taken) == 200


def test_queue_close_wakes_a_waiting_consumer():
    q: OneSlotQueue[int] = OneSlotQueue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
    t.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    q.close()
    t.join(2)
    assert not t.is_alive() and got == [None] and time.perf_counter() - t0 < 1.0


def _face(state="tracking", success=True):
    lm = mean_shape().astype(np.float32) * 0.8 + 100
    return FaceView(0, lm, 0.75, success, tuple(float(v) for v in (*lm.min(0), *lm.max(0))), state)


def test_render_tracked_draws_landmarks_in_the_state_colour_and_leaves_input_alone():
    img = np.zeros((200, 200, 3), np.uint8)
    img.setflags(write=False)
    face = _face("detected")
    frame = TrackedFrame(4, 0.1, img, (face,))
    out = render_tracked(frame, DrawOptions(info=False))
    assert out.shape == img.shape and not img.any()
    x, y = np.round(face.landmarks[30]).astype(int)  # nose tip: a point and its disc
    assert tuple(out[y, x]) == STATE_COLORS["detected"]
    # toggles: without points/lines/box nothing is drawn
    none = render_tracked(frame, DrawOptions(points=False, lines=False, box=False, info=False))
    assert not none.any()
    # a failed face draws no landmarks, only the box
    failed = render_tracked(TrackedFrame(4, 0.1, img, (_face("lost", success=False),)),
                            DrawOptions(box=False, info=False))
    assert not failed.any()


def test_info_lines_report_fps_latency_drops_backend_and_state():
    frame = TrackedFrame(9, 0.3, np.zeros((10, 10, 3), np.uint8), (_face("detected"),), {"a": 2.0, "b": 3.5},
                         latency_ms=12.5, fps=29.9, dropped=3)
    text = "\n".join(info_lines(frame, "ONNX Runtime CPU"))
    for part in ("frame 10", "29.9 fps", "12.5 ms", "5.5 ms", "dropped 3", "ONNX Runtime CPU", "re-detecting", "0.75"):
        assert part in text
    assert state_label("lost") == "lost" and state_label("tracking") == "tracking"
    staged = TrackedFrame(0, 0.0, frame.image, (), {"detect": 1.0, "infer": 2.0, "total": 3.25})
    assert "tracker 3.2 ms" in "\n".join(info_lines(staged))  # "total" is not added to its own stages


def test_render_comparison_draws_both_shapes():
    img = np.zeros((240, 240, 3), np.uint8)
    gt = mean_shape().astype(np.float32) * 0.8 + 110
    out = render_comparison(img, gt, gt + 20)
    x, y = np.round(gt[30] + 20).astype(int)
    assert tuple(out[y, x]) == PRED_COLOR
    assert not img.any()


def test_list_cameras_probes_indices_and_keeps_those_that_open(monkeypatch):
    import facetrack.gui.sources as sources

    opened = []

    class FakeCapture:
        def __init__(self, index):
            self.index = index

        def isOpened(self):  # noqa: N802 - OpenCV name
            return self.index in (1, 3)

        def release(self):
            opened.append(self.index)

    monkeypatch.setattr(sources.sys, "platform", "win32")
    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCapture)
    assert sources.list_cameras(max_index=4) == [1, 3]
    assert opened == [0, 1, 2, 3]  # every probe is released
    monkeypatch.setattr(sources.sys, "platform", "linux")
    monkeypatch.setattr(sources.glob, "glob", lambda pattern: ["/dev/video3", "/dev/video0", "/dev/video-meta"])
    assert sources.list_cameras() == [3]  # only /dev/video* nodes are tried on Linux


def test_caption_scales_with_the_frame_width():
    from facetrack.gui.overlay import draw_caption

    def text_height(width):
        out = draw_caption(np.zeros((400, width, 3), np.uint8), [("ground truth", (0, 255, 0))])
        rows = np.flatnonzero(out[:, :, 1].max(1) > 0)
        return rows.max() - rows.min()

    assert text_height(2400) > 3 * text_height(600)
