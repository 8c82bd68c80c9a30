"""Checkpoints: round trip with a verified checksum, damage caught, old checkpoints accepted,
ONNX files and other wrong inputs refused in one line."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from facetrack.train.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, slim_checkpoint, weights_sha256
from facetrack.train.models.registry import build_model, config_to_dict


def _model():
    torch.manual_seed(0)
    return build_model("aan")


def test_round_trip_verifies_the_weights_and_keeps_metadata(tmp_path: Path) -> None:
    m = _model()
    p = save_checkpoint(tmp_path / "c.pt", m.state_dict(), config_to_dict(m.config), step=7, metrics={"val_nme": 0.05})
    ck = load_checkpoint(p)
    assert ck.verified and ck.arch == "aan" and ck.step == 7 and ck.meta["metrics"]["val_nme"] == 0.05
    rebuilt = ck.build_model()
    for k, v in m.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v), k
    assert not (tmp_path / "c.pt.tmp").exists()


def test_slim_copy_drops_the_optimiser_and_raw_weights_and_keeps_the_rest(tmp_path: Path) -> None:
    m = _model()
    opt = torch.optim.AdamW(m.parameters())
    m(torch.rand(2, 1, 112, 112))[0][-1].sum().backward()
    opt.step()  # Adam's two moments: the optimiser state is twice the weights
    ema = {k: v.clone() + 1.0 if v.is_floating_point() else v.clone() for k, v in m.state_dict().items()}
    full = save_checkpoint(tmp_path / "full.pt", ema, config_to_dict(m.config), step=9, optimizer=opt.state_dict(),
                           train_state_dict=m.state_dict(), split={"val_images": ["a.jpg"], "val_groups": []})
    slim = slim_checkpoint(full, tmp_path / "slim.pt")
    ck = load_checkpoint(slim)
    assert ck.verified and ck.step == 9 and ck.meta["split"]["val_images"] == ["a.jpg"]
    assert "optimizer" not in ck.meta and "train_state_dict" not in ck.meta
    assert all(torch.equal(ck.state_dict[k], v) for k, v in ema.items())  # the moving average, not the raw weights
    assert slim.stat().st_size < full.stat().st_size / 2.5


def test_checksum_depends_on_every_weight() -> None:
    sd = _model().state_dict()
    base = weights_sha256(sd)
    name = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
    changed = dict(sd)
    changed[name] = sd[name].clone()
    changed[name].view(-1)[-1] += 1e-6
    assert weights_sha256(changed) != base
    renamed = {("x" + k if k == name else k): v for k, v in sd.items()}
    assert weights_sha256(renamed) != base


def test_damaged_weights_are_refused(tmp_path: Path) -> None:
    m = _model()
    p = save_checkpoint(tmp_path / "c.pt", m.state_dict(), config_to_dict(m.config))
    ck = torch.load(p, weights_only=True)
    k = next(iter(ck["state_dict"]))
    ck["state_dict"][k] = ck["state_dict"][k] + 1.0
    torch.save(ck, p)
    with pytest.raises(CheckpointError, match="do not match the stored checksum"):
        load_checkpoint(p)


def test_old_checkpoint_without_checksum_loads_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = _model()
    # the layout of the trainer at commit 1d2eaef (the long runs' checkpoints)
    torch.save({"state_dict": m.state_dict(), "config": config_to_dict(m.config), "arch": "aan", "step": 3,
                "optimizer": {}, "metrics": {}}, tmp_path / "old.pt")
    with caplog.at_level(logging.INFO, logger="facetrack.train.models.checkpoint"):
        ck = load_checkpoint(tmp_path / "old.pt")
    assert not ck.verified and ck.step == 3 and "no weights checksum" in caplog.text
    ck.build_model()


def test_wrong_files_get_one_line(tmp_path: Path) -> None:
    weights = Path(__file__).parents[3] / "facetrack" / "tracker" / "weights" / "aan.onnx"
    with pytest.raises(CheckpointError, match="an ONNX export, not a training checkpoint"):
        load_checkpoint(weights)
    renamed = tmp_path / "model.pt"
    renamed.write_bytes(weights.read_bytes())  # an ONNX file under a .pt name: told by its bytes
    with pytest.raises(CheckpointError, match="ONNX export"):
        load_checkpoint(renamed)
    (tmp_path / "t.pt").write_text("hello\n")
    with pytest.raises(CheckpointError, match="text file"):
        load_checkpoint(tmp_path / "t.pt")
    torch.save({"state_dict": {}}, tmp_path / "nocfg.pt")
    with pytest.raises(CheckpointError, match="expected a dict with keys state_dict, config"):
        load_checkpoint(tmp_path / "nocfg.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    m = _model()
    bad = save_checkpoint(tmp_path / "bad.pt", {"x": torch.zeros(1)}, config_to_dict(m.config))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(bad).build_model()
    for e in (CheckpointError("x"),):
        assert "\n" not in str(e)
