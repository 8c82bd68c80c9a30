"""MDM / mdm-rt / AAN: shapes, sizes, patch sampling, gradients, config round trips."""
from __future__ import annotations

import dataclasses
import functools
import json

import cv2
import numpy as np
import pytest
import torch

from facetrack.tracker.geometry import crop_from_shape, template, to_input, warp_crop
from facetrack.io.landmarks import read_pts
from facetrack.train.models.aan import AAN
from facetrack.train.models.mdm import MDM, extract_patches
from facetrack.train.models.registry import ARCHS, build_model, config_for, config_from_dict, config_to_dict

S = 112


def _init(n: int, size: int = S) -> torch.Tensor:
    return torch.from_numpy(template(size).copy())[None].repeat(n, 1, 1)


@functools.lru_cache(maxsize=None)
def _model(arch: str) -> torch.nn.Module:
    """A seeded, untrained model in eval mode, built once per arch (mdm has 80 M weights):
    for tests that neither train nor modify it."""
    torch.manual_seed(0)
    return build_model(arch).eval()


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def real_crop(data_dir) -> tuple[torch.Tensor, np.ndarray]:
    """A real face (300-W helen test) cropped by the crop convention: ``(1, 1, S, S)`` and its
    ground truth in crop px ``(68, 2)``."""
    img = data_dir / "images68" / "helen_test" / "30427236_1.jpg"
    gray = cv2.imread(str(img), cv2.IMREAD_GRAYSCALE)
    gt = read_pts(img.with_suffix(".pts"))
    m = crop_from_shape(gt, S)
    crop = warp_crop(gray, m, S)
    gt_crop = (gt @ m[:, :2].T + m[:, 2]).astype(np.float32)
    return torch.from_numpy(to_input(crop)), gt_crop


# ---------------------------------------------------------------- patch sampling


def test_patch_of_linear_ramp_is_exact():
    """On I(x, y) = a x + b y + c bilinear sampling is exact, so patch[r, c] must equal
    I(x0 + off[c], y0 + off[r]): an x/y swap (a != b) or a half-pixel shift would break it."""
    a, b, c = 0.005, 0.002, 0.05
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float32)
    img = torch.from_numpy(a * xs + b * ys + c)[None, None]
    centre = torch.tensor([[[40.3, 61.7], [80.0, 20.0]]])
    p, width = 10, 15.0
    patches = extract_patches(img, centre, width, p)
    assert patches.shape == (2, 1, p, p)
    off = (np.arange(p) - (p - 1) / 2) * width / p
    for k, (x0, y0) in enumerate(centre[0].numpy()):
        expect = a * (x0 + off[None, :]) + b * (y0 + off[:, None]) + c
        np.testing.assert_allclose(patches[k, 0].numpy(), expect, atol=1e-5)


def test_patch_of_single_pixel():
    """A one-pixel impulse at (x=50, y=20): an odd patch with 1-px spacing centred on it has the
    impulse at its centre; centred one pixel to the left, at column centre + 1; zeros outside."""
    img = torch.zeros(1, 1, S, S)
    img[0, 0, 20, 50] = 1.0
    pts = torch.tensor([[[50.0, 20.0], [49.0, 20.0], [50.0, 22.0], [-30.0, -30.0]]])
    patches = extract_patches(img, pts, 5.0, 5)[:, 0]
    expect = torch.zeros(4, 5, 5)
    expect[0, 2, 2] = 1.0
    expect[1, 2, 3] = 1.0  # impulse right of the centre: column (x) index grows
    expect[2, 0, 2] = 1.0  # centre 2 px below the impulse: row (y) index 0
    torch.testing.assert_close(patches, expect, atol=1e-5, rtol=0)


def test_patch_at_real_landmarks_equals_crop_pixels(real_crop):
    """On a real face crop, the centre sample of an odd 1-px-spaced patch at (rounded) ground
    truth landmarks is the crop's pixel there (row y, column x)."""
    image, gt = real_crop
    pts = np.round(gt).astype(np.float32)
    patches = extract_patches(image, torch.from_numpy(pts)[None], 7.0, 7)
    expect = image[0, 0].numpy()[pts[:, 1].astype(int), pts[:, 0].astype(int)]
    np.testing.assert_allclose(patches[:, 0, 3, 3].numpy(), expect, atol=1e-5)


def _bilinear_reference(img: np.ndarray, x: float, y: float) -> float:
    """Bilinear value of a (H, W) image at (x, y) px, pixel centres at integers, zeros outside."""
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    total = 0.0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            if 0 <= yy < img.shape[0] and 0 <= xx < img.shape[1]:
                total += wy * wx * img[yy, xx]
    return total


def test_patches_match_a_bilinear_reference_off_the_image_too():
    """Random sub-pixel centres, some hanging off the crop: every sample equals a plain
    bilinear interpolation (zeros outside) at landmark + (offset[col], offset[row])."""
    rng = np.random.default_rng(0)
    img = rng.random((S, S)).astype(np.float32)
    pts = np.concatenate([rng.uniform(0, S, (6, 2)), [[-5.3, 50.2], [110.6, 113.9]]]).astype(np.float32)
    p, width = 14, 30.0
    patches = extract_patches(torch.from_numpy(img)[None, None], torch.from_numpy(pts)[None], width, p)[:, 0].numpy()
    off = (np.arange(p) - (p - 1) / 2) * width / p
    for k, (x, y) in enumerate(pts):
        expect = np.array([[_bilinear_reference(img, x + off[c], y + off[r]) for c in range(p)] for r in range(p)])
        np.testing.assert_allclose(patches[k], expect, atol=1e-5)


def test_grad_through_sampling_flag():
    """By default (as the reference sampler) no gradient reaches the shape through the patch
    positions, only through the added updates; with the flag it does."""
    torch.manual_seed(0)
    image = torch.rand(1, 1, S, S)
    grads = {}
    for flag in (False, True):
        model = build_model(dataclasses.replace(config_for("mdm-rt"), grad_through_sampling=flag))
        init = _init(1).requires_grad_(True)
        shapes, _, _ = model.forward_steps(image, init, model.zero_hidden(1))
        shapes[-1].sum().backward()
        grads[flag] = init.grad
    # d(sum of shape)/d(init) is exactly 1 per coordinate through the additive path alone.
    torch.testing.assert_close(grads[False], torch.ones_like(grads[False]))
    assert (grads[True] - 1).abs().max() > 0


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes(arch):
    model = _model(arch)
    image = torch.rand(3, 1, S, S)
    with torch.no_grad():
        if arch == "aan":
            landmarks, conf = model(image)
        else:
            h = model.config.hidden_size
            landmarks, conf, hidden = model(image, _init(3), torch.zeros(3, h))
            assert hidden.shape == (3, h) and hidden.dtype == torch.float32
            assert hidden.abs().max() <= 1.0  # tanh units
    assert landmarks.shape == (3, 68, 2) and landmarks.dtype == torch.float32
    assert conf.shape == (3,)
    assert ((conf > 0) & (conf < 1)).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_untrained_model_starts_at_init_shape(arch):
    """Small update layers / template bias: before training the prediction is the start shape."""
    model = _model(arch)
    image = torch.rand(2, 1, S, S)
    with torch.no_grad():
        if arch == "aan":
            landmarks, _ = model(image)
            start = _init(2)
        else:
            start = _init(2) + torch.randn(2, 68, 2) * 3
            landmarks, _, _ = model(image, start, model.zero_hidden(2))
    assert (landmarks - start).abs().max() < 0.5


def test_parameter_counts():
    mdm = _model("mdm")
    cfg = mdm.config
    assert cfg.features_per_patch == 6 * 6 * 64 == 2304
    assert mdm.recurrent.weight.shape == (512, 68 * 2304 + 512)
    assert 80e6 < mdm.recurrent.weight.numel() < 81e6
    rt = _model("mdm-rt")
    assert _n_params(rt) < 5e6
    assert 10 <= rt.config.features_per_patch <= 64
    aan = _model("aan")
    inference = _n_params(aan) - _n_params(aan.heads)
    assert 0.5e6 < inference < 1.5e6


@pytest.mark.parametrize("skip_from", ["conv1", "conv2"])
def test_skip_connection_source(skip_from):
    """Both skip sources give 6x6x(32+32) features; they are different computations."""
    cfg = dataclasses.replace(config_for("mdm"), skip_from=skip_from, n_points=5)
    model = MDM(cfg)
    patches = torch.rand(4, 1, 30, 30)
    feats = model.patch_net(patches)
    assert feats.shape == (4, 2304)
    # The skip half (after the pooled 6x6x32) is a central crop of the chosen conv's activations.
    with torch.no_grad():
        a1 = torch.relu(model.patch_net.conv1(patches))
        a = a1 if skip_from == "conv1" else torch.relu(model.patch_net.conv2(torch.max_pool2d(a1, 2)))
        lo = (a.shape[-1] - 6) // 2
        expect = a[..., lo : lo + 6, lo : lo + 6].flatten(1)
    torch.testing.assert_close(feats.reshape(4, 64, 36)[:, 32:].flatten(1), expect)


@pytest.mark.parametrize("arch", ["mdm", "mdm-rt"])
def test_gradients_reach_convs_from_first_step(arch):
    """A loss on step 1's shape alone gives non-zero gradients to the patch convs and the
    recurrent layer; a loss on the last step reaches the hidden state fed in (memory)."""
    torch.manual_seed(0)
    cfg = config_for(arch)
    model = build_model(cfg)
    image = torch.rand(2, 1, S, S)
    hidden = torch.zeros(2, cfg.hidden_size, requires_grad=True)
    shapes, conf, _ = model.forward_steps(image, _init(2), hidden)
    assert len(shapes) == cfg.steps == 4
    target = _init(2) + 2.0
    shapes[0].sub(target).pow(2).mean().backward(retain_graph=True)
    for p in (model.patch_net.conv1.weight, model.patch_net.conv2.weight, model.recurrent.weight, model.update.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.zero_grad()
    hidden.grad = None
    (shapes[-1].sub(target).pow(2).mean() + conf.mean()).backward()
    assert hidden.grad.abs().sum() > 0
    assert model.confidence_head.weight.grad.abs().sum() > 0


def test_hidden_state_changes_the_output():
    """The recurrent state is a real input: a different hidden state gives a different fit."""
    torch.manual_seed(0)
    model = build_model("mdm-rt").eval()
    with torch.no_grad():
        model.update.weight.mul_(100)  # as after training: updates of a few px
        image = torch.rand(1, 1, S, S)
        h = model.config.hidden_size
        a, _, ha = model(image, _init(1), torch.zeros(1, h))
        b, _, hb = model(image, _init(1), torch.full((1, h), 0.5))
    assert (a - b).abs().max() > 1e-2 and (ha - hb).abs().max() > 1e-4


def test_aan_intermediate_heads(real_crop):
    torch.manual_seed(0)
    model = build_model("aan")
    assert isinstance(model, AAN)
    image = real_crop[0].repeat(2, 1, 1, 1)
    landmarks, conf, inter = model.forward_train(image)
    assert len(inter) == 4 and all(t.shape == (2, 68, 2) for t in inter)
    sum(t.sub(5.0).abs().mean() for t in inter).backward()
    assert all(h.fc.weight.grad.abs().sum() > 0 for h in model.heads)
    assert model.blocks[0].conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        l1, c1 = model(image)
        l2, c2, _ = model.forward_train(image)
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(c1, c2)


@pytest.mark.parametrize("arch", ARCHS)
def test_config_round_trip(arch):
    cfg = config_for(arch)
    d = json.loads(json.dumps(config_to_dict(cfg)))
    assert d["arch"] == arch
    back = config_from_dict(d)
    assert back == cfg
    model = build_model(back)
    assert model.config == cfg
    assert cfg.kind == ("aan" if arch == "aan" else "mdm")


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"arch": "resnet"}, "unknown model architecture"),
        ({"input_size": 112}, "no 'arch'"),
        ({"arch": "mdm", "layers": 3}, "unknown keys"),
        ({"arch": "mdm", "skip_from": "conv3"}, "skip_from"),
        ({"arch": "mdm-rt", "sampler": "nearest"}, "sampler"),
    ],
)
def test_bad_configs(bad, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(bad)


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown model architecture"):
        build_model("hourglass")


def test_paper_readings_are_defaults_and_old_checkpoints_keep_their_model() -> None:
    import dataclasses

    from facetrack.train.models.aan import Attention
    from facetrack.train.models.registry import config_for, config_from_dict, config_to_dict

    # AAN: the attention map spans (0, 1) by default; with the ReLU before the sigmoid, [0.5, 1)
    torch.manual_seed(0)
    h = torch.randn(2, 8, 6, 6)
    for relu, lo in ((False, 0.0), (True, 0.5)):
        att = Attention(8, relu=relu).eval()
        with torch.no_grad():
            m = att(h.abs() + 1.0) / (h.abs() + 1.0) - 1.0  # recover M from (1 + M) * H
        assert float(m.min()) >= lo - 1e-6 and (relu or float(m.min()) < 0.45)
    assert config_for("aan").attention == "sigmoid"
    # MDM: the faithful model keeps the reference's patch/shape-diagonal ratio (30/200)
    mdm = config_for("mdm")
    assert mdm.patch_crop_px == pytest.approx(30.0 * 87.15 / 200.0, rel=0.01)
    assert config_for("mdm-rt").patch_crop_px == 30.0
    # a checkpoint config written before these keys existed rebuilds the model it was trained as
    for arch, key, legacy in (("aan", "attention", "relu-sigmoid"), ("mdm", "patch_reference_diagonal", 0.0)):
        d = config_to_dict(config_for(arch))
        del d[key]
        assert getattr(config_from_dict(d), key) == legacy
    assert config_from_dict(config_to_dict(config_for("mdm-rt"))) == config_for("mdm-rt")
    assert dataclasses.replace(mdm, patch_reference_diagonal=0.0).patch_crop_px == 30.0
