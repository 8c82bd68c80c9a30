"""``python -m facetrack.bench.pareto``: the configurations, the resumable run folders, the
Pareto front, the table and its bad inputs (the measurements themselves are not tested: timing)."""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from facetrack.bench import pareto
from facetrack.bench.pareto import BenchError, Capacity, conclusion, pareto_front, run_state, table, train_command
from facetrack.train.models.registry import config_for, config_to_dict, overrides_of, with_overrides


def test_every_configuration_is_valid_and_only_the_shipped_ones_have_no_changes() -> None:
    names = [c.name for c in pareto.CONFIGS]
    assert len(set(names)) == len(names) and {"mdm-rt", "aan"} <= set(names)
    for c in pareto.CONFIGS:
        cfg = with_overrides(config_for(c.arch), c.config)
        assert (overrides_of(cfg) == {}) == (c.name in ("mdm-rt", "aan")), c
        assert c.name.replace("-", "").isalnum()  # a folder name


def test_the_training_command_is_the_same_for_every_configuration(tmp_path: Path) -> None:
    cap = Capacity("x", "mdm-rt", ("hidden_size=256", "conv_channels=16,32"))
    cmd = train_command(cap, tmp_path / "x", Path("/data"), 1500, 500, python="py")
    assert cmd[:5] == ["py", "-m", "facetrack", "train", "mdm-rt"]
    joined = " ".join(cmd)
    assert "--data images68:4 pseudo_dlib:1 pseudo_v2:1 --data-root /data" in joined
    assert "--steps 1500 --batch 16 --seed 0 --val-every 500 --threads 1 --workers 1" in joined
    assert cmd[-3:] == ["--config", "hidden_size=256", "conv_channels=16,32"]
    assert train_command(cap, tmp_path, Path("/d"), 10, 5, resume=True)[-1] == "--resume"
    assert "--config" not in train_command(Capacity("aan", "aan"), tmp_path, Path("/d"), 10, 5)
    # the command line it builds is one the trainer's parser accepts
    import argparse

    from facetrack.cli.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(cmd[4:])
    assert args.config == list(cap.config) and args.steps == 1500 and args.workers == 1


def _run(folder: Path, config: dict, planned: int, final: int | None, best: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "last.pt").write_bytes(b"x")
    if best:
        (folder / "best.pt").write_bytes(b"x")
    if final is not None:
        (folder / "record.json").write_text(json.dumps({"options": {"steps": planned}, "final": {"step": final}}))


def test_run_folders_are_reused_resumed_or_refused(tmp_path: Path) -> None:
    cfg = config_to_dict(with_overrides(config_for("mdm-rt"), ["hidden_size=256"]))
    assert run_state(tmp_path / "none", cfg, 100) == "empty"
    _run(tmp_path / "done", cfg, 100, 100)
    assert run_state(tmp_path / "done", cfg, 100) == "done"
    _run(tmp_path / "stopped", cfg, 100, 40)  # interrupted: record written at step 40
    assert run_state(tmp_path / "stopped", cfg, 100) == "partial"
    _run(tmp_path / "killed", cfg, 100, None)  # killed: checkpoint, no record
    assert run_state(tmp_path / "killed", cfg, 100) == "partial"
    with pytest.raises(BenchError, match="holds another configuration"):
        run_state(tmp_path / "done", config_to_dict(config_for("mdm-rt")), 100)
    with pytest.raises(BenchError, match="trained for 100 steps, not 200"):
        run_state(tmp_path / "done", cfg, 200)


def test_pareto_front_by_hand() -> None:
    pts = {"a": (1.0, 0.10), "b": (2.0, 0.08), "c": (3.0, 0.09), "d": (2.0, 0.08), "e": (0.5, 0.20), "f": (1.0, 0.12)}
    # c: b is cheaper and better; f: a has the same cost and less error; b and d tie (neither beats the other)
    assert pareto_front(pts) == {"a", "b", "d", "e"}
    assert pareto_front({"only": (5.0, 0.5)}) == {"only"}


def _rows() -> list[dict]:
    # the front and the budget go by the landmark step (step_cpu_ms), not the model call alone
    return [{"name": "big", "label": "mdm-rt (shipped)", "steps": 1500, "params": 1448561, "cpu_ms": 4.5, "step_cpu_ms": 5.0,
             "val_nme": 0.05, "val_nme_human": 0.07},
            {"name": "small", "label": "mdm-rt patch_samples=10", "steps": 1500, "params": 612977, "cpu_ms": 1.5, "step_cpu_ms": 2.0,
             "val_nme": 0.06, "val_nme_human": None},
            {"name": "worse", "label": "aan (shipped)", "steps": 700, "params": 969713, "cpu_ms": 1.0, "step_cpu_ms": 3.0,
             "val_nme": 0.07, "val_nme_human": 0.09}]


def test_table_marks_the_front_and_the_budget() -> None:
    lines = table(_rows(), budget_ms=4.0).splitlines()
    assert lines[0].startswith("| configuration | steps | parameters | model CPU ms | landmark step CPU ms | val NME % | human val NME %")
    body = {ln.split("`")[1]: [c.strip() for c in ln.split("|")[1:-1]] for ln in lines[2:]}
    assert [ln.split("`")[1] for ln in lines[2:]] == ["small", "worse", "big"]  # by landmark step
    assert body["big"][2:] == ["1,448,561", "4.50", "5.00", "5.00", "7.00", "yes", "no"]
    assert body["small"][2:] == ["612,977", "1.50", "2.00", "6.00", "-", "yes", "yes"]
    assert body["worse"][-2:] == ["no", "yes"]
    assert "`small`" in conclusion(_rows(), 4.0) and "6.00 %" in conclusion(_rows(), 4.0)
    assert "No configuration is within" in conclusion(_rows(), 1.0)
    assert table(_rows(), None).splitlines()[2].endswith("| - |")


def test_bad_inputs_are_one_line_and_exit_2(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACETRACK_PEERS_PYTHON", raising=False)
    assert pareto.main(["--out", str(tmp_path), "--data", str(data_dir), "--configs", "mdm-rt", "nope"]) == 2
    assert "unknown configuration(s) nope" in capsys.readouterr().err
    assert pareto.main(["--out", str(tmp_path), "--data", str(data_dir), "--mdm-steps", "0"]) == 2
    assert ">= 1" in capsys.readouterr().err
    assert pareto.main(["--out", str(tmp_path), "--data", str(data_dir)]) == 2
    assert "no peers interpreter" in capsys.readouterr().err
    assert pareto.main(["--out", str(tmp_path), "--data", str(tmp_path / "missing"), "--train-only"]) == 2
    assert "no such data folder" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing trained or written


def test_module_level_imports_are_the_standard_library_only() -> None:
    """The peers' interpreter runs this file as a script (``--mediapipe-worker``): no facetrack,
    numpy or torch at module level."""
    tree = ast.parse(Path(pareto.__file__).read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    mods = {(a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0] for n in top for a in n.names}
    assert mods and mods <= set(sys.stdlib_module_names) | {"__future__"}, mods
