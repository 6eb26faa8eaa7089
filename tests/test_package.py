"""``import stackcube``: fast (the pipeline's heavy libraries come with the first public name used), and every
public name there."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("xarray", "zarr", "icechunk", "pandas", "dask", "pyproj", "rasterio", "obstore", "pystac_client")
"""What costs seconds to import on a small machine, and what a script that only names an error, or a ``--help``,
does not need (numpy, a tenth of a second, the command line's own code uses)."""


def _imported_after(code: str) -> set[str]:
    """The heavy top-level packages a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.split()) & set(HEAVY)


@pytest.mark.parametrize(
    "code",
    [
        "import stackcube",
        "import stackcube; stackcube.StackcubeError, stackcube.errors.SourceChangedError, stackcube.__version__",
        "from stackcube.cli import main\nimport contextlib\nwith contextlib.suppress(SystemExit): main(['--help'])",
    ],
)
def test_importing_stackcube_or_asking_the_cli_for_help_loads_no_heavy_library(code: str) -> None:
    assert _imported_after(code) == set()


def test_every_public_name_is_there_and_brings_the_pipeline_with_it() -> None:
    import importlib

    import stackcube

    for name, module in stackcube._LAZY.items():
        assert getattr(stackcube, name) is getattr(importlib.import_module(module), name), name
    assert stackcube.build_cube.__module__ == "stackcube.api"
    assert _imported_after("import stackcube; stackcube.open_cube") >= {"xarray", "zarr", "icechunk"}
    assert stackcube.store.open_repository.__module__ == "stackcube.store.repo"  # a stage, as an attribute
    with pytest.raises(AttributeError, match="has no attribute 'open_cubes'"):
        _ = stackcube.open_cubes  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="GroupPlan"):
        assert stackcube.GroupPlan is stackcube.ArrayPlan  # type: ignore[attr-defined]


def test_a_submodule_imported_first_leaves_the_function_of_its_name() -> None:
    """``stackcube.stack`` is a function and a module: importing the module first (a patch, a test, a worker
    unpickling) must leave ``stackcube.stack`` the function. In a fresh interpreter, both orders."""
    for code in (
        "import stackcube, stackcube.stack; assert callable(stackcube.stack), stackcube.stack",
        "import stackcube.stack; from stackcube import stack; assert callable(stack), stack",
        "import stackcube; stackcube.stack; import stackcube.stack; assert callable(stackcube.stack)",
    ):
        subprocess.run([sys.executable, "-c", code], check=True)
    import stackcube

    assert not hasattr(stackcube, "store.read")  # a dotted name is no attribute, not an import
