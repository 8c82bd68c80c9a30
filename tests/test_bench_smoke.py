"""The comparison benchmark's own logic (facetrack/bench/bench.py, facetrack/bench/peers.py) with
facetrack only: summaries, ratios, stability and accuracy scoring on hand-made worker results,
"not installed" peers, and one short real run through the subprocess workers."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from facetrack.bench import bench, peers
from facetrack.tracker.markup import mean_shape


def _video_result(total_ms: list[float], found: int, decode: float = 2.0, write: float | None = 0.5,
                  cpu_ms: float = 10.0) -> dict:
    n = len(total_ms)
    lm = [mean_shape().astype(np.float64).tolist() if i < found else None for i in range(n)]
    return {"status": "ok", "frames": n, "total_ms": total_ms, "decode_ms": [decode] * n,
            "write_ms": None if write is None else [write] * n, "stage_ms": {"detect": [1.0] * n, "infer": [3.0] * n},
            "cpu_s": cpu_ms * n / 1e3, "landmarks": lm, "vm_hwm_mib": 100.0, "version": "x"}


def test_summary_medians_fps_and_ratios_from_the_same_run() -> None:
    ours = [_video_result([10.0, 10.0, 40.0], 3), _video_result([20.0, 20.0, 20.0], 3, cpu_ms=30.0),
            _video_result([10.0, 12.0, 14.0], 3)]
    theirs = [_video_result([5.0, 5.0, 5.0], 2, write=None, cpu_ms=5.0)] * 3
    s = bench.summarize_rounds(ours)
    # per-round medians 10, 20, 12 -> 12; per-round means 20, 20, 12 -> 20
    assert s["track_ms_median"] == pytest.approx(12.0)
    assert s["track_ms_mean"] == pytest.approx(20.0)
    assert s["fps_track"] == pytest.approx(50.0)
    assert s["fps_end_to_end"] == pytest.approx(1000.0 / (2.0 + 20.0 + 0.5))
    assert s["cpu_ms_per_frame"] == pytest.approx(10.0)
    assert s["stage_ms_mean"] == {"detect": 1.0, "infer": 3.0}
    assert s["found"] == 3 and s["found_per_round"] == [3, 3, 3]
    p = bench.summarize_rounds(theirs)
    assert p["write_ms"] == 0.0 and p["found"] == 2
    rows = bench.ratios({"v.mp4": {"mdm-rt": s, "dlib": p, "mediapipe": {"status": "not installed"}}}, ["mdm-rt"], ["dlib", "mediapipe"])
    ok = next(r for r in rows if r["peer"] == "dlib")
    assert ok["fps_ratio"] == pytest.approx(50.0 / 200.0)
    assert ok["ms_ratio"] == pytest.approx(12.0 / 5.0)
    assert ok["cpu_ms_ratio"] == pytest.approx(2.0)
    assert next(r for r in rows if r["peer"] == "mediapipe")["status"] == "not installed"
    text = bench.markdown({"setup": {"runs": 3}, "speed": {"v.mp4": {"mdm-rt": s, "dlib": p}}, "ratios": rows, "accuracy": {}})
    assert "| mdm-rt | 3/3 | 12.00 | 20.00 |" in text
    assert "| v.mp4 | mdm-rt | dlib | 0.25 | 2.40 | 2.00 |" in text
    assert "| v.mp4 | mdm-rt | mediapipe | not installed |" in text


def test_all_rounds_failed_reports_the_status() -> None:
    s = bench.summarize_rounds([{"status": "not installed", "error": "no dlib"}])
    assert s == {"status": "not installed", "error": "no dlib"}


def test_stability_skips_pairs_across_a_lost_frame() -> None:
    base = mean_shape().astype(np.float64)
    d = float(np.linalg.norm(base[36] - base[45]))
    frames = [base + [i * 1.0, 0.0] for i in range(6)]
    seq = [f.tolist() for f in frames]
    seq[3] = None  # lost: pairs (2,3) and (3,4) are left out
    seq[4] = (frames[4] + [50.0, 0.0]).tolist()  # a jump right after the loss must not count
    st = bench.stability(seq)
    assert st["found"] == 5 and st["consecutive_pairs"] == 3
    # pairs (0,1), (1,2): 1 px each; pair (4,5): from base+54 to base+5, 49 px
    assert st["jitter68"] == pytest.approx((1 + 1 + 49) / 3 / d)
    assert st["jitter49"] == pytest.approx(st["jitter68"])  # rigid motion: every point moves alike


def test_accuracy_scoring_counts_failures_and_fallbacks() -> None:
    gt = mean_shape().astype(np.float64) * 2.0
    d = float(np.linalg.norm(gt[36] - gt[45]))
    items = [{"split": "common", "gt": gt.tolist()}, {"split": "common", "gt": gt.tolist()},
             {"split": "challenging", "gt": gt.tolist()}]
    results = [{"landmarks": (gt + [3.0, 4.0]).tolist(), "how": "detector"},
               {"landmarks": (gt + [0.0, 1.0]).tolist(), "how": "fallback-300w-box"},
               {"landmarks": None, "how": "not-found"}]
    sc = bench.score_accuracy(items, results)
    assert sc["common"]["n"] == 2 and sc["common"]["fallbacks"] == 1 and sc["common"]["failures"] == 0
    assert sc["common"]["nme68_mean"] == pytest.approx((5.0 / d + 1.0 / d) / 2)
    assert sc["common"]["nme49_mean"] == pytest.approx(sc["common"]["nme68_mean"])
    assert sc["challenging"]["failures"] == 1 and np.isnan(sc["challenging"]["nme68_mean"])
    # the missed face counts as failed at 8 % and 20 %; a found face off by 40 % of the eye distance is a gross one
    assert sc["challenging"]["failure"] == 1.0 and sc["challenging"]["failure_gross"] == 1.0 and sc["challenging"]["gross_found"] == 0
    gross = bench.score_accuracy(items[:1], [{"landmarks": (gt + [0.4 * d, 0.0]).tolist(), "how": "detector"}])
    assert gross["common"]["gross_found"] == 1 and gross["common"]["failure_gross"] == 1.0
    assert sc["common"]["failure"] == (5.0 / d > 0.08) / 2 + (1.0 / d > 0.08) / 2


def test_mediapipe_mapping_table() -> None:
    assert len(peers.MP_TO_68) == 68
    flat = [i for ix in peers.MP_TO_68 for i in ix]
    assert all(0 <= i < 468 for i in flat)
    # outer eye corners of the mesh (33: subject's right, image left; 263) -> 300-W 36 and 45
    assert peers.MP_TO_68[36] == (33,) and peers.MP_TO_68[45] == (263,)
    mesh = np.arange(468 * 2, dtype=np.float64).reshape(468, 2)
    out = peers.mp_to_68(mesh)
    assert out.shape == (68, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[3], (mesh[132] + mesh[58]) / 2)
    with pytest.raises(ValueError, match="468"):
        peers.mp_to_68(np.zeros((68, 2)))


def test_peer_without_its_package_or_interpreter_is_not_installed(tmp_path: Path) -> None:
    script = Path(bench.__file__).with_name("peers.py")
    spec = {"task": "video", "method": "mediapipe", "video": "x.mp4"}
    res = bench.run_subprocess(tmp_path / "no-python", script, spec)
    assert res["status"] == "not installed" and res["error"].startswith(f"{tmp_path / 'no-python'}: no such interpreter")
    assert "python -m venv" in res["error"] and "mediapipe==0.10.21" in res["error"]  # how to make one
    assert "FACETRACK_PEERS_PYTHON" in bench.run_subprocess(None, script, spec)["error"]
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        res = bench.run_subprocess(sys.executable, script, spec)
        assert res["status"] == "not installed" and "mediapipe" in res["error"]


def test_data_folder_comes_from_an_option_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("FACETRACK_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--methods", "aan", "--runs", "1"]) == 2
    assert capsys.readouterr().err == ("bench: no data folder: pass --data DIR or set FACETRACK_DATA "
                                       "(the shared data with videos_unlabelled/ and images68/)\n")
    assert bench.main(["--data", str(tmp_path / "nope"), "--methods", "aan"]) == 2
    assert capsys.readouterr().err == f"bench: {tmp_path / 'nope'}: no such data folder (--data)\n"


def test_short_real_run_facetrack_only(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """aan on 12 frames of the real selfie clip and the 12 300-W test faces, through the real
    subprocess workers (``python -m facetrack.bench.bench --worker``), run from a folder outside
    the repository with the data from ``$FACETRACK_DATA``: nothing depends on the checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACETRACK_DATA", str(data_dir))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    out = tmp_path / "b.json"
    md = tmp_path / "b.md"
    rc = bench.main(["--videos", "sbr_demo_selfie.mp4", "--methods", "aan", "mediapipe",
                     "--peers-python", str(tmp_path / "none"), "--max-frames", "12", "--warmup", "2", "--runs", "1",
                     "--untrained-if-missing", "--json", str(out), "--markdown", str(md)])
    assert rc == 0
    res = json.loads(out.read_text())
    s = res["speed"]["sbr_demo_selfie.mp4"]["aan"]
    assert s["status"] == "ok" and s["frames"] == 12 and s["rounds"] == 1
    assert set(s["stage_ms_mean"]) == set(bench.STAGES_FT)
    assert s["track_ms_mean"] > 0 and s["decode_ms"] > 0 and s["write_ms"] > 0 and s["vm_hwm_mib"] > 50
    assert s["fps_track"] == pytest.approx(1000.0 / s["track_ms_mean"])
    assert res["speed"]["sbr_demo_selfie.mp4"]["mediapipe"]["status"] == "not installed"
    assert res["ratios"][0]["status"] == "not installed"
    acc = res["accuracy"]["aan"]
    assert acc["from_300w_box"]["common"]["n"] == 8 and acc["from_300w_box"]["challenging"]["n"] == 4
    assert res["accuracy"]["mediapipe"]["status"] == "not installed"
    assert res["setup"]["cpus"] >= 1 and res["setup"]["cpu"]
    text = md.read_text()
    assert "| mediapipe | not installed |" in text and "| aan | 300-W box |" in text


def test_stability_leaves_out_pairs_across_a_shot_cut() -> None:
    base = mean_shape().astype(np.float64)
    d = float(np.linalg.norm(base[36] - base[45]))
    seq = [(base + [i * 2.0, 0.0]).tolist() for i in range(4)] + [(base + [300.0 + i * 2.0, 0.0]).tolist() for i in range(4)]
    assert bench.stability(seq)["jitter68"] == pytest.approx((7 * 2 + 292) / 7 / d)  # the jump counts without the cut
    st = bench.stability(seq, cuts=[4])
    assert st["consecutive_pairs"] == 6 and st["jitter68"] == pytest.approx(2.0 / d)


def test_shot_cuts_on_the_real_clip(data_dir: Path) -> None:
    frames, _ = peers.decode_video(data_dir / "videos_unlabelled" / "short_hamilton_clip.mp4", 90)
    cuts = bench.shot_cuts(frames)
    assert 20 in cuts and 82 in cuts  # the clip's known cuts (tests/tracker/test_tracker.py)
    assert len(cuts) < 6
