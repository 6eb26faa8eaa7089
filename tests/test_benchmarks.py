"""The benchmarks import what the package has: a rename in the package breaks them here, not on the next run."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_every_name_a_benchmark_imports_from_stackcube_exists(path: Path) -> None:
    imported = [
        (node.module, alias.name)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "stackcube"
        for alias in node.names
    ]
    missing = [f"{module}.{name}" for module, name in imported if not hasattr(importlib.import_module(module), name)]
    assert not missing, f"{path.name} imports what stackcube no longer has: {missing}"


def test_the_benchmarks_are_found() -> None:
    assert len(BENCHMARKS) >= 10
