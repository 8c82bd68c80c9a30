"""``facetrack train ARCH --config KEY=VALUE ...``: parsing, validation, and a non-default
configuration carried from training through the checkpoint and the ONNX export to the tracker."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.train.models.registry import (ConfigOverrideError, config_for, config_to_dict, overrides_of, parse_overrides,
                                    with_overrides)


def test_values_are_typed_by_the_dataclass_fields() -> None:
    mdm = config_for("mdm-rt")
    got = parse_overrides(mdm, ["hidden_size=256", "conv_channels=16, 32", "patch_px=25.5", "grad_through_sampling=true",
                                "skip_from=conv1", "reduce_channels=0"])
    assert got == {"hidden_size": 256, "conv_channels": (16, 32), "patch_px": 25.5, "grad_through_sampling": True,
                   "skip_from": "conv1", "reduce_channels": 0}
    assert type(got["patch_px"]) is float and type(got["hidden_size"]) is int
    aan = with_overrides(config_for("aan"), ["block_channels=32,64,96,128", "input_size=96", "attention=relu-sigmoid"])
    assert aan.block_channels == (32, 64, 96, 128) and aan.input_size == 96 and aan.attention == "relu-sigmoid"
    assert overrides_of(aan) == {"block_channels": [32, 64, 96, 128], "input_size": 96, "attention": "relu-sigmoid"}


def test_no_items_keep_the_named_configuration_and_the_shipped_defaults_do_not_change() -> None:
    before = {a: config_to_dict(config_for(a)) for a in ("mdm-rt", "aan", "mdm")}
    assert with_overrides(config_for("mdm-rt"), []) is config_for("mdm-rt")
    changed = with_overrides(config_for("mdm-rt"), ["hidden_size=64"])
    assert changed.hidden_size == 64 and config_for("mdm-rt").hidden_size == 512
    assert {a: config_to_dict(config_for(a)) for a in before} == before
    assert overrides_of(config_for("aan")) == {}


@pytest.mark.parametrize("arch, items, says", [
    ("mdm-rt", ["hidden=3"], "mdm-rt has no field 'hidden'"),
    ("mdm-rt", ["hidden_size"], "expected KEY=VALUE"),
    ("mdm-rt", ["=3"], "expected KEY=VALUE"),
    ("mdm-rt", ["hidden_size=abc"], "hidden_size takes an integer, got 'abc'"),
    ("mdm-rt", ["hidden_size=2.5"], "takes an integer"),
    ("mdm-rt", ["hidden_size=0"], "hidden_size must be > 0"),
    ("mdm-rt", ["reduce_channels=-1"], "reduce_channels must be >= 0"),
    ("mdm-rt", ["patch_px=nan"], "finite number"),
    ("mdm-rt", ["conv_channels=16"], "conv_channels takes 2 comma-separated values"),
    ("mdm-rt", ["conv_channels=16,x"], "takes an integer"),
    ("mdm-rt", ["grad_through_sampling=maybe"], "takes true or false"),
    ("mdm-rt", ["arch=aan"], "arch cannot be changed"),
    ("mdm-rt", ["n_points=5"], "n_points cannot be changed"),
    ("mdm-rt", ["steps=2", "steps=3"], "steps given twice"),
    ("mdm-rt", ["patch_samples=5"], "too small for two valid 3x3 convs"),  # the config class's own check
    ("mdm-rt", ["skip_from=conv3"], "skip_from must be"),
    ("aan", ["block_channels=8,16,32"], "block_channels takes 4 comma-separated values"),
    ("aan", ["input_size=16"], "too small"),
    ("aan", ["hidden_size=256"], "aan has no field 'hidden_size'"),
])
def test_bad_items_are_one_line_naming_the_problem(arch: str, items: list[str], says: str) -> None:
    with pytest.raises(ConfigOverrideError) as e:
        with_overrides(config_for(arch), items)
    msg = str(e.value)
    assert says in msg and "\n" not in msg


def test_cli_refuses_a_bad_config_with_one_line_and_exit_2(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facetrack.cli.main import main

    out = tmp_path / "run"
    rc = main(["train", "mdm-rt", "--data", "images68", "--data-root", str(data_dir), "--out", str(out),
               "--config", "hidden_size=256", "conv_channels=16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--config 'conv_channels=16': conv_channels takes 2 comma-separated values" in err[0]
    assert not out.exists()  # nothing started
    rc = main(["train", "aan", "--data", "images68", "--data-root", str(data_dir), "--out", str(out), "--config", "widths=3"])
    assert rc == 2 and "aan has no field 'widths'" in capsys.readouterr().err


TINY = {"mdm-rt": ("hidden_size=32", "conv_channels=4,8", "patch_samples=10", "steps=2"),
        "aan": ("input_size=64", "block_channels=8,16,16,32", "embed_dim=32", "stem_channels=8")}


@pytest.mark.parametrize("arch", ["mdm-rt", "aan"])
def test_a_non_default_config_trains_exports_and_runs_in_the_tracker(data_dir: Path, tmp_path: Path, arch: str) -> None:
    """Round trip: 2 training steps of a tiny configuration (given as on the command line, the
    second ``--config`` extending the first), export of its best checkpoint, ONNX metadata,
    ONNX Runtime engine and a fit through the tracker's Landmarker."""
    from facetrack.cli.main import main
    from facetrack.engines import names
    from facetrack.engines.onnxrt import OnnxRuntimeBackend
    from facetrack.tracker.geometry import box_of
    from facetrack.io.landmarks import read_pts
    from facetrack.tracker.landmarker import TIGHT_BOX, Landmarker
    from facetrack.train.models.checkpoint import load_checkpoint
    from facetrack.train.export.to_onnx import export_onnx

    items = TINY[arch]
    expected = with_overrides(config_for(arch), items)
    out = tmp_path / arch
    rc = main(["train", arch, "--data", "images68", "--data-root", str(data_dir), "--out", str(out), "--steps", "2", "--batch", "4",
               "--val-every", "2", "--threads", "1", "--workers", "0", "--limit-images", "4", "--quiet",
               "--config", *items[:2], "--config", *items[2:]])
    assert rc == 0
    assert json.loads((out / "config.json").read_text()) == config_to_dict(expected)
    ck = load_checkpoint(out / "best.pt")
    assert ck.config == config_to_dict(expected) and ck.step == 2
    assert ck.build_model().config == expected
    record = json.loads((out / "record.json").read_text())
    assert record["options"]["config"] == list(items)

    onnx_path = export_onnx(out / "best.pt", tmp_path / f"{arch}.onnx")
    backend = OnnxRuntimeBackend(onnx_path)
    meta = backend.metadata
    assert json.loads(meta[names.CONFIG]) == config_to_dict(expected)
    assert backend.input_size == expected.input_size and backend.arch == arch
    assert json.loads(meta[names.TRAINING])["step"] == 2
    if arch == "mdm-rt":
        assert backend.hidden_size == 32 and backend.steps == 2

    path = data_dir / "images68" / "lfpw_test" / "image_0001.png"
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    gt = read_pts(path.with_suffix(".pts"))
    fit = Landmarker(onnx_path, backend="onnxruntime").fit_box(gray, box_of(gt), calibration=TIGHT_BOX)
    assert fit.landmarks.shape == (68, 2) and np.isfinite(fit.landmarks).all()
    # two steps from the template: the fit is near the face, not yet on it
    eye = np.linalg.norm(gt[36] - gt[45])
    assert np.linalg.norm(fit.landmarks - gt, axis=1).mean() < eye


def test_resume_and_warm_start_refuse_another_config(data_dir: Path, tmp_path: Path) -> None:
    from facetrack.train.data.augment import NO_AUGMENT
    from facetrack.train.loops.trainer import TrainOptions, train

    opts = TrainOptions(arch="mdm-rt", data=str(data_dir), out=str(tmp_path / "a"), steps=2, batch=4, val_every=2, threads=1,
                        limit_images=4, warmup=1, val_variants=2, progress=False, augment=NO_AUGMENT, config=TINY["mdm-rt"])
    train(opts)
    from dataclasses import replace

    with pytest.raises(ValueError, match="architecture differs"):  # --resume without the run's --config
        train(replace(opts, resume=True, config=()))
    with pytest.raises(ValueError, match="--config hidden_size=16 differs from the checkpoint's configuration"):
        train(replace(opts, out=str(tmp_path / "b"), init_from=str(tmp_path / "a" / "last.pt"), config=("hidden_size=16",)))
    # same --config: the warm start is accepted and keeps the configuration
    train(replace(opts, out=str(tmp_path / "c"), init_from=str(tmp_path / "a" / "last.pt")))
    from facetrack.train.models.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "c" / "best.pt").config == config_to_dict(with_overrides(config_for("mdm-rt"), TINY["mdm-rt"]))
