"""``facetrack gui``: the desktop app (PySide6).

``facetrack gui [VIDEO | --camera N] [--model mdm-rt|aan|aan+mdm|PATH]`` opens the window;
``--screenshot DIR`` saves ``live.png`` (and ``300vw.png`` with ``--300vw-root``) once there is
something to see, then quits (used by ``scripts/screenshot_gui.sh``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facetrack gui`` (no Qt import here: ``--help`` works without PySide6)."""
    parser.add_argument("video", nargs="?", type=Path, help="video file to open at start")
    parser.add_argument("--camera", type=int, metavar="N", help="open camera N at start")
    parser.add_argument("--model", default="aan+mdm", help="aan+mdm (the default, as in the CLI) | mdm-rt | aan | PATH to an exported .onnx")
    parser.add_argument("--backend", default="auto", help="auto | onnxruntime | onnxruntime-cuda | torch | tensorrt")
    parser.add_argument("--smooth", nargs="?", const="on", choices=("on", "off"), default="on",
                        help="start with landmark smoothing on (the default) or off")
    parser.add_argument("--flip", action="store_true", help="start with mirror-averaging on (twice the model's CPU)")
    parser.add_argument("--300vw-root", dest="vw_root", type=Path, help="300VW root to put in the 300VW tab")
    parser.add_argument("--300vw-category", dest="vw_categories", type=int, nargs="+", choices=(1, 2, 3),
                        help="categories ticked in the 300VW tab (default: 1 2 3)")
    parser.add_argument("--300vw-videos", dest="vw_videos", nargs="+", metavar="ID", help="only these video ids")
    parser.add_argument("--300vw-mode", dest="vw_mode", choices=("track", "gt-box", "detector"), default="track")
    parser.add_argument("--300vw-run", dest="vw_run", action="store_true", help="start the 300VW evaluation at once")
    parser.add_argument("--screenshot", type=Path, metavar="DIR",
                        help="save window screenshots (live.png, 300vw.png) into DIR, then quit")
    parser.add_argument("--screenshot-frames", type=int, default=30, metavar="N",
                        help="frames to show before the live screenshot (default: 30)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="with --screenshot: give up after S seconds (default: 120)")


def run(args: argparse.Namespace) -> int:
    """Open the window; returns the exit code (2 when PySide6 is missing)."""
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError as e:
        print(f"facetrack gui: PySide6 is not installed ({e}); pip install 'facetrack[gui]'", file=sys.stderr)
        return 2
    from facetrack.gui.compat import binding_problem
    from facetrack.gui.main_window import MainWindow
    from facetrack.gui.platform import platform_problem

    app = QApplication.instance()
    if app is None:
        problem = platform_problem()  # Qt would abort the process (exit 134) in QApplication()
        if problem:
            print(f"facetrack gui: {problem}", file=sys.stderr)
            return 2
        app = QApplication(sys.argv[:1])
    win = MainWindow(model=args.model, backend=args.backend)
    _route_exceptions_to(win)
    problem = binding_problem()
    if problem:
        log.warning("%s", problem)
        win.live.show_message(problem)
    win.live.smooth.setChecked(args.smooth != "off")
    if args.flip:
        win.live.flip.setChecked(True)
    ev = win.evaluation
    if args.vw_root is not None:
        ev.root_edit.setText(str(args.vw_root))
    if args.vw_categories:
        for c, box in ev.cat_boxes.items():
            box.setChecked(c in args.vw_categories)
    if args.vw_videos:
        ev.videos_edit.setText(" ".join(args.vw_videos))
    ev.mode_box.setCurrentText(args.vw_mode)
    ev.model_box.setCurrentText(args.model)
    win.show()
    if args.video is not None:
        win.live.open_file(str(args.video))
    elif args.camera is not None:
        win.live.open_camera(args.camera)
    if args.vw_run and args.vw_root is not None and args.screenshot is None:
        ev.start()
    if args.screenshot is not None:
        shooter = _Screenshotter(win, args)
        shooter.start()
    code = app.exec()
    win.shutdown()
    if args.screenshot is not None:
        return 0 if shooter.ok else 1
    return int(code)


def _route_exceptions_to(win) -> None:
    """An exception escaping a slot is logged and shown in the status bar; the app goes on
    (never a Python traceback dialog, never a crash)."""
    import traceback

    def hook(kind, value, tb) -> None:
        log.error("unexpected error: %s", "".join(traceback.format_exception(kind, value, tb)))
        try:
            win.statusBar().showMessage(f"unexpected error: {kind.__name__}: {value}")
        except RuntimeError:  # window already gone
            pass

    sys.excepthook = hook


class _Screenshotter:
    """Drives ``--screenshot``: waits for frames, grabs the live tab, then runs the 300VW tab
    (if a root was given), plays its first video row and grabs that, then quits."""

    def __init__(self, win, args: argparse.Namespace) -> None:
        from PySide6.QtCore import QElapsedTimer, QTimer

        self.win, self.args = win, args
        self.out = Path(args.screenshot)
        self.out.mkdir(parents=True, exist_ok=True)
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.timeout.connect(self._poll)
        self.stage = "live"
        self.ok = True
        self.done_at: float | None = None

    def start(self) -> None:
        self.clock.start()
        self.timer.start(100)

    def _grab(self, name: str) -> None:
        path = self.out / name
        if not self.win.grab().save(str(path)):
            log.error("could not save %s", path)
            self.ok = False
        else:
            log.info("screenshot %s", path)

    def _poll(self) -> None:
        from PySide6.QtWidgets import QApplication

        live, ev = self.win.live, self.win.evaluation
        timed_out = self.clock.elapsed() > self.args.timeout * 1000
        if self.stage == "live":
            if live.frames_shown >= self.args.screenshot_frames or (timed_out and live.frames_shown) or \
                    (self.args.video is None and self.args.camera is None) or (timed_out and live.message_label.text()):
                self._grab("live.png")
                if self.args.vw_root is None:
                    QApplication.quit()
                    return
                self.win.pipeline.pause()
                self.win.tabs.setCurrentWidget(ev)
                if not ev.start():
                    self.ok = False
                    self._grab("300vw.png")
                    QApplication.quit()
                    return
                self.stage = "300vw"
            elif timed_out:
                log.error("no frame shown within %.0f s", self.args.timeout)
                self.ok = False
                QApplication.quit()
        elif self.stage == "300vw":
            if not ev.running():
                if ev.outcome is not None and ev.video_table.rowCount():
                    ev.video_table.selectRow(0)
                    ev.play_video(ev.video_table.item(0, 1).text())
                    ev.player.show_frame(min(ev.player.slider.maximum(), 2))
                else:
                    self.ok = False
                self.stage = "settle"
                self.done_at = self.clock.elapsed()
            elif timed_out:
                ev.cancel()
        elif self.stage == "settle" and self.clock.elapsed() - (self.done_at or 0) > 500:
            self._grab("300vw.png")
            QApplication.quit()
