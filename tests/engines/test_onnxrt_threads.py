"""ONNX Runtime backend: imported without loading onnxruntime; one intra-op thread by default;
threads never spin (spinning doubled the CPU time per frame on a loaded machine)."""
from __future__ import annotations

import subprocess
import sys

from facetrack.engines import onnxrt
from facetrack.tracker.models import resolve_model


def test_importing_the_backend_module_does_not_load_onnxruntime() -> None:
    code = "import sys, facetrack.engines.onnxrt; print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_default_is_one_thread_and_threads_do_not_spin() -> None:
    with onnxrt.OnnxRuntimeBackend(resolve_model("mdm")) as default, onnxrt.OnnxRuntimeBackend(resolve_model("mdm"), threads=2) as two:
        for backend, threads in ((default, 1), (two, 2)):
            opts = backend._session.get_session_options()
            assert opts.intra_op_num_threads == threads
            assert opts.get_session_config_entry(onnxrt.ALLOW_SPINNING) == "0"
