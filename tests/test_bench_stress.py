"""The stress set of issue 30 (facetrack.bench.stress) on the real images68 training pool."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetrack.bench import stress
from facetrack.tracker.results import FaceResult, FaceState


def test_outcomes_by_error() -> None:
    assert [stress.outcome(e) for e in (None, 0.03, 0.08, 0.0801, 0.2, 0.21)] == ["refused", "right", "right", "poor", "poor", "wrong"]


def test_the_face_scored_is_the_reported_one_on_the_truth() -> None:
    gt = np.stack(np.meshgrid(np.linspace(100, 200, 17), np.linspace(100, 200, 4)), -1).reshape(-1, 2)[:68].astype(np.float32)
    on = FaceResult(0, gt + 5, 0.9, True, np.zeros(4, np.float32), FaceState.DETECTED)
    off = FaceResult(1, gt + 300, 0.99, True, np.zeros(4, np.float32), FaceState.DETECTED)
    lost = FaceResult(2, gt, 0.1, False, np.zeros(4, np.float32), FaceState.LOST)
    assert stress.nearest([off, on, lost], gt) is on
    assert stress.nearest([off, lost], gt) is None  # a face elsewhere, or lost, is not reported on it


@pytest.fixture(scope="module")
def rows(data_dir: Path) -> list[dict]:
    return stress.run(data_dir, faces=2, seed=0)


def test_every_case_is_scored(rows: list[dict]) -> None:
    faces = {r["face"] for r in rows}
    assert len(faces) >= 30 and len(rows) == 6 * len(faces)  # images68 pool + 2 held-out pseudo_v2 faces
    assert {r["case"] for r in rows} == set(stress.CASES)
    assert not any("helen_test" in r["face"] or "lfpw_test" in r["face"] or "ibug" in r["face"] for r in rows)  # never test faces
    for r in rows:
        assert r["outcome"] == stress.outcome(r["error"])
        assert (r["confidence"] is None) == (r["error"] is None)
        if r["confidence"] is not None:
            assert r["confidence"] >= 0.5  # a reported face passed the tracker's threshold
    big = [r for r in rows if r["case"] == "enlarged"]
    assert all(1e6 <= r["frame"][0] * r["frame"][1] <= 3.01e6 for r in big)


def test_enlarged_faces_are_fitted_or_refused_and_small_starts_rarely_wrong(rows: list[dict]) -> None:
    """A face filling the frame: right, or refused, never a wrong face reported. Starts a third
    to a half of the face's size: refused by the scale check (4 of the pool's 30 were reported
    wrong without it, 1 of these 32 with it); turned faces and the other starts still hold
    confident failures (docs/GROSS_FAILURES.md)."""
    wrong = [Path(r["face"]).name for r in rows if r["case"] == "enlarged" and r["outcome"] == "wrong"]
    assert not wrong
    assert sum(r["outcome"] == "right" for r in rows if r["case"] == "enlarged") >= 20
    small = [r for r in rows if r["case"] == "small"]
    assert sum(r["outcome"] == "wrong" for r in small) <= 1 and sum(r["outcome"] == "refused" for r in small) >= 25


def test_bad_data_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stress.main(["--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0]
