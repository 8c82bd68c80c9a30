"""ONNX export: parity with ONNX Runtime, names, dynamic batch, metadata, checkpoints, CLI."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from facetrack.engines import names
from facetrack.tracker.geometry import crop_from_shape, template, to_input, warp_crop
from facetrack.io.landmarks import read_pts
from facetrack.train.export import to_onnx as export_mod
from facetrack.train.models.checkpoint import save_checkpoint
from facetrack.train.export.to_onnx import PARITY_TOL, check_parity, export_onnx
from facetrack.train.models.registry import build_model, config_from_dict, config_to_dict

S = 112


@pytest.fixture(scope="module")
def real_crops(data_dir) -> tuple[np.ndarray, np.ndarray]:
    """Three real faces (300-W common test) cropped by the crop convention:
    ``(3, 1, S, S)`` float32 and their ground truth ``(3, 68, 2)`` crop px."""
    images, shapes = [], []
    for name in ("helen_test/30427236_1.jpg", "helen_test/30427236_2.jpg", "lfpw_test/image_0001.png"):
        path = data_dir / "images68" / name
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        assert gray is not None, path
        gt = read_pts(path.with_suffix(".pts"))
        m = crop_from_shape(gt, S)
        images.append(to_input(warp_crop(gray, m, S))[0])
        shapes.append(gt @ m[:, :2].T + m[:, 2])
    return np.stack(images).astype(np.float32), np.stack(shapes).astype(np.float32)


def _trained_like(arch: str) -> torch.nn.Module:
    """A model whose outputs move (larger update/output weights, as after training)."""
    torch.manual_seed(0)
    model = build_model(arch).eval()
    with torch.no_grad():
        if arch == "aan":
            model.out.weight.mul_(30)
        else:
            model.update.weight.mul_(300)
    return model


def _feed(model, images: np.ndarray, shapes: np.ndarray) -> dict[str, np.ndarray]:
    feed = {names.IMAGE: images}
    if model.config.kind == "mdm":
        rng = np.random.default_rng(0)
        feed[names.INIT_SHAPE] = (np.repeat(template(S)[None], len(images), 0) + rng.normal(0, 2, shapes.shape)).astype(np.float32)
        feed[names.HIDDEN] = np.zeros((len(images), model.config.hidden_size), np.float32)
    return feed


def _ort_vs_torch(model, path, feed) -> dict[str, float]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    io = names.MODEL_IO[model.config.kind]
    assert [i.name for i in sess.get_inputs()] == list(io.inputs)
    assert [o.name for o in sess.get_outputs()] == list(io.outputs)
    got = sess.run(None, feed)
    with torch.no_grad():
        ref = model(*(torch.from_numpy(feed[k]) for k in io.inputs))
    return {name: float(np.abs(r.numpy() - g).max()) for name, r, g in zip(io.outputs, ref, got)}


@pytest.mark.parametrize("arch", ["mdm-rt", "aan"])
def test_export_parity_and_metadata(arch, tmp_path, real_crops):
    model = _trained_like(arch)
    path = export_onnx(model, tmp_path / f"{arch}.onnx", training={"note": "unit test"})
    assert path.stat().st_size < 25e6
    images, shapes = real_crops
    for n in (1, 3):  # the batch axis is dynamic
        diffs = _ort_vs_torch(model, path, _feed(model, images[:n], shapes[:n]))
        assert max(diffs.values()) < PARITY_TOL, diffs
    with torch.no_grad():  # the outputs really move, so parity is not trivially met
        if arch == "aan":
            moved = model(torch.from_numpy(images))[0] - torch.from_numpy(template(S).copy())
        else:
            f = _feed(model, images, shapes)
            moved = model(*(torch.from_numpy(f[k]) for k in names.MODEL_IO["mdm"].inputs))[0] - torch.from_numpy(f[names.INIT_SHAPE])
    assert moved.abs().max() > 1.0

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    for key in (*names.REQUIRED_KEYS, names.MEAN_SHAPE, names.CONFIG, names.TRAINING, names.VERSION, names.CHECKSUM):
        assert key in meta, key
    cfg = model.config
    assert meta[names.FORMAT] == names.FORMAT_VERSION
    assert meta[names.KIND] == ("aan" if arch == "aan" else "mdm")
    assert meta[names.ARCH] == arch
    assert meta[names.INPUT_SIZE] == "112" and meta[names.N_POINTS] == "68"
    assert meta[names.HIDDEN_SIZE] == (str(cfg.hidden_size) if arch != "aan" else "0")
    assert meta[names.STEPS] == ("4" if arch != "aan" else "0")
    np.testing.assert_allclose(np.array(json.loads(meta[names.MEAN_SHAPE]), np.float32), template(S))
    assert config_from_dict(json.loads(meta[names.CONFIG])) == cfg
    assert json.loads(meta[names.TRAINING]) == {"note": "unit test"}
    assert meta[names.CHECKSUM] == export_mod.weights_sha256(onnx.load(str(path)))

    graph = onnx.load(str(path)).graph
    for value in (*graph.input, *graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == names.BATCH_AXIS


def test_aan_export_has_no_intermediate_heads(tmp_path):
    model = _trained_like("aan")
    path = export_onnx(model, tmp_path / "aan.onnx")
    proto = onnx.load(str(path))
    n_onnx = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    n_heads = sum(p.numel() for p in model.heads.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    assert n_heads > 100_000
    # BN folding changes the count slightly; the heads' weights are not in the graph.
    assert abs(n_onnx - (n_all - n_heads)) < 0.02 * n_all < n_heads
    assert not any("heads" in t.name for t in proto.graph.initializer)


def test_parity_check_catches_a_mismatch(tmp_path):
    model = _trained_like("mdm-rt")
    path = export_onnx(model, tmp_path / "m.onnx")
    with torch.no_grad():  # a small bug's worth: the landmarks move by hundredths of a pixel or more
        model.update.bias.add_(1e-2)
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        check_parity(model, path)


def _checkpoint(tmp_path, arch: str = "aan"):
    model = _trained_like(arch)
    path = save_checkpoint(tmp_path / f"{arch}.pt", model.state_dict(), config_to_dict(model.config), arch=arch,
                           step=1234, metrics={"val_nme": 0.0512}, optimizer={}, rng={})
    return model, path


def test_export_from_checkpoint_and_cli(tmp_path, real_crops):
    model, ckpt = _checkpoint(tmp_path)
    out = export_onnx(ckpt, tmp_path / "from_ckpt.onnx")
    meta = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    training = json.loads(meta[names.TRAINING])
    assert training["step"] == 1234 and training["metrics"] == {"val_nme": 0.0512}
    images, shapes = real_crops
    assert max(_ort_vs_torch(model, out, _feed(model, images, shapes)).values()) < PARITY_TOL

    parser = argparse.ArgumentParser()
    export_mod.add_arguments(parser)
    cli_out = tmp_path / "cli" / "aan.onnx"
    assert export_mod.run(parser.parse_args([str(ckpt), "--out", str(cli_out)])) == 0
    assert cli_out.is_file()
    assert export_mod.run(parser.parse_args([str(ckpt)])) == 0  # default: beside the checkpoint
    assert ckpt.with_suffix(".onnx").is_file()


def test_bad_checkpoints(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    export_mod.add_arguments(parser)
    missing = tmp_path / "nope.pt"
    assert export_mod.run(parser.parse_args([str(missing), "--out", str(tmp_path / "x.onnx")])) == 2
    assert "nope.pt: checkpoint not found" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: a text file, not a training checkpoint"):
        export_onnx(junk, tmp_path / "x.onnx")
    nocfg = tmp_path / "nocfg.pt"
    torch.save({"state_dict": {}}, nocfg)
    with pytest.raises(ValueError, match="nocfg.pt: not a facetrack training checkpoint"):
        export_onnx(nocfg, tmp_path / "x.onnx")
    _, ckpt = _checkpoint(tmp_path)
    wrong = torch.load(ckpt, weights_only=True)
    wrong["config"]["embed_dim"] = 128
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="wrong.pt: checkpoint does not match its config"):
        export_onnx(tmp_path / "wrong.pt", tmp_path / "x.onnx")


def _run_export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    export_mod.add_arguments(parser)
    return export_mod.run(parser.parse_args(argv))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_export_to_a_full_device_is_one_line(tmp_path, capsys):
    _, ckpt = _checkpoint(tmp_path)
    assert _run_export([str(ckpt), "--out", "/dev/full"]) == 2
    err = capsys.readouterr().err
    assert err == "facetrack export: /dev/full: cannot write the model (No space left on device)\n", err
    assert Path("/dev/full").exists() and not Path("/dev/full").is_file()  # the device is left as it was


def test_export_without_onnx_says_what_to_install(tmp_path, capsys, monkeypatch):
    _, ckpt = _checkpoint(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)  # as on a machine without the package
    assert _run_export([str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err == "facetrack export: needs the 'onnx' package (pip install 'facetrack[train]')\n", err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow  # 20-40 s on 2 shared cores: writes and reads a 322 MB file
def test_export_faithful_mdm(tmp_path, real_crops):
    """The faithful mdm (80 M weights, ~320 MB file) exports and matches ONNX Runtime."""
    t0 = time.perf_counter()
    model = _trained_like("mdm")
    path = export_onnx(model, tmp_path / "mdm.onnx")
    assert 300e6 < path.stat().st_size < 340e6
    images, shapes = real_crops
    diffs = _ort_vs_torch(model, path, _feed(model, images[:2], shapes[:2]))
    assert max(diffs.values()) < PARITY_TOL, diffs
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert meta[names.ARCH] == "mdm" and meta[names.HIDDEN_SIZE] == "512"
    print(f"faithful mdm export + parity: {time.perf_counter() - t0:.1f} s")
