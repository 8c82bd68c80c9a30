"""Build a tiny 300VW root from the real sample frames in the shared data, for demos and the
GUI screenshot script: ``OUT/401/vid.avi`` (MJPG) + ``annot/000001.pts`` ... (renumbered 1..N).

usage: python scripts/make_300vw_clip.py DATA_DIR OUT_ROOT [VIDEO_ID]
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2


def make_clip(data_dir: Path, out_root: Path, video_id: str = "401", repeat: int = 1) -> Path:
    """Write the clip; returns ``out_root``. Frames are the sample JPEGs in order, each
    written ``repeat`` times (with its annotation copied) so playback has something to show."""
    src = data_dir / "300vw_samples" / video_id
    frames = sorted((src / "imgs").glob("*.jpg"))
    if not frames:
        raise SystemExit(f"{src / 'imgs'}: no JPEG frames")
    dst = out_root / video_id
    (dst / "annot").mkdir(parents=True, exist_ok=True)
    first = cv2.imread(str(frames[0]))
    if first is None:
        raise SystemExit(f"{frames[0]}: cannot read")
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(dst / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"{dst / 'vid.avi'}: cannot open a video writer")
    n = 0
    for f in frames:
        img = cv2.imread(str(f))
        for _ in range(repeat):
            n += 1
            writer.write(img)
            shutil.copy(src / "annot" / f"{f.stem}.pts", dst / "annot" / f"{n:06d}.pts")
    writer.release()
    return out_root


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(make_clip(Path(sys.argv[1]), Path(sys.argv[2]), *(sys.argv[3:4] or ["401"])))
