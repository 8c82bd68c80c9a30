"""``facetrack eval-images``: still-image scoring, 300-W grouping, misses as failures, bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facetrack.eval.images import FaceResult, evaluate, find_images, group_300w, summarise


def test_300w_groups_from_paths() -> None:
    assert group_300w(Path("/d/300W/helen/testset/a.jpg")) == "common"
    assert group_300w(Path("/d/images68/lfpw_test/a.jpg")) == "common"
    assert group_300w(Path("/d/ibug/a.jpg")) == "challenging"
    assert group_300w(Path("/d/helen/trainset/a.jpg")) is None


def test_box_files_of_train_folders_never_stand_in_for_test_images(tmp_path: Path) -> None:
    from facetrack.eval.images import BoxIndex

    for folder in ("lfpw/trainset", "helen/testset", "helen/trainset"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "lfpw/trainset/image_0010.pts").write_text("x")
    (tmp_path / "helen/testset/a.pts").write_text("x")
    (tmp_path / "helen/trainset/a.pts").write_text("x")
    idx = BoxIndex(tmp_path)
    assert idx.find(Path("/d/images68/lfpw_test/image_0010.png")) is None  # only a train-folder namesake
    assert idx.find(Path("/d/images68/helen_test/a.jpg")) == tmp_path / "helen/testset/a.pts"
    assert idx.find(Path("/d/helen/trainset/a.jpg")) == tmp_path / "helen/trainset/a.pts"


def test_summary_counts_misses_as_failures() -> None:
    ok = {"nme68": 0.04, "nme49": 0.03, "nme68_pupil": 0.05, "nme68_diag": 0.02}
    res = [FaceResult("a", "common", errors=ok), FaceResult("b", "common", missed=True),
           FaceResult("c", "challenging", errors={**ok, "nme68": 0.12})]
    s = summarise(res)
    assert s["common"]["faces"] == 2 and s["common"]["missed"] == 1 and s["common"]["nme68"] == pytest.approx(0.04)
    assert s["common"]["failure"] == pytest.approx(0.5) and s["common"]["auc"] == pytest.approx(0.5 * (1 - 0.04 / 0.08))
    assert s["full"]["faces"] == 3 and s["full"]["failure"] == pytest.approx(2 / 3) and s["challenging"]["auc"] == 0.0


def test_summary_counts_gross_and_confident_failures() -> None:
    """A wrong face reported as right (NME68 0.30 at confidence 0.9) is a confident failure; the
    same error at a refusing confidence, a mere failure (0.12) and a miss are not."""
    from facetrack.eval.images import ACCEPT
    from facetrack.tracker.tracker import TrackerConfig

    assert ACCEPT == TrackerConfig().confidence_threshold  # the tracker's own threshold
    ok = {"nme68": 0.04, "nme49": 0.03, "nme68_pupil": 0.05, "nme68_diag": 0.02}
    res = [FaceResult("good", "g", errors=ok, confidence=0.95),
           FaceResult("wrong", "g", errors={**ok, "nme68": 0.30}, confidence=0.9),
           FaceResult("refused", "g", errors={**ok, "nme68": 0.40}, confidence=0.2),
           FaceResult("poor", "g", errors={**ok, "nme68": 0.12}, confidence=0.9),
           FaceResult("missed", "g", missed=True)]
    s = summarise(res)["g"]
    assert s["failure"] == pytest.approx(4 / 5) and s["failure_gross"] == pytest.approx(3 / 5)
    assert s["confident_failures"] == 1 and s["confident_faces"] == ["wrong"]
    assert s["median_nme68"] == pytest.approx((0.12 + 0.30) / 2)
    assert summarise(res, accept=0.95)["g"]["confident_failures"] == 0


def test_scores_agree_with_the_landmarker_and_the_cli(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facetrack.cli.main import main
    from facetrack.tracker.geometry import box_of, to_gray
    from facetrack.io.landmarks import read_pts
    from facetrack.tracker.landmarker import TIGHT_BOX, Landmarker
    from facetrack.eval.metrics import nme
    from facetrack.tracker.models import resolve_model

    src = data_dir / "images68" / "helen_test"
    tmp_path = tmp_path / "faces"
    tmp_path.mkdir()
    for f in sorted(src.iterdir())[:4]:  # two faces
        shutil.copy(f, tmp_path / f.name)
    images = find_images([tmp_path])
    assert len(images) == 2 and all(i.group == tmp_path.name for i in images)
    res = evaluate(images, "mdm-rt", "gt")
    import cv2

    lm = Landmarker(resolve_model("mdm-rt"))
    for r, item in zip(res, images):
        gt = read_pts(item.labels)
        pred = lm.fit_box(to_gray(cv2.imread(str(item.image))), box_of(gt), calibration=TIGHT_BOX).landmarks
        assert r.errors["nme68"] == pytest.approx(float(nme(pred, gt)), rel=1e-6)
        assert 0.0 < r.errors["nme68"] < 0.15 and r.errors["nme68_diag"] < r.errors["nme68"]
    out = tmp_path / "r.json"
    assert main(["eval-images", str(tmp_path), "--model", "mdm-rt", "--box", "gt", "--json", str(out)]) == 0
    assert "| " + tmp_path.name + " | 2 | 0 |" in capsys.readouterr().out
    assert json.loads(out.read_text())["summary"][tmp_path.name]["nme68"] == pytest.approx(np.mean([r.errors["nme68"] for r in res]))
    # --flip scores the mirror-averaged fits, as `facetrack IMAGES` makes them
    flipped = evaluate(images, "mdm-rt", "gt", flip=True)
    mirrored = Landmarker(resolve_model("mdm-rt"), flip=True)
    for r, item in zip(flipped, images):
        gt = read_pts(item.labels)
        pred = mirrored.fit_box(to_gray(cv2.imread(str(item.image))), box_of(gt), calibration=TIGHT_BOX).landmarks
        assert r.errors["nme68"] == pytest.approx(float(nme(pred, gt)), rel=1e-6)
    assert [r.errors["nme68"] for r in flipped] != [r.errors["nme68"] for r in res]
    assert main(["eval-images", str(tmp_path), "--model", "mdm-rt", "--box", "gt", "--flip"]) == 0
    assert "mdm-rt (flip), gt box" in capsys.readouterr().out
    # bad input: one line, exit 2
    assert main(["eval-images", str(tmp_path), "--box", "300w"]) == 2
    assert "needs --boxes" in capsys.readouterr().err
    assert main(["eval-images", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "noboxes").mkdir()
    assert main(["eval-images", str(tmp_path), "--box", "300w", "--boxes", str(tmp_path / "noboxes")]) == 2
    assert "no 300-W box for any of the 2 images" in capsys.readouterr().err
    assert main(["eval-images", str(tmp_path), "--box", "300w", "--boxes", str(tmp_path)]) == 2  # 68-point files are no boxes
    assert "expected 4 points, found 68" in capsys.readouterr().err


def test_ced_without_matplotlib_is_one_line_before_any_work(data_dir: Path, tmp_path: Path) -> None:
    """``--ced`` without matplotlib: one line and exit 2 before the evaluation (it printed the
    table, then a traceback), and the default model is the one every other job uses."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from facetrack.cli.main import main\n"
            f"sys.exit(main(['eval-images', {str(data_dir / 'images68' / 'helen_train')!r}, '--ced', {str(tmp_path / 'c.png')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [f"facetrack eval-images: --ced {tmp_path / 'c.png'}: needs matplotlib (pip install 'facetrack[plot]')"], r.stderr
    assert r.stdout == "" and not (tmp_path / "c.png").exists()
    import argparse

    from facetrack.eval.images import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["x"]).model == "aan+mdm"
