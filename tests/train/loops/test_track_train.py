"""Roll-out training on the model's own starts: the roll-out follows the tracker's crop
convention, gradients reach the weights through the window, a short run checkpoints and resumes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facetrack.tracker.geometry import face_size
from facetrack.train.models.checkpoint import load_checkpoint, save_checkpoint
from facetrack.train.data.datasets import build_cache, load_images68
from facetrack.train.models.registry import build_model, config_for, config_to_dict
from facetrack.train.data.sequences import MotionConfig, PhotoConfig, still_sequence
from facetrack.train.loops.track_train import TrackTrainOptions, drifted, roll_out, train_tracking


@pytest.fixture(scope="module")
def faces(data_dir: Path):
    return build_cache(load_images68(data_dir, "train")[:2], 123.2)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(config_for("mdm-rt"))


class _Frozen(torch.nn.Module):
    """An MDM stand-in that returns its start unchanged (and a constant confidence)."""

    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.config = m.config
        self.w = torch.nn.Parameter(torch.zeros(()))

    def zero_hidden(self, n, device=None):
        return torch.zeros(n, 4)

    def forward_steps(self, image, init, hidden):
        out = init + 0.0 * self.w
        return [out], torch.full((len(init),), 0.7) + 0.0 * self.w, hidden


def test_drifted_starts_move_the_shape_by_a_visible_amount(faces) -> None:
    s = faces[0].landmarks
    rng = np.random.default_rng(0)
    for _ in range(12):
        d = drifted(s, rng)
        assert d.shape == (68, 2) and np.isfinite(d).all()
        moved = np.linalg.norm(d - s, axis=1).max() / face_size(s)
        assert 0.05 < moved < 1.0


def test_roll_out_starts_each_frame_from_the_previous_fit(faces) -> None:
    # a model that never moves its start: from the previous fit, the fit stays where frame 0 put it
    seqs = [still_sequence(f, 5, np.random.default_rng(i), photo=PhotoConfig(noise=0.0)) for i, f in enumerate(faces)]
    m = _Frozen(_model())
    r = roll_out(m, seqs, np.random.default_rng(0), box_jitter=0.0)
    for t in range(1, 5):
        np.testing.assert_allclose(r.pred[:, t], r.pred[:, 0], atol=1e-3)
    assert r.nme.shape == (2, 5) and np.allclose(r.confidence, 0.7)
    # from the template, the frozen model gives the template in a crop aligned on the previous fit: same place again
    rt = roll_out(m, seqs, np.random.default_rng(0), init="template", box_jitter=0.0)
    assert np.isfinite(rt.pred).all()


def test_roll_out_window_gives_gradients_and_a_finite_loss(faces) -> None:
    model = _model()
    seqs = [still_sequence(f, 4, np.random.default_rng(i)) for i, f in enumerate(faces)]
    r = roll_out(model, seqs, np.random.default_rng(0), window_from=2, drift_at={0: 3})
    assert r.loss.requires_grad and torch.isfinite(r.loss)
    r.loss.backward()
    assert model.update.weight.grad is not None and model.update.weight.grad.abs().sum() > 0
    assert model.confidence_head.weight.grad.abs().sum() > 0  # the confidence learns from the outcomes
    # no window: no graph at all
    r0 = roll_out(model, seqs, np.random.default_rng(0))
    assert not r0.loss.requires_grad


def test_roll_out_carries_the_hidden_state_only_when_asked(faces) -> None:
    model = _model().eval()
    seqs = [still_sequence(faces[0], 3, np.random.default_rng(0))]
    with torch.no_grad():
        a = roll_out(model, seqs, np.random.default_rng(0), keep_hidden=True)
        b = roll_out(model, seqs, np.random.default_rng(0), keep_hidden=True, carry_hidden=True)
    np.testing.assert_allclose(a.pred[:, 0], b.pred[:, 0])  # frame 0 starts from zeros either way
    assert not np.allclose(a.pred[:, 2], b.pred[:, 2])


@pytest.mark.slow  # loads and caches real faces, runs 3 roll-out steps and 3 validations
def test_short_run_checkpoints_and_resumes(data_dir: Path, tmp_path: Path) -> None:
    model = _model()
    init = save_checkpoint(tmp_path / "init.pt", model.state_dict(), config_to_dict(model.config), arch="mdm-rt", step=7)
    base = dict(init=str(init), data=str(data_dir), out=str(tmp_path / "run"), steps=3, batch=2, burn_in=2, window=2,
                still_batch=2, val_every=2, val_sequences=2, val_frames=6, threads=1, progress=False, limit=40)
    m1 = train_tracking(TrackTrainOptions(**base, stop_at=2))
    assert m1["step"] == 2
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck.verified and ck.meta["stage"] == "track" and ck.meta["init_from"] == str(init)
    m2 = train_tracking(TrackTrainOptions(**base, resume=True))
    assert m2["step"] == 3
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 2, 3]
    assert {"val_shape_nme", "val_template_nme", "val_shape_drift", "val_conf_auc"} <= set(lines[-1])
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert rec["data"]["test_images_used"] is False and rec["init_from"] == str(init)
