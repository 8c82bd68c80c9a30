"""ship.patch_confidence_head: a new confidence head written into the shipped mdm-rt files,
every landmark unchanged and the confidence the new head's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def test_patched_head_changes_the_confidence_only(tmp_path: Path) -> None:
    from facetrack.engines.registry import open_backend
    from facetrack.tracker.models import resolve_model
    from facetrack.train.export.ship import patch_confidence_head
    from facetrack.train.loops.confidence_head import shipped_head

    src = resolve_model("mdm-rt")
    w0, b0 = shipped_head("main")
    w, b = 0.5 * w0 + np.random.default_rng(0).normal(0, 0.01, w0.shape), b0 - 1.0
    written = patch_confidence_head(src, tmp_path, w, b, {"test": True})
    assert [p.name for p in written] == ["mdm-rt.onnx", "mdm-rt.int8.onnx"]
    rng = np.random.default_rng(1)
    feed = {"image": rng.random((3, 1, 112, 112), dtype=np.float32), "init_shape": None, "hidden": np.zeros((3, 512), np.float32)}
    for int8 in (True, False):
        old = open_backend(src, backend="onnxruntime", threads=1, int8=int8)
        new = open_backend(tmp_path / "mdm-rt.onnx", backend="onnxruntime", threads=1, int8=int8)
        assert new.file.name == ("mdm-rt.int8.onnx" if int8 else "mdm-rt.onnx")  # the int8 file knows its new source
        if feed["init_shape"] is None:
            import json

            from facetrack.engines import names
            feed["init_shape"] = np.tile(np.asarray(json.loads(old.metadata[names.MEAN_SHAPE]), np.float32), (3, 1, 1))
        a = {k: np.array(v) for k, v in old.infer(feed).items()}
        c = {k: np.array(v) for k, v in new.infer(feed).items()}
        np.testing.assert_array_equal(a["landmarks"], c["landmarks"])
        np.testing.assert_array_equal(a["hidden_out"], c["hidden_out"])
        expect = 1 / (1 + np.exp(-(c["hidden_out"].astype(np.float64) @ w + b)))
        np.testing.assert_allclose(c["confidence"].ravel(), expect, atol=2e-3 if int8 else 1e-5)
        assert not np.allclose(a["confidence"], c["confidence"], atol=1e-3)
        old.close(), new.close()
