"""int8 weights for the CPU: made from the shipped model, run in its place only while current."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from facetrack.engines import names
from facetrack.engines.onnxrt import OnnxRuntimeBackend, int8_path, int8_variant
from facetrack.tracker.models import shipped_path
from facetrack.train.data.datasets import load_images68
from facetrack.train.export.quantize import compare, quantize


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the shipped float32 mdm-rt and its int8 variant beside it."""
    d = tmp_path_factory.mktemp("int8")
    fp32 = Path(shutil.copy(shipped_path("mdm-rt"), d / "mdm-rt.onnx"))
    return fp32, quantize(fp32)


def test_the_variant_lies_beside_the_model_with_its_facts(pair) -> None:
    fp32, q = pair
    assert q == int8_path(fp32) == fp32.with_name("mdm-rt.int8.onnx") and int8_variant(fp32) == q
    assert int8_variant(q) is None  # an int8 file has no variant of its own
    assert q.stat().st_size < 0.4 * fp32.stat().st_size  # the recurrent layer's weights dominate the file
    a, b = OnnxRuntimeBackend(fp32, int8=False), OnnxRuntimeBackend(q)
    for key in (*names.REQUIRED_KEYS, names.MEAN_SHAPE, names.TRAINING):
        assert b.metadata[key] == a.metadata[key], key
    assert b.metadata[names.CHECKSUM] != a.metadata[names.CHECKSUM]


def test_cpu_runs_the_current_variant_and_ignores_a_stale_one(pair, tmp_path, caplog) -> None:
    fp32, q = pair
    assert OnnxRuntimeBackend(fp32).file == q
    assert OnnxRuntimeBackend(fp32, int8=False).file == fp32
    # the float32 file changes (a new export): its old variant must not stand in for it
    stale_dir = tmp_path / "stale"
    stale_dir.mkdir()
    new = Path(shutil.copy(fp32, stale_dir / "mdm-rt.onnx"))
    shutil.copy(q, int8_path(new))
    from facetrack.train.export.ship import set_training_record

    set_training_record(new, {"note": "retrained"})
    with caplog.at_level(logging.WARNING, logger="facetrack.engines.onnxrt"):
        b = OnnxRuntimeBackend(new)
    assert b.file == new
    assert "not made from mdm-rt.onnx as it is now" in caplog.text
    # a variant that is not an ONNX model at all: the float32 model still runs
    int8_path(new).write_bytes(b"\x00broken")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="facetrack.engines.onnxrt"):
        assert OnnxRuntimeBackend(new).file == new
    assert "mdm-rt.int8.onnx: not a loadable ONNX model" in caplog.text


def test_int8_fits_real_faces_as_the_float32_model_does(pair, data_dir) -> None:
    fp32, q = pair
    faces = load_images68(data_dir, "common")
    fig = compare(fp32, q, faces)
    # measured on the 8 common faces (shipped weights of 0725b8a): the int8 landmarks move 0.25 % of
    # the eye distance on average, 0.38 % at most; NME 4.255 against 4.264 %. A broken
    # quantization moves them by tens of percent
    assert fig["faces"] == 8 and fig["max_change_pct"] < 1.5, fig
    assert abs(fig["nme_int8_pct"] - fig["nme_fp32_pct"]) < 0.15, fig
    # and the two runtimes are not the same computation (the variant really runs)
    assert fig["mean_change_pct"] > 1e-4, fig


def test_shipped_int8_variants_are_current() -> None:
    """A shipped ``NAME.int8.onnx`` must be made from the shipped ``NAME.onnx`` as it is: the CPU
    runtime would otherwise fall back to float32 (with a warning) on every start."""
    for name in ("mdm-rt", "aan"):
        p = shipped_path(name)
        if int8_variant(p) is not None:
            assert OnnxRuntimeBackend(p).file == int8_path(p), name


def test_ship_judges_the_variant_on_the_checkpoints_validation_faces(data_dir, tmp_path) -> None:
    """``ship_int8`` rebuilds the checkpoint's held-out faces from its recorded sources and seed
    (checked against the split it stored), compares both files there, and keeps the variant
    only within the tolerance; a checkpoint without recorded sources is refused in one line."""
    from facetrack.train.data.augment import NO_AUGMENT
    from facetrack.train.models.checkpoint import load_checkpoint, save_checkpoint
    from facetrack.train.export.to_onnx import export_onnx
    from facetrack.train.export.quantize import validation_faces
    from facetrack.train.export.ship import ship_int8
    from facetrack.train.loops.trainer import TrainOptions, train

    opts = TrainOptions(arch="mdm-rt", data=str(data_dir), out=str(tmp_path / "run"), sources=("images68:1",), steps=2, batch=4,
                        val_every=2, threads=1, warmup=1, val_variants=2, progress=False, augment=NO_AUGMENT,
                        config=("hidden_size=32", "conv_channels=4,8", "patch_samples=10"))
    train(opts)
    ck = tmp_path / "run" / "best.pt"
    faces = validation_faces(ck, data_dir)
    stored = load_checkpoint(ck).meta["split"]
    assert len(faces) == stored["val_faces"] > 0
    assert sorted({Path(f.image).name for f in faces}) == sorted(stored["val_images"])
    model = export_onnx(ck, tmp_path / "w" / "mdm-rt.onnx")
    kept = ship_int8(model, ck, data_dir, tolerance=10.0)  # two steps from scratch: any sane variant passes
    assert kept["kept"] and kept["faces"] == len(faces) and int8_path(model).is_file()
    meta = OnnxRuntimeBackend(model).metadata
    assert '"validation"' in meta["facetrack.int8.quantization"]
    refused = ship_int8(model, ck, data_dir, tolerance=-1.0)  # no variant can be 100 % better
    assert not refused["kept"] and not int8_path(model).exists()
    bare = load_checkpoint(ck)
    save_checkpoint(tmp_path / "bare.pt", bare.state_dict, bare.config, arch="mdm-rt")
    with pytest.raises(ValueError, match="no data sources recorded"):
        validation_faces(tmp_path / "bare.pt", data_dir)
