"""The One Euro sweep of ``facetrack.bench.smoothing``: its argument checks and its cost probe
(the sweep itself runs the CLI on 7 x 13 clips and is a benchmark, not a test)."""
from __future__ import annotations

from pathlib import Path

from facetrack.bench import smoothing


def test_rejects_settings_the_filter_refuses(tmp_path: Path, data_dir: Path, capsys) -> None:
    assert smoothing.main(["--data", str(data_dir), "--out", str(tmp_path), "--min-cutoff", "0"]) == 2
    assert smoothing.main(["--data", str(data_dir), "--out", str(tmp_path), "--beta", "-1"]) == 2
    assert "--min-cutoff and --shape-min-cutoff must be > 0" in capsys.readouterr().err
    assert smoothing.main(["--data", str(data_dir), "--out", str(tmp_path), "--shape-beta", "-1"]) == 2
    assert not list(tmp_path.iterdir()), "nothing is written for settings that are refused"


def test_missing_data_folder_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("FACETRACK_DATA", raising=False)
    assert smoothing.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "FACETRACK_DATA" in err


def test_filter_cost_is_measured() -> None:
    us = smoothing.filter_cost_us(1.0, 40.0, frames=50)
    assert 0 < us < 1e5
