"""torch.compile of the training step: chosen by measurement, and it trains the same weights."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from facetrack.train.data.augment import NO_AUGMENT
from facetrack.train.models.checkpoint import load_checkpoint
from facetrack.train.loops.trainer import TrainOptions, train, use_compile

TINY_AAN = ("input_size=64", "block_channels=8,16,16,32", "embed_dim=32", "stem_channels=8")


def test_compile_choice() -> None:
    assert use_compile("auto", "aan") and not use_compile("auto", "mdm")
    assert use_compile("on", "mdm") and not use_compile("off", "aan")
    with pytest.raises(ValueError, match="compile must be auto, on or off"):
        use_compile("yes", "aan")


def test_compiled_training_step_trains_the_same_weights(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three steps of a tiny AAN, eager and through ``torch.compile``, from the same seed and
    batches, give the same weights. The compile runs with a backend that runs dynamo's captured graph as it is (the graph
    capture and the wrapper, without inductor's minutes of code generation), so the sums are
    the same and the weights equal; a compiled step that bypassed the model or the optimiser
    would leave them about one Adam step (the learning rate, 1e-3) apart."""
    real_compile = torch.compile
    calls: list[str] = []
    graphs: list[int] = []

    def recording_backend(gm: torch.fx.GraphModule, example_inputs):  # the captured graph runs as it is
        graphs.append(len(gm.graph.nodes))
        return gm.forward

    def eager_backend_compile(module, **kw):
        calls.append(type(module).__name__)
        return real_compile(module, backend=recording_backend)

    monkeypatch.setattr(torch, "compile", eager_backend_compile)
    eager = TrainOptions(arch="aan", data=str(data_dir), out=str(tmp_path / "eager"), steps=3, batch=4, val_every=3, threads=1,
                         limit_images=4, warmup=1, val_variants=1, progress=False, augment=NO_AUGMENT, ema=0.0,
                         config=TINY_AAN, compile="off")
    train(eager)
    assert calls == []
    train(replace(eager, out=str(tmp_path / "compiled"), compile="on"))
    assert calls == ["TrainForward"] and graphs and max(graphs) > 20  # the model's graph was captured and run
    a = load_checkpoint(tmp_path / "eager" / "last.pt").state_dict
    b = load_checkpoint(tmp_path / "compiled" / "last.pt").state_dict
    assert a.keys() == b.keys()
    moved = max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())
    assert moved < 1e-6, moved
