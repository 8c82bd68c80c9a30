"""A compact copy of the named training sources, for a machine the data must travel to.

    python -m facetrack.train.data.compact_data ../shared/data .gpu/data [--quality 75]

A lent GPU machine receives the repository and at most 64 MiB beside it; ``images68``,
``pseudo_dlib`` and ``pseudo_v2`` take 72 MB. The copy keeps the layout, the file names and every
``.pts``, box and manifest byte for byte, so :func:`facetrack.train.data.sources.load_sources` makes
the same seeded group split from it (``--init-from`` checks); only the teacher-labelled sets'
JPEGs are decoded and encoded again at ``--quality`` (their geometry is untouched). At 75 the
three sources take 40 MB, and the re-encoded pictures lie about 41 dB PSNR from the stored ones.
``images68`` keeps only its training subsets (and their 300-W boxes): test faces never travel.
Checkpoints to warm-start from travel slimmed by :func:`facetrack.train.models.checkpoint.slim_checkpoint`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from facetrack.train.data.datasets import BOX_FOLDERS, SPLITS

TEACHER_SETS = ("pseudo_dlib", "pseudo_v2")


def _reencode(src: Path, dst: Path, quality: int) -> None:
    import cv2

    for p in sorted(src.rglob("*")):
        if p.is_dir():
            continue
        out = dst / p.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix.lower() not in (".jpg", ".jpeg"):
            shutil.copy2(p, out)
            continue
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{p}: cannot decode this JPEG")
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise ValueError(f"{p}: cannot encode it again as JPEG")
        out.write_bytes(buf.tobytes())


def compact_copy(root: Path, out: Path, quality: int = 75) -> int:
    """Write the compact copy of ``root`` (the shared data folder) into ``out`` (replaced);
    returns its size in bytes."""
    root, out = Path(root), Path(out)
    if not (root / "images68").is_dir():
        raise FileNotFoundError(f"{root}: not the shared data folder (no images68/)")
    if not 1 <= quality <= 100:
        raise ValueError(f"--quality {quality}: expected 1-100")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(root / "manifest_images68.csv", out)
    for subset in sorted(SPLITS["train"]):
        shutil.copytree(root / "images68" / subset, out / "images68" / subset)
        folder = BOX_FOLDERS.get(subset)
        if folder is None:
            continue
        for pts in (out / "images68" / subset).glob("*.pts"):
            box = root / "bboxes" / "mdm_bbs" / folder / pts.name
            if box.exists():
                (out / box.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(box, out / box.relative_to(root))
    for name in TEACHER_SETS:
        _reencode(root / name, out / name, quality)
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facetrack.train.data.compact_data", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="the shared data folder")
    ap.add_argument("out", type=Path, help="folder for the copy (replaced)")
    ap.add_argument("--quality", type=int, default=75, help="JPEG quality of the teacher sets' pictures (default 75)")
    args = ap.parse_args(argv)
    try:
        size = compact_copy(args.root, args.out, args.quality)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"compact_data: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
