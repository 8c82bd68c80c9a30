#!/usr/bin/env bash
# Screenshots of the desktop app in a real X server (Xvfb), for the README and reviews.
#
#   scripts/screenshot_gui.sh OUT_DIR [VIDEO] [MODEL] [300VW_MODE]
#
# Starts Xvfb on :99 (unless $DISPLAY is already set), opens VIDEO (default: the selfie clip
# of the shared data) in the app with MODEL (default mdm-rt) on Qt's xcb platform, and writes:
#   OUT_DIR/live.png     the live tab after 30 tracked frames (in-app QWidget.grab)
#   OUT_DIR/300vw.png    the 300VW tab after evaluating a 2-frame clip built from the real
#                        300VW samples (video 401) in 300VW_MODE (default gt-box), its first
#                        video row playing
#   OUT_DIR/desktop.png  the whole X screen while the app runs (imagemagick `import`, if installed)
# Needs: apt-get install xvfb libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-cursor0 imagemagick
# Environment: PYTHON (default: .venv/bin/python if present, else python3), FACETRACK_DATA
# (default: ../shared/data next to the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/screenshot_gui.sh OUT_DIR [VIDEO] [MODEL] [300VW_MODE]}
DATA=${FACETRACK_DATA:-$(cd .. && pwd)/shared/data}
VIDEO=${2:-$DATA/videos_unlabelled/sbr_demo_selfie.mp4}
MODEL=${3:-mdm-rt}
VW_MODE=${4:-gt-box}  # gt-box | track | detector
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d)
XVFB_PID=""
cleanup() {
  if [[ -n "$XVFB_PID" ]]; then kill "$XVFB_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

if [[ -z "${DISPLAY:-}" ]]; then
  command -v Xvfb >/dev/null || { echo "screenshot_gui: Xvfb not installed (apt-get install xvfb)" >&2; exit 2; }
  Xvfb :99 -screen 0 1280x800x24 -nolisten tcp >"$TMP/xvfb.log" 2>&1 &
  XVFB_PID=$!
  export DISPLAY=:99
  for _ in $(seq 50); do [[ -e /tmp/.X11-unix/X99 ]] && break; sleep 0.1; done
fi
export QT_QPA_PLATFORM=xcb  # a real window, not offscreen: fail loudly if xcb cannot load

"$PY" scripts/make_300vw_clip.py "$DATA" "$TMP/300vw" 401 >/dev/null

PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$PY" -m facetrack.cli.main gui "$VIDEO" --model "$MODEL" \
  --300vw-root "$TMP/300vw" --300vw-category 1 --300vw-mode "$VW_MODE" \
  --screenshot "$OUT" --screenshot-frames 30 --timeout 120 &
APP=$!
if command -v import >/dev/null; then
  # the whole X screen once the live screenshot exists (the window is up and tracking)
  for _ in $(seq 600); do [[ -e "$OUT/live.png" ]] && break; kill -0 "$APP" 2>/dev/null || break; sleep 0.2; done
  [[ -e "$OUT/live.png" ]] && import -window root "$OUT/desktop.png" || true
fi
rc=0
wait "$APP" || rc=$?
ls -l "$OUT"/*.png
exit "$rc"
