"""Every notebook in notebooks/ runs top to bottom on the embedded demo data (no network), twice in one folder (users
re-run notebooks), and prints no warning and no Rust log line into any cell."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_twice_in_one_folder(path: Path, tmp_path, monkeypatch) -> None:
    """Users re-run notebooks where they ran them before: the second run, in the folder the first one wrote to,
    must run as cleanly as the first."""
    # ipykernel forwards what libraries write to file descriptor 2 (Icechunk's Rust log lines) into the cells, as
    # Jupyter does for users, except under pytest: so the kernel must not know it runs under pytest
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    for run in ("first run", "second run"):
        nb = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit without outputs"
        client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
        try:
            client.execute()
        except CellExecutionError as error:
            plain = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # the traceback without its colour codes
            pytest.fail(f"{path.name}, {run}: {plain}", pytrace=False)
        for n, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []):
                text = output.get("text", "") if output.output_type == "stream" else ""
                text += "".join(str(v) for v in output.get("data", {}).values() if isinstance(v, str))
                # a warning, or a Rust log line (Icechunk's WARN/INFO, with or without colour codes)
                noise = re.findall(r".*(?:Warning|\bWARN\b|\bINFO\b|\x1b\[).*", text)
                assert not noise, f"cell {n} of {path.name} printed {noise[:3]} ({run})"
                assert output.output_type != "error", f"cell {n} of {path.name} failed ({run})"


def test_each_notebook_is_titled_by_its_subject_not_another_number() -> None:
    for path in NOTEBOOKS:
        title = "".join(nbformat.read(path, as_version=4).cells[0].source).splitlines()[0]
        assert title.startswith("# "), path.name
        assert not re.match(r"# \d", title), f"{path.name}: {title}"
