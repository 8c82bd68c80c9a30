"""No pickle anywhere (issue 34, item 6): every ``torch.load`` in the project reads weights only,
nothing unpickles. A crafted ``last.pt`` ran a command through the face detector's ``--resume``
(``torch.load(..., weights_only=False)`` in facetrack/train/loops/face_detector.py); this test
reads every Python file of the package, the tests and the scripts, so a new load cannot bring it back."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: modules that deserialise code or arbitrary objects
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}
#: calls that unpickle whatever their module is imported as
UNSAFE_CALLS = {"read_pickle", "load_pickle", "loads_pickle"}


def _files() -> list[Path]:
    return sorted(p for d in ("facetrack", "tests", "scripts") for p in (REPO / d).rglob("*.py"))


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = lambda n: f"{path.relative_to(REPO)}:{n.lineno}"  # noqa: E731
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out += [f"{where(node)}: imports {m}" for m in mods if m.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = _name(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        if func.endswith("torch.load") or func == "load" and "weights_only" in kw:
            w = kw.get("weights_only")
            if not (isinstance(w, ast.Constant) and w.value is True):
                out.append(f"{where(node)}: {func}(...) without weights_only=True")
        if func.split(".")[-1] == "load" and func.startswith(("np.", "numpy.")):
            a = kw.get("allow_pickle")
            if a is not None and not (isinstance(a, ast.Constant) and a.value is False):
                out.append(f"{where(node)}: {func}(allow_pickle=...) may unpickle")
        if func.split(".")[-1] in UNSAFE_CALLS:
            out.append(f"{where(node)}: {func}(...)")
    return out


def test_no_pickle_loads_in_the_project():
    files = _files()
    assert len(files) > 100 and any(p.name == "face_detector.py" for p in files)
    problems = [msg for p in files for msg in _problems(p)]
    assert not problems, "\n".join(problems)
    texts = {p: p.read_text(encoding="utf-8") for p in files if p != Path(__file__).resolve()}
    assert not [str(p) for p, t in texts.items() if "weights_only=False" in t]


def test_the_check_finds_what_it_is_for(tmp_path):
    """The scanner itself: each unsafe form it must catch, and the safe ones it must pass."""
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nfrom dill import loads\nimport torch, numpy as np\n"
                   "torch.load('x')\ntorch.load('x', weights_only=False)\nnp.load('x', allow_pickle=True)\n"
                   "import pandas as pd\npd.read_pickle('x')\n")
    good = tmp_path / "good.py"
    good.write_text("import torch, numpy as np\ntorch.load('x', map_location='cpu', weights_only=True)\nnp.load('x')\n"
                    "np.load('x', allow_pickle=False)\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert len(_problems(bad)) == 6 and _problems(good) == []
    finally:
        REPO = saved
