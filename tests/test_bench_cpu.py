"""The paired CPU benchmark's child commands (facetrack/bench/cpu.py): the facetrack command,
the baseline command measured in the same rounds, and the MediaPipe worker."""
from __future__ import annotations

import argparse
from pathlib import Path

from facetrack.bench import cpu


def test_facetrack_and_baseline_commands_differ_only_in_the_program_and_the_csv(tmp_path):
    args = argparse.Namespace(facetrack="/new/facetrack", baseline="/old/facetrack", peers_python="/peers/python",
                              extra=["--max-faces", "4"])
    video = Path("/v/clip.mp4")
    new = cpu.commands("facetrack", video, 10, args, tmp_path)
    old = cpu.commands("baseline", video, 10, args, tmp_path)
    assert new[0] == "/new/facetrack" and old[0] == "/old/facetrack"
    assert new[1] == old[1] == str(video) and new[-2:] == old[-2:] == ["--max-faces", "4"]
    assert "--end" in new and new[new.index("--end") + 1] == "10f"
    out_new, out_old = new[new.index("--out") + 1], old[old.index("--out") + 1]
    assert out_new != out_old and Path(out_new).parent == Path(out_old).parent == tmp_path
    assert [a for a in new if a not in (new[0], out_new)] == [a for a in old if a not in (old[0], out_old)]
    mp = cpu.commands("mediapipe", video, 10, args, tmp_path)
    assert mp[0] == "/peers/python" and mp[2:] == ["--mediapipe", str(video), "10"]
