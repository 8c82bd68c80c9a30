"""The import contract of the ``facetrack`` packages, checked statically on the source.

Allowed directions (docs/ARCHITECTURE.md)::

    cli                 (on top: may import any package; nothing imports it but ``facetrack``)
    bench               -> api, train (not gui)
    api                 -> tracker, io (``facetrack.FaceTracker``; gui and train do not use it)
    gui, train          -> eval -> tracker, io -> engines
    nothing imports gui (only cli, which launches it)

Every ``import``/``from ... import`` is read with :mod:`ast`, at module level and inside
functions alike (the lazy imports are the ones that slip), plus string literals that are
exactly the dotted name of a facetrack module (``importlib.import_module`` tables such as the
backend registry's): a module path in a string is an import too.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "facetrack"

#: layer -> the layers it may import (itself always allowed). ``facetrack`` is the package's
#: own ``__init__``/``__main__``.
ALLOWED: dict[str, set[str]] = {
    "engines": set(),
    "io": {"engines"},
    "tracker": {"engines"},
    "eval": {"tracker", "io", "engines"},
    "train": {"eval", "tracker", "io", "engines"},
    "gui": {"eval", "tracker", "io", "engines"},
    "api": {"tracker", "io", "engines"},
    "bench": {"api", "train", "eval", "tracker", "io", "engines"},
    "cli": {"api", "bench", "gui", "train", "eval", "tracker", "io", "engines"},
    "facetrack": {"cli", "api", "tracker", "io"},
}


def layer_of(module: str) -> str:
    """``facetrack.io.landmarks`` -> ``tracker``; ``facetrack.cli.main`` -> ``cli``; ``facetrack`` and
    ``facetrack.__main__`` -> ``facetrack``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "facetrack"
    return parts[1]


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def imports_of(path: Path, root: Path, known: set[str]) -> list[tuple[int, str]]:
    """``(line, imported facetrack module)`` for every import in ``path``, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    docstrings = _docstring_nodes(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names if f"{target}.{a.name}" in known]
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and node.value in known):
            found.append((node.lineno, node.value))
    return [(line, m) for line, m in found if m == "facetrack" or m.startswith("facetrack.")]


def violations(root: Path) -> list[str]:
    """Every import against the contract under package folder ``root``, as ``file:line: a -> b``."""
    files = sorted(root.rglob("*.py"))
    known = {module_name(f, root) for f in files}
    out: dict[tuple[Path, int, str], str] = {}
    for f in files:
        src = layer_of(module_name(f, root))
        for line, target in imports_of(f, root, known):
            dst = layer_of(target)
            if dst != src and dst != "facetrack" and dst not in ALLOWED.get(src, set()):
                out.setdefault((f, line, dst), f"{f.relative_to(root.parent)}:{line}: {src} -> {dst} ({target})")
    return list(out.values())


def test_every_layer_is_known():
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    layers |= {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert layers <= set(ALLOWED), f"packages without a place in the contract: {sorted(layers - set(ALLOWED))}"


def test_no_module_imports_against_the_direction():
    bad = violations(PACKAGE)
    assert not bad, "imports against the contract (docs/ARCHITECTURE.md):\n" + "\n".join(bad)


def test_the_contract_catches_injected_bad_imports(tmp_path):
    """The check can fail: a copy of the package with one bad import of each hidden kind."""
    copy = tmp_path / "facetrack"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "weights", "data"))
    injected = {
        "engines/names.py": "\n\ndef _late():\n    from facetrack.tracker import geometry  # function-level\n    return geometry\n",
        "eval/metrics.py": "\n\nimport facetrack.gui.views  # nothing imports gui\n",
        "train/loops/trainer.py": "\n\nfrom facetrack.bench import peers  # bench is on top\n",
        "engines/errors.py": "\n\n_LAZY = ('facetrack.train.models.registry', 'X')  # a module path in a table\n",
        "gui/frames.py": "\n\nfrom ..train import models  # relative\n",
    }
    for rel, text in injected.items():
        with open(copy / rel, "a", encoding="utf-8") as fh:
            fh.write(text)
    before = {b.split(":")[0] + b[b.index(": "):] for b in violations(PACKAGE)}  # the tree's own, if any
    bad = [b for b in violations(copy) if b.split(":")[0] + b[b.index(": "):] not in before]
    assert len(bad) == len(injected), bad
    for rel, want in zip(injected, ["engines -> tracker", "eval -> gui", "train -> bench", "engines -> train",
                                    "gui -> train"]):
        assert any(b.startswith(f"facetrack/{rel}:") and want in b for b in bad), (rel, bad)


def test_top_level_names_are_not_importable_from_outside_the_repository(tmp_path):
    """Only ``facetrack`` is installed: ``import train`` / ``gui`` / ``tracker`` / ``engines``
    fail from another folder (a user's own ``train.py`` cannot shadow ours)."""
    code = textwrap.dedent("""
        import importlib, sys
        import facetrack
        for name in ("train", "gui", "tracker", "engines", "benchmarks_cli"):
            try:
                importlib.import_module(name)
            except ImportError:
                continue
            print("importable:", name, sys.modules[name].__file__)
            sys.exit(1)
        print("OK")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr
