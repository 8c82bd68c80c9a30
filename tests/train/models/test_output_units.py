"""``output_units="crop"``: coordinate layers that emit crop-normalised values at the common
learning rate, instead of crop pixels with a raised learning rate (issue 12's recipe)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from facetrack.train.models.registry import build_model, config_for, config_from_dict, config_to_dict, with_overrides
from facetrack.train.loops.trainer import TrainOptions, default_output_lr_scale, make_optimizer, output_layers


def _pair(arch: str, **small):
    """The px and crop models of one small configuration, built from the same seed."""
    cfg = dataclasses.replace(config_for(arch), **small)
    models = []
    for units in ("px", "crop"):
        torch.manual_seed(0)
        models.append(build_model(dataclasses.replace(cfg, output_units=units)))
    return models


def _run(model, image, init):
    if model.config.kind == "mdm":
        lm, conf, _ = model(image, init, model.zero_hidden(len(image)))
        return lm
    return model(image)[0]


MDM_SMALL = {"hidden_size": 32, "steps": 2}
AAN_SMALL = {"block_channels": (16, 16, 16, 16), "stem_channels": 8, "embed_dim": 32}


@pytest.mark.parametrize("arch,small", [("mdm-rt", MDM_SMALL), ("aan", AAN_SMALL)])
def test_crop_units_start_from_the_same_function(arch, small) -> None:
    px, crop = _pair(arch, **small)
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 1, 112, 112, generator=g)
    init = torch.rand(3, 68, 2, generator=g) * 60 + 26
    with torch.no_grad():
        a, b = _run(px, image, init), _run(crop, image, init)
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_crop_units_train_at_the_common_rate_and_match_mdm_s_raised_rate() -> None:
    """Adam's first step moves each weight by about ``lr`` whatever its gradient's size: the px
    model with its output layer at lr x 56 and the crop model at lr x 1 then make the same step."""
    px, crop = _pair("mdm-rt", **MDM_SMALL)
    assert default_output_lr_scale(px.config) == 56.0 and default_output_lr_scale(crop.config) == 1.0
    assert default_output_lr_scale(dataclasses.replace(config_for("aan"), output_units="crop")) == 1.0
    g = torch.Generator().manual_seed(2)
    image = torch.rand(4, 1, 112, 112, generator=g)
    init = torch.rand(4, 68, 2, generator=g) * 60 + 26
    target = init + torch.randn(4, 68, 2, generator=g) * 3
    outs = []
    for m in (px, crop):
        opt = make_optimizer(m, TrainOptions(arch="mdm-rt", data="", out="", lr=1e-3, weight_decay=0.0))
        scales = {g["lr_scale"] for g in opt.param_groups if any(p is q for q in output_layers(m)[0].parameters() for p in g["params"])}
        assert scales == {default_output_lr_scale(m.config)}
        for gr in opt.param_groups:
            gr["lr"] = 1e-3 * gr["lr_scale"]
        loss = (_run(m, image, init) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            outs.append(_run(m, image, init))
    moved = (outs[0] - _run(px, image, init).detach()).abs().max()
    torch.testing.assert_close(outs[0], outs[1], atol=2e-3, rtol=1e-4)
    assert (outs[0] - init).abs().mean() > 1e-3 and moved == 0  # the step changed the fit; eval is deterministic


def test_output_units_round_trip_the_checkpoint_config_and_are_checked() -> None:
    cfg = with_overrides(config_for("mdm-rt"), ["output_units=crop"])  # facetrack train --config output_units=crop
    assert cfg.output_units == "crop" and config_from_dict(config_to_dict(cfg)) == cfg
    old = config_to_dict(config_for("aan"))
    old.pop("output_units")  # a checkpoint written before the field: pixels
    assert config_from_dict(old).output_units == "px"
    with pytest.raises(ValueError, match="output_units"):
        dataclasses.replace(config_for("aan"), output_units="mm")
    with pytest.raises(ValueError, match="output_units"):
        with_overrides(config_for("mdm-rt"), ["output_units=mm"])
