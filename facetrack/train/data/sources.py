"""Training data sources named on the command line (``facetrack train --data SOURCE[:WEIGHT] ...``).

A source is one of:

- ``images68``, ``pseudo_dlib``, ``pseudo_v2``: the folders of that name in the shared data
  folder (``--data-root``): the human-labelled 300-W style pool (its ``train`` split only:
  test faces are never trained on), and two sets of teacher labels;
- ``300w=DIR`` (optionally ``300w=DIR,boxes=BOXDIR``): a user's 300-W style folder, images with
  a ``.pts`` beside them (:class:`facetrack.train.data.datasets.PtsImageDataset`), human labels;
- ``300vw=DIR``: a 300VW tree (``<DIR>/<video>/vid.avi`` + ``annot/``), every 10th annotated frame;
- a path to the shared data folder itself: ``images68`` + ``pseudo_dlib`` (the default mix of
  earlier versions).

``:WEIGHT`` is the sampling weight of one face of that source relative to the others (default
:data:`DEFAULT_WEIGHTS`: human labels 2, teacher labels 1). Validation holds out whole groups:
images (and the 300W-LP renders of an AFW picture) of the human pool, whole videos or photo
folders of ``pseudo_v2`` and 300VW, whole images of a user's folder; ``pseudo_dlib`` never
validates (one picture each, teacher labels). Torch-free.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from facetrack.train.data.datasets import (
    HUMAN,
    FaceSample,
    PtsImageDataset,
    Video300VWDataset,
    load_images68,
    load_pseudo_dlib,
    load_pseudo_v2,
    split_groups,
    split_train_val,
)

log = logging.getLogger(__name__)

NAMED = ("images68", "pseudo_dlib", "pseudo_v2")
DEFAULT_WEIGHTS = {"images68": 2.0, "pseudo_dlib": 1.0, "pseudo_v2": 1.0, "300w": 2.0, "300vw": 2.0}


class SourceError(ValueError):
    """A ``--data`` item that cannot be used; one line naming it."""


@dataclass(frozen=True)
class Source:
    """One parsed ``--data`` item: ``kind`` (``images68``, ``pseudo_dlib``, ``pseudo_v2``,
    ``300w``, ``300vw``), ``path`` (its folder), ``weight`` (per face), ``boxes`` (300w only)."""

    kind: str
    path: Path
    weight: float
    boxes: Path | None = None

    @property
    def name(self) -> str:
        return self.kind if self.kind in NAMED else f"{self.kind}={self.path}"


def parse_sources(items: Iterable[str], root: Path | None) -> list[Source]:
    """Parse ``--data`` items (see the module docstring); ``root``: the shared data folder."""
    out: list[Source] = []
    for text in items:
        body, weight = text, None
        head, sep, tail = text.rpartition(":")
        if sep:
            try:
                weight = float(tail)
                body = head
            except ValueError:
                pass
        if weight is not None and not weight > 0:
            raise SourceError(f"--data {text}: the weight must be > 0")
        if body in NAMED:
            if root is None:
                raise SourceError(f"--data {text}: a named source needs --data-root (the shared data folder)")
            out.append(Source(body, root / body, weight if weight is not None else DEFAULT_WEIGHTS[body]))
            continue
        kind, eq, rest = body.partition("=")
        if eq and kind in ("300w", "300vw"):
            parts = rest.split(",")
            path, boxes = Path(parts[0]), None
            for extra in parts[1:]:
                k, _, v = extra.partition("=")
                if k != "boxes" or kind != "300w":
                    raise SourceError(f"--data {text}: unknown option {extra!r} (300w=DIR,boxes=BOXDIR)")
                boxes = Path(v)
            if not path.is_dir():
                raise SourceError(f"--data {text}: {path} is not a folder")
            if boxes is not None and not boxes.is_dir():
                raise SourceError(f"--data {text}: {boxes} is not a folder")
            out.append(Source(kind, path, weight if weight is not None else DEFAULT_WEIGHTS[kind], boxes))
            continue
        p = Path(body)
        if (p / "images68").is_dir():  # the shared data folder: the default mix
            w = weight if weight is not None else DEFAULT_WEIGHTS["images68"]
            out += [Source("images68", p / "images68", w), Source("pseudo_dlib", p / "pseudo_dlib", DEFAULT_WEIGHTS["pseudo_dlib"])]
            continue
        if p.is_dir():
            raise SourceError(f"--data {text}: no images68/ folder in it (not the shared data folder); a 300-W style folder is 300w={text}")
        raise SourceError(f"--data {text}: not a source (images68, pseudo_dlib, pseudo_v2, 300w=DIR, 300vw=DIR, or the shared data folder)")
    if not out:
        raise SourceError("--data: no source given")
    kinds = [s.name for s in out]
    if len(set(kinds)) != len(kinds):
        raise SourceError(f"--data: a source is named twice ({', '.join(kinds)})")
    return out


@dataclass
class SplitData:
    """Training and validation faces with each training face's sampling weight."""

    train: list[FaceSample]
    val: list[FaceSample]
    weights: list[float]

    def split_record(self) -> dict[str, object]:
        """What identifies the split (stored in checkpoints): the validation images and groups,
        and a digest of the validation keys."""
        return split_record(self.val)


def split_record(val: list[FaceSample]) -> dict[str, object]:
    """``{"val_images": [...], "val_groups": [...], "val_faces": n, "digest": sha256}`` of a validation set."""
    images = sorted({Path(s.image).name for s in val if not s.group})
    groups = sorted({s.group for s in val if s.group})
    digest = hashlib.sha256(json.dumps([images, groups]).encode()).hexdigest()
    return {"val_images": images, "val_groups": groups, "val_faces": len(val), "digest": digest}


def same_split(stored: dict[str, object] | None, current: dict[str, object]) -> bool:
    """Whether a checkpoint's split (its ``split`` record, or the ``data`` record of the
    trainer at commit 1d2eaef, which holds ``val_images`` and ``val_groups``) is ``current``."""
    if not stored or "val_images" not in stored:
        return False
    return sorted(stored.get("val_images", [])) == current["val_images"] and sorted(stored.get("val_groups", [])) == current["val_groups"]


def load_sources(sources: list[Source], seed: int = 0, val_fraction: float = 0.1, val_groups_fraction: float = 0.06,
                 limit_images: int = 0) -> SplitData:
    """Load every source and split it (seeded, by group). ``limit_images``: keep only the first
    N training faces of the first source (overfit checks)."""
    train: list[FaceSample] = []
    val: list[FaceSample] = []
    weights: list[float] = []
    for k, src in enumerate(sources):
        if src.kind == "images68":
            tr, va = split_train_val(load_images68(src.path.parent, "train"), val_fraction, seed)
        elif src.kind == "pseudo_dlib":
            tr, va = load_pseudo_dlib(src.path.parent), []
        elif src.kind == "pseudo_v2":
            tr, va = split_groups(load_pseudo_v2(src.path.parent), val_groups_fraction, seed)
        elif src.kind == "300w":
            ds = PtsImageDataset(src.path, src.boxes)
            tr, va = split_train_val([ds.sample(i) for i in range(len(ds))], val_fraction, seed)
        elif src.kind == "300vw":
            vds = Video300VWDataset(src.path, step=10)
            faces = [FaceSample(v.video_path, v.annotation(n), None, "300vw", "train", HUMAN, frame=n, group=f"300vw/{v.video_id}")
                     for v in vds.videos for n in vds.wanted_frames(v)]
            tr, va = split_groups(faces, val_groups_fraction * 2, seed)
        else:  # parse_sources makes no other kind
            raise SourceError(f"unknown source kind {src.kind!r}")
        if limit_images and k == 0:
            tr = tr[:limit_images]
        elif limit_images:
            tr = []
        if not tr and not limit_images:
            raise SourceError(f"--data {src.name}: no training faces found")
        train += tr
        val += va
        weights += [src.weight] * len(tr)
        log.info("%s: %d training faces, %d validation faces (weight %g)", src.name, len(tr), len(va), src.weight)
    return SplitData(train, val, weights)


__all__ = ["Source", "SourceError", "SplitData", "parse_sources", "load_sources", "split_record", "same_split", "DEFAULT_WEIGHTS", "NAMED"]
