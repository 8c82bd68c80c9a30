"""PyTorch CUDA path: CPU-checkable plumbing everywhere; CUDA-graph parity where a GPU exists."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from facetrack.engines import names
from facetrack.engines.errors import BackendUnavailableError
from facetrack.train.export.torch_cuda import graph_batch_for

REPO = Path(__file__).resolve().parents[3]
torch = pytest.importorskip("torch")
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason=f"no CUDA GPU here (torch {torch.__version__}, "
                                "torch.cuda.is_available() is False)")


@pytest.mark.parametrize("n, captured, want", [(1, (1, 8), 1), (2, (1, 8), 8), (8, (8, 1), 8), (9, (1, 8), 8),
                                               (3, (4,), 4), (5, (1, 2, 4), 4)])
def test_graph_batch_for(n: int, captured: tuple[int, ...], want: int) -> None:
    assert graph_batch_for(n, captured) == want


@pytest.mark.parametrize("n, captured", [(0, (1, 8)), (1, ()), (1, (0, 8))])
def test_graph_batch_for_rejects(n: int, captured: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        graph_batch_for(n, captured)


def test_without_cuda_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from facetrack.train.export.torch_cuda import CudaGraphRunner, CudaUnavailableError, load_model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CudaUnavailableError, match="needs an NVIDIA GPU and a CUDA build of torch") as exc:
        CudaGraphRunner(load_model("aan"))
    assert "torch.cuda.is_available() is False" in str(exc.value)
    assert isinstance(exc.value, BackendUnavailableError)


@pytest.mark.parametrize("arch", ["aan", "mdm-rt"])
def test_eager_cpu_runner_matches_the_model_and_chunks(arch: str) -> None:
    """The runner's feed/batch plumbing on the CPU (no graphs): same numbers as calling the model."""
    from facetrack.train.export.torch_cuda import CudaGraphRunner, load_model, model_io, random_feed

    model = load_model(arch, seed=1)
    kind, size, hidden = model_io(model)
    assert kind == ("aan" if arch == "aan" else "mdm") and size == model.config.input_size
    runner = CudaGraphRunner(model, batches=(1, 2), device="cpu", cuda_graphs=False)
    feed = random_feed(kind, size, hidden, 3, seed=2)
    got = runner.run_numpy(feed)  # 3 faces > largest batch 2: two chunks
    with torch.no_grad():
        want = model(*(torch.from_numpy(feed[k]) for k in names.MODEL_IO[kind].inputs))
    assert list(got) == list(names.MODEL_IO[kind].outputs)
    for name, w in zip(names.MODEL_IO[kind].outputs, want):
        np.testing.assert_allclose(got[name], w.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="feed lacks"):
        runner({names.IMAGE: feed[names.IMAGE]} if kind == "mdm" else {})


def test_load_model_rejects_a_non_checkpoint(tmp_path: Path) -> None:
    from facetrack.train.export.torch_cuda import load_model

    bad = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a facetrack training checkpoint"):
        load_model(bad)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_model(tmp_path / "none.pt")


def test_benchmark_arguments_and_no_gpu_exit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from facetrack.bench import gpu_latency
    args = gpu_latency.parse_args(["--archs", "aan", "--batches", "1", "4", "--checkpoint", "aan=/x/last.pt"])
    assert args.archs == ["aan"] and args.batches == [1, 4] and args.checkpoints == {"aan": Path("/x/last.pt")}
    for bad in (["--batches", "0"], ["--checkpoint", "resnet=/x.pt"], ["--runs", "0"]):
        with pytest.raises(SystemExit):
            gpu_latency.parse_args(bad)
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_latency.main(["--archs", "aan"]) == 2
    err = capsys.readouterr().err
    assert "needs an NVIDIA GPU" in err and "not run" in err
    p = gpu_latency.percentiles([1.0, 2.0, 3.0, 4.0, 100.0])
    assert p["median"] == 3.0 and p["p10"] < 2.0 < p["p90"]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("arch", ["aan", "mdm-rt"])
def test_cuda_graph_replay_matches_eager(arch: str) -> None:
    from facetrack.train.export.torch_cuda import CudaGraphRunner, load_model, model_io, random_feed

    model = load_model(arch, seed=3)
    kind, size, hidden = model_io(model)
    graphs = CudaGraphRunner(model, batches=(1, 8))
    eager = CudaGraphRunner(model, batches=(1, 8), cuda_graphs=False)
    for n in (1, 3, 8, 11):  # exact, padded to 8, exact, chunked 8 + 3
        feed = random_feed(kind, size, hidden, n, seed=n)
        got, want = graphs.run_numpy(feed), eager.run_numpy(feed)
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-3)
    # replay reads the new feed, not the one captured
    a = graphs.run_numpy(random_feed(kind, size, hidden, 1, seed=10))[names.LANDMARKS]
    b = graphs.run_numpy(random_feed(kind, size, hidden, 1, seed=11))[names.LANDMARKS]
    assert not np.array_equal(a, b)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("arch", ["mdm-rt", "aan"])
def test_mixed_precision_training_step_on_cuda(arch: str) -> None:
    # The trainer's AMP step. CUDA autocast refuses binary cross-entropy on probabilities (it
    # stopped the first training run on a lent H200), so forward_loss computes its losses in
    # float32 outside autocast; the step must give the float32 loss and finite gradients.
    from facetrack.tracker.geometry import template
    from facetrack.train.models.registry import build_model
    from facetrack.train.loops.trainer import Batch, forward_loss

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(arch).cuda().train()
    size = model.config.input_size
    gt = np.repeat(template(size)[None], 8, 0).astype(np.float32) + rng.normal(0, 1.0, (8, 68, 2)).astype(np.float32)
    batch = Batch(rng.random((8, 1, size, size), dtype=np.float32), gt, np.repeat(template(size)[None], 8, 0).astype(np.float32),
                  np.array([True] * 6 + [False] * 2), np.ones(8, bool))
    device = torch.device("cuda")
    with torch.autocast("cuda", enabled=True):
        loss, figs = forward_loss(model, batch, device, 1.0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.amp.GradScaler("cuda").scale(loss).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        plain, _ = forward_loss(model, batch, device, 1.0)
    assert float(loss) == pytest.approx(float(plain), rel=0.05)  # float16 forward, same loss
    assert figs["nme"].shape == (8,) and figs["confidence"].shape == (8,)
