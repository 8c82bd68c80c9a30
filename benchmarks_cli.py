"""``facetrack bench``: the comparison benchmark of ``benchmarks/bench.py`` (source checkout only:
the ``benchmarks`` folder is not part of the installed package)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`benchmarks.bench.add_arguments`."""
    from benchmarks.bench import add_arguments as _add

    _add(parser)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; exit code."""
    from benchmarks.bench import run as _run

    return _run(args)
