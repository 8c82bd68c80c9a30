"""300VW evaluation on real 300VW-format clips built from the real data.

(a) video 401: its two real frames (731, 732) at their true numbers in a real ``vid.avi``;
731 is in the official broken list and must be excluded. (b) clips of a real helen_test face
moved by known similarities; a fake predictor with known errors makes every reported figure
computable by hand here.
"""
from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.eval.fixtures_300vw import OffsetPredictor, moving_face_clip, real_401_clip
from facetrack.eval import vw300 as ev
from facetrack.io.landmarks import read_pts

T = 0.08


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict:
    """One root with 401 (cat 1, real frames), 411 (cat 3, 60 moving frames, broken 19, 20,
    60), 410 (cat 3, 30 frames, still) and 001 (training video, must be skipped)."""
    root = tmp_path_factory.mktemp("300vw")
    gts = {"401": real_401_clip(root, data_dir),
           "411": moving_face_clip(root, data_dir, "411", 60, moving=True),
           "410": moving_face_clip(root, data_dir, "410", 30, moving=False)}
    moving_face_clip(root, data_dir, "001", 3)
    return {"root": root, "gts": gts}


# Known errors (in outer-eye distances) per frame; None = no face. 411's frame 19 is broken:
# its huge error must not count.
SHIFTS = {
    "411": {**{n: 0.01 + 0.002 * (n % 7) for n in range(1, 61)}, 5: 0.1, 19: 0.5, 33: 0.2, 40: None, 41: None},
    "410": {**{n: (0.02 if n % 2 else 0.04) for n in range(1, 31)}, 10: None},
    "401": {731: 0.3, 732: 0.03},
}


def _errors(vid: str, frames: list[int]) -> np.ndarray:
    return np.array([np.inf if SHIFTS[vid][n] is None else SHIFTS[vid][n] for n in frames])


def _hand_jitter(frames: list[int], vid: str, gts: dict[int, np.ndarray]) -> tuple[float, int]:
    """The definition, written out: per consecutive pair of scored frames with predictions,
    mean over points of |step of prediction - step of truth| / mean outer-eye distance."""
    vals = []
    for a, b in zip(frames[:-1], frames[1:]):
        if b != a + 1 or SHIFTS[vid][a] is None or SHIFTS[vid][b] is None:
            continue
        ga, gb = gts[a].astype(np.float64), gts[b].astype(np.float64)
        da, db = np.linalg.norm(ga[36] - ga[45]), np.linalg.norm(gb[36] - gb[45])
        pa, pb = ga + [SHIFTS[vid][a] * da, 0], gb + [SHIFTS[vid][b] * db, 0]
        step = np.linalg.norm((pb - pa) - (gb - ga), axis=1)
        vals.append(step.mean() / ((da + db) / 2))
    return float(np.mean(vals)), len(vals)


def test_package_data_official_split_and_broken_frames() -> None:
    s = ev.splits()
    assert (len(s[0]), len(s[1]), len(s[2]), len(s[3])) == (50, 31, 19, 14)
    assert ev.category_of("401") == 1 and ev.category_of("411") == 3 and ev.category_of("001") == 0
    assert ev.category_of("999") is None
    b = ev.broken_frames()
    assert 731 in b["401"] and 732 not in b["401"] and {19, 20, 60} <= b["411"]


def test_real_401_frames_at_true_numbers_and_731_excluded(clips: dict, data_dir: Path) -> None:
    fake = OffsetPredictor(SHIFTS, keep=(1, 732))
    rep = ev.evaluate_300vw(clips["root"], [1], predictor=fake, mode="gt-box")
    r = rep.videos["401"]
    assert r.excluded_frames == (731,) and r.frame_numbers == (732,)
    assert r.decoded_frames == 732 and fake.calls[-1] == ("401", 732)
    # only the scored frame got ground truth; the excluded one was seen without it
    assert fake.with_gt == [("401", 732)]
    real = cv2.imread(str(data_dir / "300vw_samples/401/imgs/000732.jpg")).astype(np.float32)
    assert np.abs(fake.kept[("401", 732)].astype(np.float32) - real).mean() < 4.0  # MJPG round trip
    assert fake.kept[("401", 1)].max() < 20  # padding frame, not the face
    assert r.errors[68] == pytest.approx([0.03], abs=1e-5) and r.errors[49] == pytest.approx([0.03], abs=1e-5)
    assert rep.categories[1].excluded == 1 and rep.categories[1].frames == 1
    assert set(rep.categories) == {1} and "001" not in rep.videos and "411" not in rep.videos


def test_figures_equal_hand_computed_values(clips: dict, tmp_path: Path) -> None:
    gts = clips["gts"]
    rep = ev.evaluate_300vw(clips["root"], [2, 3], predictor=OffsetPredictor(SHIFTS), mode="track",
                            points=(68, 49), out_dir=tmp_path / "rep", reference_dir=None)
    assert set(rep.videos) == {"411", "410"} and sorted(rep.skipped) == ["001", "401"]
    assert not rep.categories[2].present and rep.categories[3].present

    f411 = [n for n in range(1, 61) if n not in (19, 20, 60)]
    f410 = list(range(1, 31))
    e411, e410 = _errors("411", f411), _errors("410", f410)
    r411, r410 = rep.videos["411"], rep.videos["410"]
    assert r411.frame_numbers == tuple(f411) and r411.excluded_frames == (19, 20, 60) and r410.excluded == 0
    for p in (68, 49):
        np.testing.assert_allclose(r411.errors[p], e411, atol=2e-5)
        np.testing.assert_allclose(r410.errors[p], e410, atol=2e-5)
    assert r411.no_prediction == 2 and r410.no_prediction == 1
    # the same shifts over the box-diagonal normaliser (for the published reference curves)
    ratio = np.array([np.linalg.norm(gts["411"][n][36] - gts["411"][n][45]) /
                      np.linalg.norm(gts["411"][n].max(0) - gts["411"][n].min(0)) for n in f411])
    np.testing.assert_allclose(r411.errors_diag[49], e411 * ratio, atol=2e-5)

    pooled = np.concatenate([e411, e410])
    fin = pooled[np.isfinite(pooled)]
    hand = {
        "frames": 87,
        "mean_pooled": fin.mean(),
        "mean_of_videos": (e411[np.isfinite(e411)].mean() + e410[np.isfinite(e410)].mean()) / 2,
        "median_pooled": np.median(fin),
        "auc": np.mean([max(0.0, 1 - e / T) if np.isfinite(e) else 0.0 for e in pooled]),
        "failure": np.mean([not (e <= T) for e in pooled]),  # 0.1, 0.2 and the 3 no-face frames
    }
    assert hand["failure"] == pytest.approx(5 / 87)
    c3 = rep.categories[3]
    for p in (68, 49):
        for k, v in hand.items():
            assert c3.figures[p][k] == pytest.approx(v, abs=3e-5), (p, k)
    assert c3.frames == 87 and c3.excluded == 3 and c3.no_prediction == 3 and c3.videos == ("410", "411")
    # gross failures (> 0.20) over all frames, and the reported ones among them, from the stored errors
    stored = np.concatenate([r411.errors[68], r410.errors[68]])
    assert c3.figures[68]["failure_gross"] == pytest.approx(np.mean([not (e <= 0.2) for e in stored]))
    assert c3.figures[68]["gross_reported"] == int(np.sum(np.isfinite(stored) & (stored > 0.2)))
    assert c3.figures[68]["failure_gross"] >= 3 / 87  # the no-face frames at least
    assert r411.stats(68)["median"] == pytest.approx(np.median(e411[np.isfinite(e411)]), abs=2e-5)

    # still face, errors alternating 0.02 / 0.04: jitter is exactly 0.02 (frame 10 has no face)
    assert r410.jitter == pytest.approx(0.02, abs=1e-5) and r410.jitter_steps == 27
    j411, s411 = _hand_jitter(f411, "411", gts["411"])
    assert r411.jitter == pytest.approx(j411, abs=1e-5) and r411.jitter_steps == s411
    assert c3.jitter == pytest.approx((j411 * s411 + 0.02 * 27) / (s411 + 27), abs=1e-5)
    # every point carries the same shift, so the error changes alike at every point: flicker = jitter here
    assert r410.flicker == pytest.approx(0.02, abs=1e-5) and r411.flicker == pytest.approx(j411, abs=1e-5)
    assert c3.flicker == pytest.approx(c3.jitter, abs=1e-5)
    assert r411.fps_tracker > 0 and r411.fps_end_to_end > 0 and r411.predicted_frames == 60

    # the same figures on disk
    out = tmp_path / "rep"
    s = json.loads((out / "summary.json").read_text())
    assert s["categories"]["2"]["present"] is False
    assert s["categories"]["3"]["nme"]["68"]["mean_of_videos"] == pytest.approx(hand["mean_of_videos"], abs=3e-5)
    assert s["categories"]["3"]["excluded"] == 3
    rows = {r["video"]: r for r in csv.DictReader(open(out / "per_video.csv"))}
    assert rows["411"]["excluded"] == "3" and rows["411"]["no_prediction"] == "2"
    assert float(rows["410"]["nme49_mean"]) == pytest.approx(e410[np.isfinite(e410)].mean(), abs=2e-5)
    md = (out / "summary.md").read_text()
    assert "| 2 | 0 | no videos of this category" in md
    assert f"| 3 | 2 | 87 | 3 | 3 | {hand['mean_pooled']:.4f} |" in md
    saved = json.loads((out / "videos" / "411.json").read_text())
    assert saved["errors"]["68"][f411.index(40)] is None and saved["excluded_frames"] == [19, 20, 60]


def test_resume_skips_finished_videos_and_cancel_keeps_finished(clips: dict, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    cancel = threading.Event()
    events: list[ev.ProgressEvent] = []

    def progress(e: ev.ProgressEvent) -> None:
        events.append(e)
        if e.video_id == "411" and 1 <= e.frame < e.n_frames:
            cancel.set()

    first = ev.evaluate_300vw(clips["root"], [3], predictor=OffsetPredictor(SHIFTS), out_dir=out,
                              progress=progress, cancel=cancel, reference_dir=None)
    assert first.cancelled and set(first.videos) == {"410"}
    assert (out / "videos/410.json").exists() and not (out / "videos/411.json").exists()
    assert events[-1].video_id == "411" and events[0].n_videos == 2

    fake = OffsetPredictor(SHIFTS)
    second = ev.evaluate_300vw(clips["root"], [3], predictor=fake, out_dir=out, reference_dir=None)
    assert not second.cancelled and {v for v, _ in fake.calls} == {"411"}  # 410 reused
    np.testing.assert_array_equal(second.videos["410"].errors[68], first.videos["410"].errors[68])

    fake = OffsetPredictor(SHIFTS)
    ev.evaluate_300vw(clips["root"], [3], predictor=fake, out_dir=out, reference_dir=None)
    assert fake.calls == []
    ev.evaluate_300vw(clips["root"], [3], predictor=fake, out_dir=out, reference_dir=None, force=True)
    assert {v for v, _ in fake.calls} == {"410", "411"}
    # other settings (mode) -> not reused
    fake = OffsetPredictor(SHIFTS)
    ev.evaluate_300vw(clips["root"], [3], predictor=fake, out_dir=out, mode="gt-box", reference_dir=None)
    assert {v for v, _ in fake.calls} == {"410", "411"}


def test_ced_png_with_published_references(clips: dict, tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "rep"
    rep = ev.evaluate_300vw(clips["root"], [3], predictor=OffsetPredictor(SHIFTS), out_dir=out,
                            reference_dir=data_dir / "300vw_reference_errors")
    png = out / "ced_category3.png"
    assert png in rep.outputs and not (out / "ced_category1.png").exists()
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 500


def test_reference_labels_and_loading(data_dir: Path) -> None:
    from facetrack.eval.plots import load_reference_errors, reference_label

    assert reference_label("tracking_mdnet_cfss_category1.txt") == "MDNET + CFSS (Chrysos et al. 2017)"
    assert reference_label("tracking_mdnet_dlibERT_category1.txt") == "MDNET + ERT (dlib) (Chrysos et al. 2017)"
    assert reference_label("notes.txt") is None
    assert ev.model_label("aan+mdm") == "aan+mdm" and ev.model_label("/w/aan.onnx+/w/mdm-rt.onnx") == "aan+mdm-rt"
    refs = load_reference_errors(data_dir / "300vw_reference_errors", 3)
    assert len(refs) == 5 and all(len(v) == len(next(iter(refs.values()))) for v in refs.values())


def test_cli_reuses_finished_videos_and_reports_empty_category(clips: dict, tmp_path: Path, capsys) -> None:
    from facetrack.cli.main import main

    out = tmp_path / "rep"
    ev.evaluate_300vw(clips["root"], [3], predictor=OffsetPredictor(SHIFTS), out_dir=out, mode="gt-box",
                      model="aan+mdm", backend="auto", reference_dir=None)
    # every video finished with the same settings (aan+mdm is the CLI's default): no model is loaded,
    # the report is rewritten
    (out / "summary.md").unlink()
    assert main(["eval-300vw", str(clips["root"]), "--category", "3", "--mode", "gt-box", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| 3 | 2 | 87 |" in captured.out and "finished earlier" in captured.err
    assert (out / "summary.md").exists()
    assert main(["eval-300vw", str(clips["root"]), "--category", "2", "--out", str(tmp_path / "x")]) == 1
    assert "no videos of categories 2" in capsys.readouterr().err
    assert main(["eval-300vw", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 1
    assert "missing: not a directory" in capsys.readouterr().err


def test_bad_inputs_name_the_problem(clips: dict, tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ValueError, match="category 4"):
        ev.evaluate_300vw(clips["root"], [4], predictor=OffsetPredictor())
    with pytest.raises(ValueError, match="mode"):
        ev.evaluate_300vw(clips["root"], [3], mode="oracle", predictor=OffsetPredictor())
    root = tmp_path / "bad"
    moving_face_clip(root, data_dir, "410", 3, moving=False)
    (root / "410/annot/000002.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(ValueError, match=r"000002\.pts"):
        ev.evaluate_300vw(root, [3], predictor=OffsetPredictor())


@pytest.mark.parametrize("mode", ev.MODES)
def test_real_models_end_to_end(clips: dict, tmp_path: Path, mode: str) -> None:
    """The shipped mdm-rt through each real predictor (no skip: the weights are package data)."""
    rep = ev.evaluate_300vw(clips["root"], [3], videos=["411"], model="mdm", backend="onnxruntime", mode=mode,
                            out_dir=tmp_path / mode, max_frames=30, reference_dir=None)
    r = rep.videos["411"]
    assert r.frames == 28 and r.excluded == 2
    assert np.isfinite(r.errors[68]).sum() >= 20, "the real pipeline found the face on few frames"
    # gt-box crops from the truth every frame; track/detector start from a box and (track)
    # carry the previous frame's shape, so a short-trained model may drift a little past 0.08.
    assert np.median(r.errors[68][np.isfinite(r.errors[68])]) < (T if mode == "gt-box" else 0.12)
    assert r.fps_tracker > 0 and (tmp_path / mode / "summary.md").exists()


def test_the_shipped_300vw_sample_of_jpeg_frames_evaluates_from_the_documented_command(data_dir: Path, tmp_path: Path,
                                                                                        capsys) -> None:
    """README: ``facetrack eval-300vw $FACETRACK_DATA/300vw_samples --mode gt-box --out report``
    (frames as ``imgs/NNNNNN.jpg``, no ``vid.avi``): video 401 is scored on frame 732, its
    frame 731 is excluded as broken, training video 001 is skipped."""
    from facetrack.cli.main import main

    out = tmp_path / "rep"
    assert main(["eval-300vw", str(data_dir / "300vw_samples"), "--mode", "gt-box", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    v = summary["videos"]["401"]
    assert (v["frames"], v["excluded"], v["no_prediction"]) == (1, 1, 0) and summary["skipped_videos"] == ["001"]
    assert 0 < v["nme68_mean"] < 0.2  # the shipped mdm-rt on a real frame (0.117 measured)
    assert "| 1 | 1 | 1 | 1 | 0 |" in capsys.readouterr().out


def test_each_video_is_opened_once(clips: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real = cv2.VideoCapture

    def counting(*args, **kw):
        opened.append(str(args[0]))
        return real(*args, **kw)

    monkeypatch.setattr(cv2, "VideoCapture", counting)
    ev.evaluate_300vw(clips["root"], [3], predictor=OffsetPredictor(SHIFTS), reference_dir=None)
    assert sorted(Path(p).parent.name for p in opened) == ["410", "411"], opened


def test_reference_curves_come_from_an_option_or_the_environment_only(monkeypatch: pytest.MonkeyPatch,
                                                                      data_dir: Path, tmp_path: Path) -> None:
    monkeypatch.delenv("FACETRACK_DATA", raising=False)
    assert ev.reference_dir_from_env() is None  # nothing guessed next to the installation
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path))
    assert ev.reference_dir_from_env() is None
    monkeypatch.setenv("FACETRACK_DATA", str(data_dir))
    assert ev.reference_dir_from_env() == data_dir / "300vw_reference_errors"


def test_ced_plot_says_the_published_normalisation_is_not_stated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from facetrack.eval import plots

    texts: list[str] = []
    real = Figure.text
    monkeypatch.setattr(Figure, "text", lambda self, x, y, s, *a, **k: (texts.append(s), real(self, x, y, s, *a, **k))[1])
    errors = np.linspace(0.01, 0.05, 50)
    plots.plot_ced({"ours": errors}, tmp_path / "a.png")
    assert texts == []
    plots.plot_ced({"ours": errors}, tmp_path / "b.png", references={"MDNET + CFSS (Chrysos et al. 2017)": errors})
    assert texts == [plots.REFERENCE_NOTE] and "normalisation is not stated" in texts[0]
