"""Warm starts from exported models: ``facetrack train ARCH --init-from MODEL.onnx``."""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx (the [train] extra) reads the exported weights")

from facetrack.train.data.augment import NO_AUGMENT  # noqa: E402
from facetrack.train.models.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from facetrack.train.export.to_onnx import export_onnx  # noqa: E402
from facetrack.train.export.from_onnx import checkpoint_from_onnx, load_init, recalibrate_norms  # noqa: E402
from facetrack.train.models.registry import build_model, with_overrides, config_for  # noqa: E402
from facetrack.train.loops.trainer import TrainOptions, train  # noqa: E402

WEIGHTS = Path(__file__).parents[3] / "facetrack" / "tracker" / "weights"
SMALL = {"aan": ("stem_channels=8", "block_channels=16,16,24,24", "embed_dim=32"),
         "mdm-rt": ("hidden_size=32", "conv_channels=4,8")}


def _trained_looking(arch: str, seed: int = 0) -> torch.nn.Module:
    """A small model whose batch norms hold non-trivial statistics and affine terms, as a
    trained one does (folding them into the convolutions then changes every weight)."""
    torch.manual_seed(seed)
    model = build_model(with_overrides(config_for(arch), list(SMALL[arch])))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 3.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g)


@pytest.mark.parametrize("arch", ["aan", "mdm-rt"])
def test_weights_read_back_from_an_export_give_the_same_model(arch: str, tmp_path: Path) -> None:
    """Every inference weight comes back: the rebuilt model's outputs equal the original's
    (AAN's batch norms folded into its convolutions by the exporter included); the training
    record's split comes with it."""
    model = _trained_looking(arch)
    path = export_onnx(model, tmp_path / f"{arch}.onnx", training={"arch": arch, "step": 7, "data": {"val_images": ["a.jpg"], "val_groups": []}})
    ck = checkpoint_from_onnx(path)
    assert ck.arch == arch and ck.step == 7 and ck.meta["data"] == {"val_images": ["a.jpg"], "val_groups": []}
    back = ck.build_model()
    from facetrack.train.export.to_onnx import _example_inputs

    inputs = _example_inputs(model, 4, 3)
    with torch.no_grad():
        for a, b in zip(model(*inputs), back(*inputs)):
            np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-4, rtol=1e-4)
    if arch == "aan":
        # the folded convolutions are not the original ones: the norms in front of them were folded in
        assert not torch.allclose(back.blocks[0].conv1.weight, model.blocks[0].conv1.weight)
        # the intermediate heads are not exported: they start fresh, not from the original
        assert not torch.equal(back.heads[0].fc.weight, model.heads[0].fc.weight)


def test_recalibrated_norms_keep_the_function_and_match_batch_statistics(tmp_path: Path) -> None:
    """After reading an export, a training-mode forward (batch statistics) is far from the
    eval-mode function; after :func:`recalibrate_norms` on the same crops it is close, and the
    eval-mode outputs have not changed."""
    model = _trained_looking("aan")
    back = checkpoint_from_onnx(export_onnx(model, tmp_path / "aan.onnx")).build_model()
    x = _images(32, back.config.input_size, 1)
    with torch.no_grad():  # a training-mode forward moves the running statistics: each on a copy
        ref = back.eval()(x)[0]
        before = copy.deepcopy(back).train()(x)[0]
        assert recalibrate_norms(back, x.numpy()) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in back.modules())
        after_eval = back.eval()(x)[0]
        after_train = copy.deepcopy(back).train()(x)[0]
    np.testing.assert_allclose(after_eval.numpy(), ref.numpy(), atol=1e-3)
    err_before, err_after = float((before - ref).abs().mean()), float((after_train - ref).abs().mean())
    assert err_after < 0.05 * err_before, (err_before, err_after)


def test_refuses_int8_variants_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"int8 variant .*float32 file it was made from \(aan.onnx\)"):
        checkpoint_from_onnx(WEIGHTS / "aan.int8.onnx")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        (tmp_path / "x.onnx").write_bytes(b"\x08\x07garbage")
        checkpoint_from_onnx(tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError):
        checkpoint_from_onnx(tmp_path / "missing.onnx")
    # a checkpoint still loads as a checkpoint through the same entry point
    model = _trained_looking("mdm-rt")
    from facetrack.train.models.checkpoint import save_checkpoint
    from facetrack.train.models.registry import config_to_dict

    save_checkpoint(tmp_path / "c.pt", model.state_dict(), config_to_dict(model.config), step=3)
    assert load_init(tmp_path / "c.pt").step == 3 == load_checkpoint(tmp_path / "c.pt").step


@pytest.mark.parametrize("name", ["mdm-rt", "aan"])
def test_shipped_weights_can_be_trained_on(name: str) -> None:
    """The shipped float32 files rebuild (parity against ONNX Runtime is checked inside) with
    their configuration and the validation split they were trained with."""
    ck = checkpoint_from_onnx(WEIGHTS / f"{name}.onnx")
    assert ck.arch == name and ck.meta["data"]["val_groups"] and ck.meta["init_from_onnx"]["parity_max_abs"]
    assert ck.build_model() is not None


def test_trainer_warm_starts_from_an_export_and_guards_its_split(data_dir: Path, tmp_path: Path) -> None:
    """A run exported and warm-started from its ONNX file validates where the run ended, and
    the export's split is checked like a checkpoint's."""
    base = dict(arch="aan", data=str(data_dir), steps=4, batch=4, lr=1e-3, seed=0, val_every=4, threads=1, limit_images=4,
                warmup=1, val_variants=1, progress=False, augment=NO_AUGMENT, p_template=1.0, config=SMALL["aan"])
    first = TrainOptions(out=str(tmp_path / "a"), **base)
    m1 = train(first)
    exported = export_onnx(tmp_path / "a" / "last.pt", tmp_path / "a.onnx")
    again = replace(first, out=str(tmp_path / "b"), init_from=str(exported), lr=1e-9, steps=1, val_every=1, warmup=0)
    m2 = train(again)
    assert m2["val_nme"] == pytest.approx(m1["val_nme"], rel=0.02)
    import hashlib
    import json

    rec = json.loads((tmp_path / "b" / "record.json").read_text())
    assert rec["init_from_onnx"] == {"path": str(exported), "sha256": hashlib.sha256(exported.read_bytes()).hexdigest()}
    with pytest.raises(ValueError, match="different split"):
        train(replace(again, out=str(tmp_path / "c"), seed=1))
    with pytest.raises(ValueError, match="checkpoint is 'aan', not 'mdm-rt'"):
        train(replace(again, out=str(tmp_path / "d"), arch="mdm-rt", config=()))
