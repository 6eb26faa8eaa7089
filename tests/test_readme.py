"""The README's Python examples run as written, and its claims about them hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, require


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.corpus
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_runs(corpus, index, monkeypatch) -> None:
    require(corpus.is_dir(), "corpus missing")
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {}
    exec(compile(python_blocks()[index], f"README.md block {index}", "exec"), namespace)
    if "manifest" in namespace:
        manifest = namespace["manifest"]
        assert manifest.header_requests == 1  # type: ignore[attr-defined]
        ifd = manifest.ifds[0]  # type: ignore[attr-defined]
        assert ifd.offsets.shape == (1, 11, 11)
        assert ifd.recipe.compression == 8
        assert ifd.geo.crs == "EPSG:32621"
    if "vds" in namespace:
        assert namespace["vds"]["data"].shape == (1, 2667, 2658)  # type: ignore[index]
    assert Path.cwd() == ROOT
